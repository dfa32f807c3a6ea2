"""Command line for one run: `python -m diamond.train --game Breakout --seed 0 --profile smoke --out runs/x [a.b=c ...]`.

Starting the same command again resumes from the last checkpoint; on a finished run it does nothing. A run
folder belongs to one run (diamond/run/rundir.py): another game, seed, profile or config is refused, and a second
process on a folder that is running fails at once. Exit statuses: see diamond/run/cli.py."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path
from typing import Any

import torch

from diamond.loop.config import MAX_SEED, PROFILES, Config, build_config, config_hash, to_dict
from diamond.loop.envs import ATARI_100K_GAMES, num_actions, validate_game
from diamond.loop.profiles import PROFILE_HELP
from diamond.loop.trainer import check_gpu, schedule
from diamond.models.registry import check_buildable
from diamond.run.cli import DEBUG_HELP, run_cli
from diamond.run.errors import UsageError
from diamond.run.io import CorruptFileError
from diamond.run.rundir import claim, read_result

# Seconds per update of the paper-size networks at batch 32 on one core of a 2-core AMD EPYC, measured by
# `python -m diamond.bench --profile paper` (docs/performance.md); a CPU run is warned about with them.
CPU_SECONDS_PER_UPDATE = {"denoiser_update": 24.2, "reward_end_update": 33.0, "actor_critic_update": 162.0}
WARN_ABOVE_HOURS = 1.0
PAPER_CHANNELS = build_config("paper").denoiser.channels  # the networks those figures were measured on
PROG = "python -m diamond.train"


def run(run_dir: str | Path, game: str, seed: int = 0, profile: str = "paper", overrides: list[str] | None = None,
        epoch_hook: Any = None) -> dict[str, Any]:
    """Train (or resume) one run in `run_dir` and return its result; the entry point the launcher calls."""
    from diamond.loop.trainer import Trainer

    cfg = build_config(profile, overrides or [], seed=seed, **{"env.game": game})
    if not torch.cuda.is_available() or cfg.perf.device == "cpu":
        # One thread per run unless asked otherwise: OpenMP spin-waits make oversubscribed CPUs (parallel
        # local runs, a busy machine) tens of times slower, and small networks gain little from more threads.
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    identity = {"game": game, "seed": seed, "profile": profile, "config_hash": config_hash(cfg)}
    check_buildable(cfg, num_actions(game))  # a refused world model or option claims no run folder
    with claim(run_dir, identity, config=to_dict(cfg)):
        if (Path(run_dir) / "result.json").is_file():  # readable, before "nothing to do" is said
            try:
                read_result(run_dir)
            except CorruptFileError as e:
                raise CorruptFileError(f"{e}; move the folder {run_dir} away to train this run again") from e
        return Trainer(cfg, run_dir, epoch_hook=epoch_hook).run()


def check_seed(seed: int) -> None:
    """--seed within the config's range (the emulator takes 31-bit seeds), named as the flag."""
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed must be an integer in [0, {MAX_SEED}], got {seed}")


def check_game(game: str) -> None:
    """--game must name an ALE game; a near miss of an Atari 100k game is suggested, not the ~100 names."""
    try:
        validate_game(game)
    except ValueError:
        lower = {g.lower(): g for g in ATARI_100K_GAMES}
        close = [lower[g] for g in difflib.get_close_matches(game.lower(), list(lower), n=3, cutoff=0.6)]
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise UsageError(f"--game {game!r} is not an Atari game.{hint} The Atari 100k games are "
                         f"{', '.join(ATARI_100K_GAMES)}.") from None


def projected_cpu_hours(cfg: Config) -> float:
    """Hours of the run's updates at the measured CPU speed, scaled linearly by the batch size."""
    counts = schedule(cfg, eval_episode_steps=0)
    scale = cfg.training.batch_size / 32
    return sum(counts[k] * s * scale for k, s in CPU_SECONDS_PER_UPDATE.items()) / 3600


def warn_if_cpu(cfg: Config) -> None:
    """A paper-size run without a GPU would take months: say so before it starts."""
    if cfg.perf.device.startswith("cuda") or (cfg.perf.device == "auto" and torch.cuda.is_available()):
        return
    if cfg.denoiser.channels != PAPER_CHANNELS:
        return
    hours = projected_cpu_hours(cfg)
    if hours > WARN_ABOVE_HOURS:
        when = f"{hours / 24:,.0f} days" if hours > 48 else f"{hours:,.0f} hours"
        print(f"warning: no GPU is in use; this {cfg.profile}-profile run would take about {when} on one CPU core "
              f"(per-update times of python -m diamond.bench, docs/performance.md). Use --profile smoke for a "
              "CPU check, or run on a GPU.", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """The command line under the shared error path (diamond/run/cli.py): returns the exit status."""
    return run_cli(PROG, _main, argv)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train DIAMOND on one Atari 100k game (Algorithm 1), writing one resumable run folder.",
        epilog="Overrides are dotted config keys, e.g. diffusion.sampler=heun diffusion.num_steps=5 "
               "diffusion.edm.sigma_offset_noise=0 training.epochs=10. See diamond/loop/config.py for every field. "
               f"{DEBUG_HELP} Exit statuses: see the README.",
    )
    parser.add_argument("--game", required=True, help="Atari game, e.g. Breakout (the 26 Atari 100k games)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed reproduces the run (default 0)")
    parser.add_argument("--profile", default="paper", choices=list(PROFILES),
                        help=PROFILE_HELP)
    parser.add_argument("--out", required=True, help="run folder (config.yaml, metrics.jsonl, checkpoints/, result.json)")
    parser.add_argument("overrides", nargs="*", help="config overrides section.field=value")
    args = parser.parse_args(argv)
    check_seed(args.seed)
    check_game(args.game)
    cfg = build_config(args.profile, args.overrides, seed=args.seed, **{"env.game": args.game})
    check_gpu(cfg)
    warn_if_cpu(cfg)
    result = run(args.out, args.game, args.seed, args.profile, args.overrides)
    print(f"{args.game} seed {args.seed}: mean return {result['mean_return']:.1f} over {result['num_episodes']} "
          f"episodes, {result['env_steps']} env steps, {result['wall_time_s']:.0f} s -> {Path(args.out) / 'result.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
