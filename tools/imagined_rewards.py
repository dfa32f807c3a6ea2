"""Does imagination contain the real game's reward events? A finished agent run's R_ψ scored on real transitions
and on its world model's open-loop imagination of the same transitions (same context, same real actions).

    python tools/imagined_rewards.py RUN_FOLDER [--segments 256] [--horizon 15] [--out FILE.json] [--frames F.png]

Segments of the run's own replay (every frame real) give a context of L frames and the next H real frames and
actions. R_ψ, burned in on the context, scores the H real transitions (p(event) = 1 − p(reward 0)); the world
model, from the same context and the same real actions, imagines H frames, which R_ψ scores in the same way.
Reported: the real event rate, mean p(event) on real and on imagined transitions, R_ψ's AUROC against the real
events on each with a 95 % bootstrap CI over segments, mean p(event) per imagined step, and (under "raw") every
segment's events and p(event), from which each number can be recomputed. Imagined p(event) far below real on the same actions means
the imagined frames lack the events (world model); an AUROC near 0.5 on real frames means R_ψ cannot name them.
Per step, too: how much each frame changes from the one before (real and imagined: an imagination that stops
moving has no events to show) and the imagined frame's error against the real one. `--frames F.png` draws real
and imagined segments that hold a real event, with R_ψ's p(event) under each frame.
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


def measure(run_dir: Path, segments: int, horizon: int, seed: int, num_steps: int | None = None,
            frames_png: Path | None = None) -> dict[str, Any]:
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
    frames: list[torch.Tensor] = []

    def predict(o: torch.Tensor, a: torch.Tensor, t: int) -> torch.Tensor:
        frames.append(agent.world_model.predict_next(o, a, num_steps=num_steps))
        return frames[-1]

    scores = imagined_event_scores(agent.reward_end, obs, act, context, predict)
    out = {"run": str(run_dir), "segments": len(keep), "horizon": horizon, "context": context,
           "num_steps": num_steps or agent.world_model.num_steps,
           "real_event_rate": float(events.float().mean())}
    for name, p in scores.items():
        low, high = auroc_ci(p, events, seed)
        out.update({f"{name}_p_event": float(p.mean()), f"{name}_auroc": auroc(p.flatten(), events.flatten()),
                    f"{name}_auroc_ci": [low, high], f"{name}_p_event_per_step": p.mean(0).tolist()})
    out["raw"] = {"events": events.int().tolist(), **{name: p.tolist() for name, p in scores.items()}}
    imagined = torch.stack(frames, dim=1)
    out.update(frame_changes(obs, imagined, context))
    if frames_png is not None:
        draw_segments(obs[:, context - 1 :], imagined, events, scores, frames_png)
    return out


def auroc_ci(p: torch.Tensor, events: torch.Tensor, seed: int, reps: int = 1000) -> tuple[float, float]:
    """95 % bootstrap CI of the AUROC over segments (steps of one segment are not independent)."""
    rng = np.random.default_rng(seed)
    values = [auroc(p[i].flatten(), events[i].flatten()) for i in (rng.integers(0, len(p), len(p)) for _ in range(reps))]
    low, high = np.nanpercentile(values, [2.5, 97.5])
    return float(low), float(high)


def frame_changes(obs: torch.Tensor, imagined: torch.Tensor, context: int) -> dict[str, list[float]]:
    """Per step: mean |frame − previous frame| of the real and of the imagined continuation (the imagined one
    starts from the last real context frame), and mean |imagined − real|; pixels in [0, 1]."""
    real, start = obs[:, context:], obs[:, context - 1 : context]
    before = {"real": obs[:, context - 1 : -1], "imagined": torch.cat([start, imagined[:, :-1]], dim=1)}
    per_step = lambda x: (x.abs() / 2).mean(dim=(0, 2, 3, 4)).tolist()  # noqa: E731 - [-1, 1] -> [0, 1] units
    return {"real_change_per_step": per_step(real - before["real"]),
            "imagined_change_per_step": per_step(imagined - before["imagined"]),
            "imagined_error_per_step": per_step(imagined - real)}


def draw_segments(real: torch.Tensor, imagined: torch.Tensor, events: torch.Tensor, scores: dict[str, torch.Tensor],
                  path: Path, rows: int = 3, steps: int = 8) -> None:
    """Up to `rows` segments with a real event within `steps` steps: the last context frame and the real frames
    above, the imagined ones below, p(event) under each (real events in red)."""
    from matplotlib.figure import Figure

    picked = torch.nonzero(events[:, :steps].any(1)).flatten()[:rows].tolist()
    steps = min(steps, imagined.shape[1])
    fig = Figure(figsize=(1.3 * (steps + 1), 2.9 * max(len(picked), 1)), layout="constrained")
    axes = fig.subplots(2 * max(len(picked), 1), steps + 1, squeeze=False)
    image = lambda x: ((x.permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy()  # noqa: E731
    for r, i in enumerate(picked):
        for c in range(steps + 1):
            for k, (name, frame) in enumerate((("real", real[i, c]), ("imagined", imagined[i, c - 1] if c else
                                                                          real[i, 0]))):
                ax = axes[2 * r + k, c]
                ax.imshow(image(frame))
                ax.set_xticks([]), ax.set_yticks([])
                if c == 0:
                    ax.set_ylabel(f"{name} #{i}", fontsize=7)
                    continue
                hit = bool(events[i, c - 1])
                ax.set_title(f"t={c} p={float(scores[name][i, c - 1]):.2f}", fontsize=6, color="red" if hit else "k")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished diamond.train run folder")
    parser.add_argument("--segments", type=int, default=256, help="real segments scored (256)")
    parser.add_argument("--horizon", type=int, default=15, help="imagined steps per segment (15, Table 2's H)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-steps", type=int, help="denoising steps of the imagination (default: the run's)")
    parser.add_argument("--out", type=Path, help="JSON file for the result")
    parser.add_argument("--frames", type=Path, help="PNG of real and imagined segments that hold a real event")
    args = parser.parse_args(argv)
    if not (args.run / "checkpoints" / "last.pt").is_file():
        raise SystemExit(f"{args.run / 'checkpoints' / 'last.pt'} is missing: give a diamond.train run folder")
    result = measure(args.run, args.segments, args.horizon, args.seed, args.num_steps, args.frames)
    if args.out:
        atomic_write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("per_step") and k != "raw"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
