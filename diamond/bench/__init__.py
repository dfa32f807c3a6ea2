"""`python -m diamond.bench`: throughput, FLOPs and peak memory of one profile's networks and data path, and the
projected wall time of one whole run of that profile, on CPU or GPU.

Every measurement runs the Trainer's own code (its agent, Learner, replay sampler, collection and checkpoint), on
real Breakout frames collected first; warm-up calls are excluded, the device is synchronised, medians are reported.
`--ladder` repeats the learner measurements for the cumulative fast-path configurations of diamond.loop.perf.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diamond.bench.ladder import LADDER, run_ladder
from diamond.bench.measure import run_benchmark
from diamond.loop.config import PROFILES, build_config, parse_overrides
from diamond.loop.profiles import PROFILE_HELP
from diamond.loop.trainer import check_gpu
from diamond.run.cli import DEBUG_HELP, run_cli
from diamond.run.errors import UsageError
from diamond.run.io import atomic_write_json, atomic_write_text, check_writable_folder

PROG = "python -m diamond.bench"


def main(argv: list[str] | None = None) -> int:
    """The command line under the shared error path (diamond/run/cli.py): returns the exit status."""
    return run_cli(PROG, _main, argv)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=" ".join(__doc__.split("\n\n")[0].split()),
                                     epilog="Overrides are dotted config keys, e.g. perf.bf16=true perf.device=cuda. "
                                            f"{DEBUG_HELP} Exit statuses: see the README.")
    parser.add_argument("--profile", default="paper", choices=list(PROFILES),
                        help=f"networks and schedule to measure (default paper): {PROFILE_HELP}")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="batch to measure at (default: the profile's); per-call times are extrapolated "
                             "linearly to the profile's batch, for slow CPUs")
    parser.add_argument("--warmup", type=int, default=1, help="excluded warm-up calls per measurement (1)")
    parser.add_argument("--repeats", type=int, default=3, help="measured calls per measurement; median (3)")
    parser.add_argument("--collect-steps", type=int, default=200, help="env steps per collection measurement (200)")
    parser.add_argument("--eval-episode-steps", type=float, default=2500,
                        help="assumed agent steps per evaluation episode, for the projection (2500)")
    parser.add_argument("--game", default="Breakout", help="game whose frames and action set are used (Breakout)")
    parser.add_argument("--ladder", action="store_true",
                        help="measure the learners for each cumulative fast-path configuration " +
                             " → ".join(label for label, _ in LADDER))
    parser.add_argument("--out", default="runs/bench", help="folder for bench.json/bench.md or ladder.json/ladder.md")
    parser.add_argument("overrides", nargs="*", help="config overrides section.field=value")
    args = parser.parse_args(argv)
    bad = [f"{flag} >= {low}, got {value}" for flag, value, low in (
        ("--warmup", args.warmup, 0), ("--repeats", args.repeats, 1), ("--collect-steps", args.collect_steps, 1),
        ("--batch-size", args.batch_size, 1)) if value is not None and value < low]
    if bad:
        raise UsageError(f"need {'; '.join(bad)}")
    cfg = build_config(args.profile, {**parse_overrides(args.overrides), "env.game": args.game})
    check_gpu(cfg)
    out = Path(args.out)
    check_writable_folder("--out", out)  # now, not after a benchmark of minutes
    report, text = (run_ladder if args.ladder else run_benchmark)(cfg, args)
    name = "ladder" if args.ladder else "bench"
    atomic_write_json(out / f"{name}.json", report)
    atomic_write_text(out / f"{name}.md", text)
    print(text)
    print(f"-> {out / f'{name}.json'}, {out / f'{name}.md'}")
    return 0

