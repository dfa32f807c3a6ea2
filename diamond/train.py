"""Command line for one run: `python -m diamond.train --game Breakout --seed 0 --profile smoke --out runs/x [a.b=c ...]`.

Starting the same command again resumes from the last checkpoint; on a finished run it does nothing."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch

from diamond.config import PROFILES, ConfigError, build_config, from_dict
from diamond.io import read_yaml


def run(run_dir: str | Path, game: str, seed: int = 0, profile: str = "paper", overrides: list[str] | None = None,
        epoch_hook: Any = None) -> dict[str, Any]:
    """Train (or resume) one run in `run_dir` and return its result; the entry point the launcher calls."""
    from diamond.trainer import Trainer

    cfg = build_config(profile, overrides or [], seed=seed, **{"env.game": game})
    if not torch.cuda.is_available() or cfg.perf.device == "cpu":
        # One thread per run unless asked otherwise: OpenMP spin-waits make oversubscribed CPUs (parallel
        # local runs, a busy machine) tens of times slower, and small networks gain little from more threads.
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    config_file = Path(run_dir) / "config.yaml"
    if config_file.exists() and not (Path(run_dir) / "result.json").exists():
        on_disk = from_dict(read_yaml(config_file))
        if on_disk != cfg:
            raise ConfigError(f"{config_file} holds a different config than requested; resume with the same "
                              "arguments or choose another --out")
    return Trainer(cfg, run_dir, epoch_hook=epoch_hook).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m diamond.train",
        description="Train DIAMOND on one Atari 100k game (Algorithm 1), writing one resumable run folder.",
        epilog="Overrides are dotted config keys, e.g. diffusion.sampler=heun diffusion.num_steps=5 "
               "diffusion.edm.sigma_offset_noise=0 training.epochs=10. See diamond/config.py for every field.",
    )
    parser.add_argument("--game", required=True, help="Atari game, e.g. Breakout (the 26 Atari 100k games)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed reproduces the run (default 0)")
    parser.add_argument("--profile", default="paper", choices=list(PROFILES),
                        help="paper = Tables 2-3; small = a GPU in minutes; smoke = CPU in about a minute")
    parser.add_argument("--out", required=True, help="run folder (config.yaml, metrics.jsonl, checkpoints/, result.json)")
    parser.add_argument("overrides", nargs="*", help="config overrides section.field=value")
    args = parser.parse_args(argv)
    try:
        result = run(args.out, args.game, args.seed, args.profile, args.overrides)
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.game} seed {args.seed}: mean return {result['mean_return']:.1f} over {result['num_episodes']} "
          f"episodes, {result['env_steps']} env steps, {result['wall_time_s']:.0f} s -> {Path(args.out) / 'result.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
