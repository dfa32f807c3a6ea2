"""Does imagination contain the real game's reward events? A finished agent run's R_ψ scored on real transitions
and on its world model's open-loop imagination of the same transitions (same context, same real actions).

    python tools/imagined_rewards.py RUN_FOLDER [--segments 256] [--horizon 15] [--out FILE.json]

Segments of the run's own replay (every frame real) give a context of L frames and the next H real frames and
actions. R_ψ, burned in on the context, scores the H real transitions (p(event) = 1 − p(reward 0)); the world
model, from the same context and the same real actions, imagines H frames, which R_ψ scores in the same way.
Reported: the real event rate, mean p(event) on real and on imagined transitions, R_ψ's AUROC against the real
events on each, and mean p(event) per imagined step. Imagined p(event) far below real on the same actions means
the imagined frames lack the events (world model); an AUROC near 0.5 on real frames means R_ψ cannot name them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diamond.evaluate import load_agent
from diamond.loop.config import from_dict
from diamond.loop.data import ReplayBuffer, sample_segments, to_float
from diamond.loop.diagnostics import auroc, imagined_event_scores
from diamond.loop.envs import num_actions
from diamond.run.io import atomic_write_json, read_yaml


def measure(run_dir: Path, segments: int, horizon: int, seed: int, num_steps: int | None = None) -> dict[str, Any]:
    cfg = from_dict(read_yaml(run_dir / "config.yaml"))
    agent = load_agent(run_dir / "checkpoints" / "last.pt", cfg, num_actions(cfg.env.game), official=False).eval()
    context = cfg.diffusion.num_history
    replay = ReplayBuffer.load(run_dir / "replay")
    rng = np.random.default_rng(seed)
    seg = sample_segments(replay, segments * 2, context + horizon, rng, pad="left", recency_weights=None)
    keep = np.flatnonzero(seg.mask.all(1) & seg.trans_mask[:, context - 1 : -1].all(1))[:segments]
    obs, act = to_float(torch.from_numpy(seg.obs[keep])), torch.from_numpy(seg.act[keep])
    events = torch.from_numpy(seg.rew[keep, context - 1 : -1] != 0)
    torch.manual_seed(seed)
    scores = imagined_event_scores(agent.reward_end, obs, act, context,
                                   lambda o, a, t: agent.world_model.predict_next(o, a, num_steps=num_steps))
    out = {"run": str(run_dir), "segments": len(keep), "horizon": horizon, "context": context,
           "num_steps": num_steps or agent.world_model.num_steps,
           "real_event_rate": float(events.float().mean())}
    for name, p in scores.items():
        out.update({f"{name}_p_event": float(p.mean()), f"{name}_auroc": auroc(p.flatten(), events.flatten()),
                    f"{name}_p_event_per_step": p.mean(0).tolist()})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished diamond.train run folder")
    parser.add_argument("--segments", type=int, default=256, help="real segments scored (256)")
    parser.add_argument("--horizon", type=int, default=15, help="imagined steps per segment (15, Table 2's H)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-steps", type=int, help="denoising steps of the imagination (default: the run's)")
    parser.add_argument("--out", type=Path, help="JSON file for the result")
    args = parser.parse_args(argv)
    if not (args.run / "checkpoints" / "last.pt").is_file():
        raise SystemExit(f"{args.run / 'checkpoints' / 'last.pt'} is missing: give a diamond.train run folder")
    result = measure(args.run, args.segments, args.horizon, args.seed, args.num_steps)
    if args.out:
        atomic_write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("per_step")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
