"""How well R_ψ names events at a training budget: train it on the trainer's own path (Trainer.collect,
Trainer.train_phase) with the profile's R_ψ schedule on uniform-policy data (an untrained agent's data), then score
it on held-out real transitions of other games of the same env (played first, never trained on): AUROC of p(event) and the mean p(event) on
event and non-event steps (diamond/loop/diagnostics.py).

    OMP_NUM_THREADS=1 python tools/measure_reward_model.py --game MsPacman --seed 0 --out r.json [key=value ...]

The schedule is the profile's: first_epoch_reward_end_steps after the initial collection, then
reward_end_steps per epoch while collect_steps_per_epoch new steps arrive, for training.epochs epochs
(`--scale k` multiplies the update counts). No denoiser or actor-critic update runs: the policy stays uniform.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from diamond.loop.config import build_config, to_dict
from diamond.loop.diagnostics import newest_windows, reward_end_detection
from diamond.loop.trainer import Trainer
from diamond.run.io import atomic_write_json


def measure(game: str, seed: int, overrides: list[str], heldout_steps: int, scale: float, every: int) -> dict:
    """`every` > 0: also score R_ψ after every `every` epochs (the curve of AUROC against updates)."""
    cfg = build_config("cpu", [f"env.game={game}", *overrides], seed=seed)
    t = cfg.training
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp)
        heldout = trainer.collect_heldout(heldout_steps)  # games never trained on
        w = newest_windows(heldout, heldout_steps, t.reward_end_seq_len + 1, torch.device("cpu"))
        score = lambda: {k.removeprefix("diag/"): v  # noqa: E731
                         for k, v in reward_end_detection(trainer.agent.reward_end, w).items()}
        trainer.initial_collection()
        updates = round(t.first_epoch_reward_end_steps * scale)
        trainer.train_phase("reward_end", updates)
        curve = []
        for epoch in range(1, t.epochs):
            trainer.epoch = epoch
            if trainer.replay.num_steps < t.total_env_steps:
                trainer.collect(min(t.collect_steps_per_epoch, t.total_env_steps - trainer.replay.num_steps),
                                uniform=True, desc=f"epoch {epoch + 1} collect")
            n = round(t.reward_end_steps * scale)
            trainer.train_phase("reward_end", n)
            updates += n
            if every and (epoch + 1) % every == 0 and epoch + 1 < t.epochs:
                curve.append({"epoch": epoch + 1, "updates": updates, **score()})
        train_steps = trainer.replay.num_steps
        scores = score()
    events = int((w.rew[:, -2] != 0).sum())
    return {"game": game, "seed": seed, "overrides": overrides, "scale": scale, "updates": updates,
            "train_steps": train_steps, "heldout_transitions": len(w.obs), "heldout_reward_events": events,
            "heldout_end_events": int(w.end[:, -2].sum()), "wall_time_s": time.perf_counter() - start,
            **scores, "curve": curve, "config": to_dict(cfg)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--game", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heldout-steps", type=int, default=2000)
    p.add_argument("--scale", type=float, default=1.0, help="multiply the profile's R_ψ update counts")
    p.add_argument("--every", type=int, default=0, help="also score after every N epochs (0: only at the end)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("overrides", nargs="*")
    a = p.parse_args()
    torch.set_num_threads(1)
    result = measure(a.game, a.seed, a.overrides, a.heldout_steps, a.scale, a.every)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(a.out, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("config", "curve")}, indent=1))


if __name__ == "__main__":
    main()
