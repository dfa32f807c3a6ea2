#!/usr/bin/env python
"""Run one suite of the DIAMOND reproduction end to end: its runs (stage by stage), then its report.

A suite (ablations/<suite>.py) lists its runs in stages; each stage is one launch through slurm/launcher.py,
which skips finished runs and resumes partial ones, so the same command can be repeated until everything is
done. A run depends on an earlier run when a path in its arguments lies inside that run's folder; such a run
is not started while its input is unfinished, and is reported as blocked.
A run folder that another process holds (diamond/run/rundir.py's lock) is "running elsewhere": it is left alone,
not counted as failed. A finished run whose result.json cannot be read is failed, named, and the rest go on.
Exit status: 0 all runs done and the report written, 1 a run failed or was blocked or the report could not
be built, 2 a usage error, 74 the operating system refused a write, 75 nothing failed but some runs are still
running elsewhere, 130 interrupted (the README's table; diamond/run/cli.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator, NoReturn

from ablations.entrants import parse_models
from ablations.registry import SUITE_MODULES, Suite, SuiteOptions, get_suite
from diamond.loop.config import PROFILES, build_config
from diamond.loop.profiles import PROFILE_HELP
from diamond.run.cli import DEBUG_HELP, run_cli
from diamond.run.errors import KnownError, UsageError
from diamond.run.io import CorruptFileError, check_writable_folder
from diamond.run.rundir import lock_holder
from evaluation.atari import check_game
from reports.common import read_result
from slurm.executors import EXECUTOR_KINDS, resolve_kind, slurm_reachable
from slurm.launcher import ClusterConfig, RunSpec, dry_run_table, launch, load_cluster_config, run_status

REPO = Path(__file__).resolve().parent
DEFAULT_CLUSTER = REPO / "slurm" / "cluster.yaml"

EXAMPLES = f"""\
suites: {', '.join(SUITE_MODULES)}

examples:
  # what would run, and its projected GPU-hours (submits nothing)
  python run_suite.py --suite atari100k --dry-run
  # a CPU check of the whole pipeline on two games, one seed each (about two minutes on a 2-core CPU)
  python run_suite.py --suite atari100k --profile smoke --games Breakout Pong --seeds 1
  # the full benchmark on a Slurm cluster (26 games x 5 seeds), at most 32 runs at once
  python run_suite.py --suite atari100k --executor slurm --cluster slurm/cluster.yaml --max-parallel 32
  # change a setting of every run (dotted keys of diamond/loop/config.py)
  python run_suite.py --suite atari100k --profile small --set diffusion.num_steps=1 --out runs_nfe1
  # a world model of yours as an extra arm beside DIAMOND's (or alone, with --only-models)
  python run_suite.py --suite ablation_ddpm_vs_edm --profile smoke --models mine=mypackage.wm:build
  # rebuild the report from the run folders already on disk
  python run_suite.py --suite atari100k --profile smoke --games Breakout Pong --seeds 1 --report-only

Runs are written to <out>/<suite>/<profile>/<run>/, job logs to <out>/<suite>/<profile>/logs/, the report
to <report-dir>/<suite>/report.md and report.pdf. Re-running a command skips finished runs and resumes
interrupted ones from their last checkpoint.

{DEBUG_HELP} Exit statuses: see the module docstring of run_suite.py and the README.
"""


EXIT_RUNNING_ELSEWHERE = 75
MAX_SEEDS = 100  # --seeds per game: the grid is built (and printed) whole, so a flag must not ask for billions


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line naming the problem (and the valid choices), instead of the whole usage block."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="run_suite.py", description=__doc__.split("\n")[0], epilog=EXAMPLES,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", required=True, choices=list(SUITE_MODULES), metavar="SUITE",
                   help=f"which suite to run: {', '.join(SUITE_MODULES)}")
    p.add_argument("--profile", default="paper", choices=list(PROFILES),
                   help=f"{PROFILE_HELP} (default: paper). A Slurm job asks for one GPU, none for smoke and cpu, "
                        "unless the --cluster file sets gpus_per_node")
    p.add_argument("--executor", default="auto", choices=list(EXECUTOR_KINDS),
                   help="auto = slurm when `sbatch` is on PATH and a controller answers `sinfo`, else local; "
                        "local = subprocesses on this machine (one per visible GPU); debug = in this process, one "
                        "after the other (default: auto)")
    p.add_argument("--games", nargs="+", metavar="GAME", help="run only these games (default: the suite's games)")
    p.add_argument("--seeds", type=int, metavar="N",
                   help=f"seeds 0..N-1 per game, N <= {MAX_SEEDS} (default: the suite's number)")
    p.add_argument("--out", type=Path, default=Path("runs"), help="root of the run folders (default: runs/)")
    p.add_argument("--report-dir", type=Path, default=Path("reports"),
                   help="root of the reports; the report goes to <report-dir>/<suite>/ (default: reports/)")
    p.add_argument("--cluster", type=Path, metavar="PATH",
                   help="Slurm settings YAML (see slurm/cluster.example.yaml; default: slurm/cluster.yaml if present)")
    p.add_argument("--max-parallel", type=int, metavar="N",
                   help="at most N runs at once (Slurm array throttle, or local processes)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override passed to every run, e.g. --set training.epochs=10 (repeatable)")
    p.add_argument("--controls", action="store_true",
                   help="atari100k: also train each (game, seed) run's reward-blind twin (imagined rewards "
                        "shuffled, training.shuffle_imagined_rewards), the control that tells learning from a "
                        "decided policy; doubles the grid")
    p.add_argument("--models", metavar="A,B,...",
                   help="world models entered beside the suite's own (the config's world_model.factory): each a "
                        "registered name, an entry point or package.module:function, as LABEL=FACTORY to name it, "
                        "followed by its options as a YAML mapping (e.g. 'rec12=recurrent{memory_frames: 12}'); every "
                        "arm that applies runs on each, and reports name each model (docs/plugins.md)")
    p.add_argument("--only-models", action="store_true", help="run only the --models, not the suite's own model")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="print each stage's runs (status done/partial/new, projected GPU-hours) and submit nothing")
    mode.add_argument("--report-only", action="store_true", help="rebuild the report from the run folders on disk")
    return p


def load_suite(name: str) -> Suite:
    """The suite object; a registered suite whose module is not importable is a clear usage error."""
    try:
        return get_suite(name)
    except ImportError as e:
        raise UsageError(f"suite {name!r} is registered but its module {SUITE_MODULES[name]} cannot be "
                         f"imported ({e})") from e


def suite_options(args: argparse.Namespace) -> SuiteOptions:
    """Validate the grid options (games, seeds, overrides) and pack them for the suite."""
    try:
        games = tuple(dict.fromkeys(check_game(g) for g in args.games)) if args.games else None  # each game once
    except ValueError as e:
        raise UsageError(str(e)) from e
    if args.seeds is not None and not 1 <= args.seeds <= MAX_SEEDS:
        raise UsageError(f"--seeds must be between 1 and {MAX_SEEDS} (seeds per game), got {args.seeds}")
    if args.max_parallel is not None and args.max_parallel < 1:
        raise UsageError(f"--max-parallel must be >= 1, got {args.max_parallel}")
    for item in args.overrides:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r} is not of the form section.field=value")
    build_config(args.profile, list(args.overrides))  # a bad --set is this command's error, not every run's
    if args.only_models and not args.models:
        raise UsageError("--only-models needs --models: name the models to run")
    try:
        models = parse_models(args.models) if args.models is not None else ()
    except ValueError as e:
        raise UsageError(str(e)) from e
    return SuiteOptions(profile=args.profile, out=args.out, games=games, seeds=args.seeds,
                        overrides=tuple(args.overrides), report_root=args.report_dir, controls=args.controls,
                        models=models, only_models=args.only_models)


def cluster_config(path: Path | None, opts: SuiteOptions) -> ClusterConfig:
    """--cluster, else slurm/cluster.yaml when it exists, else the built-in defaults; a GPU per job unless the
    profile runs on the CPU (smoke, cpu), where the file does not set gpus_per_node itself."""
    chosen = path or (DEFAULT_CLUSTER if DEFAULT_CLUSTER.is_file() else None)
    try:
        cluster = load_cluster_config(chosen) if chosen else ClusterConfig()
    except (FileNotFoundError, ValueError, CorruptFileError) as e:
        raise UsageError(str(e)) from e
    if cluster.gpus_per_node is None:
        on_cpu = build_config(opts.profile, list(opts.overrides)).perf.device == "cpu"
        cluster = dataclasses.replace(cluster, gpus_per_node=0 if on_cpu else 1)
    return cluster


def _paths(value: Any) -> Iterator[Path]:
    """Every string inside a run's JSON arguments, read as a path."""
    if isinstance(value, str) and value:
        yield Path(value).absolute()
    elif isinstance(value, dict):
        for v in value.values():
            yield from _paths(v)
    elif isinstance(value, list):
        for v in value:
            yield from _paths(v)


def inputs_of(spec: RunSpec, earlier: list[RunSpec]) -> list[RunSpec]:
    """Earlier runs whose folder holds a path that `spec` is given: the runs it reads from."""
    paths = list(_paths(spec.kwargs))
    return [e for e in earlier if any(p.is_relative_to(e.run_dir.absolute()) for p in paths)]


def check_executor(executor: str) -> str:
    """The executor that will run; Slurm is refused in one sentence when this machine has no Slurm, or its
    controller does not answer."""
    kind = resolve_kind(executor)
    if kind == "slurm" and shutil.which("sbatch") is None:
        raise UsageError("--executor slurm: Slurm is not installed here (no sbatch on PATH); use --executor "
                         "local, or launch from the cluster's login node")
    if kind == "slurm" and executor == "slurm" and not slurm_reachable():
        raise KnownError("--executor slurm: the Slurm controller does not answer `sinfo` from this machine, so "
                         "nothing was submitted; check that slurmctld is up, or use --executor local")
    return kind


def corrupt_results(specs: list[RunSpec]) -> dict[str, str]:
    """Runs whose result.json exists but cannot be read: failed, with the file and what to do named."""
    out = {}
    for spec in specs:
        if (spec.run_dir / "result.json").is_file():
            try:
                read_result(spec.run_dir)
            except CorruptFileError as e:
                out[spec.name] = f"{e}; move the folder {spec.run_dir} away to train this run again"
    return out


def running_elsewhere(specs: list[RunSpec]) -> dict[str, str]:
    """Unfinished runs whose folder another live process holds: 'pid N on host H'."""
    return {s.name: holder for s in specs if run_status(s) != "done" and (holder := lock_holder(s.run_dir))}


def other_profiles(opts: SuiteOptions, suite: str) -> list[str]:
    """Profiles of this suite, other than the one asked for, with finished runs under --out."""
    root = opts.suite_dir(suite).parent
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir()
                  if d.is_dir() and d.name != opts.profile and any(d.glob("*/result.json")))


def dry_run(suite: Suite, stages: list[list[RunSpec]], opts: SuiteOptions, executor: str) -> int:
    print(f"suite {suite.name} (profile {opts.profile}, executor {executor}): {suite.paper_artefact}")
    print(suite.description)
    for i, stage in enumerate(stages, 1):
        print(f"\nstage {i}/{len(stages)}: {len(stage)} runs")
        print(dry_run_table(stage))
    specs = [s for stage in stages for s in stage]
    for name, why in corrupt_results(specs).items():
        print(f"  CORRUPT {name}: {why}")
    for name, holder in running_elsewhere(specs).items():
        print(f"  RUNNING ELSEWHERE {name}: its folder is held by {holder}")
    todo = sum(s.gpu_hours for s in specs if run_status(s) != "done")
    print(f"\nall stages: {len(specs)} runs; {sum(s.gpu_hours for s in specs):.1f} GPU-hours projected, "
          f"{todo:.1f} still to run. Nothing was submitted (--dry-run).")
    return 0


def run_stages(stages: list[list[RunSpec]], args: argparse.Namespace, opts: SuiteOptions, suite: Suite,
               cluster: ClusterConfig) -> tuple[bool, bool]:
    """Launch the stages in order; (every run done or running elsewhere, some run is running elsewhere)."""
    log_dir = opts.suite_dir(suite.name) / "logs"
    logs: dict[str, Path] = {}
    earlier: list[RunSpec] = []
    ok, waiting = True, set[str]()
    corrupt = corrupt_results([s for stage in stages for s in stage])

    def unfinished(spec: RunSpec) -> bool:
        return run_status(spec) != "done" or spec.name in corrupt

    for i, stage in enumerate(stages, 1):
        blocked = {s.name: [e for e in inputs_of(s, earlier) if unfinished(e)] for s in stage}
        blocked = {name: inputs for name, inputs in blocked.items() if inputs}
        elsewhere = running_elsewhere([s for s in stage if s.name not in blocked])
        print(f"stage {i}/{len(stages)}: {len(stage)} runs ({len(blocked)} blocked by unfinished inputs, "
              f"{len(elsewhere)} running elsewhere)")
        skip = set(blocked) | set(elsewhere) | set(corrupt)
        report = launch([s for s in stage if s.name not in skip], args.executor, log_dir=log_dir,
                        cluster=cluster, max_parallel=args.max_parallel)
        # a folder locked after the check above (a race with another launch) is running elsewhere too
        elsewhere.update({name: "another process" for name, _ in report.elsewhere})
        report.corrupt = [(s.name, corrupt[s.name]) for s in stage if s.name in corrupt]
        print(report.summary())
        for name, holder in elsewhere.items():
            print(f"  RUNNING ELSEWHERE {name}: its folder is held by {holder}; not started here. Re-run this "
                  "command when it has finished")
        logs.update({name: log for name, _, log in report.failed})
        for name, inputs in blocked.items():
            why = ", ".join(f"{e.name} (log: {logs[e.name]})" if e.name in logs else
                            f"{e.name} ({'corrupt result.json' if e.name in corrupt else run_status(e)})"
                            for e in inputs)
            print(f"  BLOCKED {name}: its input run(s) did not finish: {why}")
        waiting.update(elsewhere)  # a run blocked only by runs going on elsewhere is waiting, not failed
        waiting.update(n for n, ins in blocked.items() if all(e.name in waiting for e in ins))
        ok = ok and report.ok and not any(s.name in corrupt for s in stage) and set(blocked) <= waiting
        earlier += stage
    return ok, bool(waiting)


def main(argv: list[str] | None = None) -> int:
    """The command line under the shared error path (diamond/run/cli.py): returns the exit status."""
    return run_cli("run_suite.py", _main, argv)


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    # local job processes unpickle our callables: they must import this repository whatever their cwd
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    try:
        suite = load_suite(args.suite)
        opts = suite_options(args)
        cluster = cluster_config(args.cluster, opts)
        if args.out.exists() and not args.out.is_dir():
            raise UsageError(f"--out {args.out} is a file, not a folder; choose another --out")
        stages = suite.stages(opts)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if args.dry_run:
        return dry_run(suite, stages, opts, resolve_kind(args.executor))
    check_writable_folder("--report-dir", args.report_dir)
    ok, waiting = True, False
    if not args.report_only:
        check_executor(args.executor)
        try:
            ok, waiting = run_stages(stages, args, opts, suite, cluster)
        except (ImportError, ValueError) as e:  # a grid that cannot be submitted at all (e.g. a broken entry)
            print(f"run_suite.py: error: nothing was launched: {e}", file=sys.stderr)
            return 1
    try:
        md, pdf = suite.report(opts)
    except (ValueError, OSError, CorruptFileError) as e:
        others = other_profiles(opts, suite.name)
        hint = (f"; runs of this suite exist at profile {', '.join(others)} under {opts.suite_dir(suite.name).parent}:"
                f" add --profile {others[0]}" if others else "")
        print(f"run_suite.py: report not built: {e}{hint}", file=sys.stderr)
        return 1
    print(f"report written: {md} and {pdf}")
    if ok and waiting:
        print("some runs are still running elsewhere: the report covers the finished ones; re-run this command "
              "when they have finished")
        return EXIT_RUNNING_ELSEWHERE
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
