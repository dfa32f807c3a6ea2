"""Submit a grid of runs (Slurm job array | local processes | in-process debug) and wait for them.

A run is a folder (config.yaml, metrics.jsonl, checkpoints/last.pt, result.json: DESIGN.md); the
launcher only looks at result.json ("done") and checkpoints/last.pt ("partial", resumable), so
launching the same grid twice never re-trains a finished run and continues interrupted ones.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError
from tqdm import tqdm

from diamond.io import atomic_write_json, read_json
from slurm.executors import (ClusterConfig, ExecutorKind, load_cluster_config, make_executor, resolve_kind,
                             visible_gpu_ids)

__all__ = ["RunSpec", "RunJob", "LaunchReport", "ClusterConfig", "load_cluster_config", "make_executor",
           "launch", "dry_run_table", "run_status"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ENTRY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
# Slurm states of a job that is still queued or running and will write to its run folder.
_ACTIVE_SLURM_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED",
                        "RESIZING", "REQUEUE_HOLD", "REQUEUE_FED", "PREEMPTED", "SIGNALING", "STAGE_OUT"}
_POLL_S = {"local": 0.5, "slurm": 30.0}
JOBS_FILE = "jobs.json"  # in log_dir: run name -> Slurm job id, to re-attach instead of double-submitting


@dataclass(frozen=True)
class RunSpec:
    """One run of a suite: what to call, where it writes, what it costs."""

    name: str
    run_dir: Path
    entry: str
    kwargs: dict
    gpu_hours: float = 0.0
    group: str = ""

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"run name {self.name!r} is not filesystem-safe; use letters, digits, '.', '_', '-'")
        if not _ENTRY_RE.match(self.entry):
            raise ValueError(f"run {self.name}: entry {self.entry!r} must look like 'package.module:function'")
        try:
            json.dumps(self.kwargs)
        except TypeError as e:
            raise ValueError(f"run {self.name}: kwargs must be JSON-serialisable ({e})") from e
        if self.gpu_hours < 0:
            raise ValueError(f"run {self.name}: gpu_hours must be >= 0, got {self.gpu_hours}")
        object.__setattr__(self, "run_dir", Path(self.run_dir))


def run_status(spec: RunSpec) -> str:
    """'done' (result.json), 'partial' (a checkpoint to resume from) or 'new'."""
    if (spec.run_dir / "result.json").is_file():
        return "done"
    if (spec.run_dir / "checkpoints" / "last.pt").is_file():
        return "partial"
    return "new"


def resolve_entry(entry: str) -> Callable[..., Any]:
    """Import 'package.module:function'; a typo fails here with the entry named."""
    module_name, _, func_name = entry.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ImportError(f"entry {entry!r}: cannot import module {module_name!r} ({e})") from e
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ImportError(f"entry {entry!r}: module {module_name!r} has no function {func_name!r}")
    return func


class RunJob(submitit.helpers.Checkpointable):
    """The callable each job executes. On preemption/timeout submitit calls `checkpoint` and
    requeues it; the entry then resumes from the run's own checkpoint, so no state lives here."""

    def __init__(self, spec: RunSpec) -> None:
        # absolute, because a cluster job may start in another working directory
        self.spec = dataclasses.replace(spec, run_dir=spec.run_dir.absolute())

    def __call__(self) -> dict:
        result_path = self.spec.run_dir / "result.json"
        if not result_path.is_file():
            self.spec.run_dir.mkdir(parents=True, exist_ok=True)
            resolve_entry(self.spec.entry)(run_dir=self.spec.run_dir, **self.spec.kwargs)
        if not result_path.is_file():
            raise RuntimeError(f"run {self.spec.name}: entry {self.spec.entry} returned without writing "
                               f"{result_path}")
        return read_json(result_path)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(self)


@dataclass
class LaunchReport:
    """What happened to each run of one `launch` call."""

    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str, Path]] = field(default_factory=list)  # (name, error summary, log path)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        lines = [f"{len(self.finished)} finished, {len(self.skipped)} skipped (already done), "
                 f"{len(self.failed)} failed"]
        for name, error, log in self.failed:
            lines += [f"  FAILED {name}: {error}", f"    log: {log}"]
        if self.failed:
            lines.append("Re-run the same command to retry the failed runs; "
                         "each resumes from its last checkpoint, if any.")
        return "\n".join(lines)


def _error_summary(err: BaseException) -> str:
    """One line a human can act on: the exception line of the job's traceback."""
    text = str(err).strip()
    if isinstance(err, FailedJobError):
        parts = text.split("-" * 22)
        trace = parts[1] if len(parts) > 2 else text
        lines = [ln.strip() for ln in trace.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else type(err).__name__
    if isinstance(err, UncompletedJobError):
        return " ".join(text.splitlines()[:2])
    first = text.splitlines()[0] if text else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _collect(job: submitit.Job, spec: RunSpec, report: LaunchReport) -> None:
    """Record one finished job; a failure is written down, never raised, so the others go on."""
    err = job.exception()
    if err is None:
        job.result()
        report.finished.append(spec.name)
        return
    log = Path(job.paths.stderr)
    if not log.is_file() or log.stat().st_size == 0:  # the debug executor runs in-process and logs nothing
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("".join(traceback.format_exception(err)), encoding="utf-8")
    report.failed.append((spec.name, _error_summary(err), log))


def _record_jobs(log_dir: Path, submitted: dict[str, str]) -> None:
    path = log_dir / JOBS_FILE
    known = read_json(path) if path.is_file() else {}
    known.update(submitted)
    atomic_write_json(path, known)


def attach_active_slurm_jobs(specs: list[RunSpec], log_dir: Path) -> dict[str, submitit.Job]:
    """Jobs of an earlier launch that are still queued/running: wait on them instead of submitting a
    second job that would write into the same run folder (e.g. after the launching shell died)."""
    path = log_dir / JOBS_FILE
    if not path.is_file():
        return {}
    known = read_json(path)
    jobs = {s.name: submitit.SlurmJob(folder=log_dir, job_id=str(known[s.name])) for s in specs if s.name in known}
    return {name: job for name, job in jobs.items() if job.state.split()[0].upper() in _ACTIVE_SLURM_STATES}


def _check_specs(specs: list[RunSpec]) -> None:
    """Two runs sharing a name or a folder would overwrite each other; a bad entry should fail before submitting."""
    names: set[str] = set()
    dirs: dict[Path, str] = {}
    for spec in specs:
        if spec.name in names:
            raise ValueError(f"run name {spec.name!r} appears twice in the grid; names must be unique")
        run_dir = spec.run_dir.absolute()
        if run_dir in dirs:
            raise ValueError(f"runs {dirs[run_dir]!r} and {spec.name!r} share the run folder {run_dir}")
        names.add(spec.name)
        dirs[run_dir] = spec.name
    for entry in sorted({s.entry for s in specs}):
        resolve_entry(entry)


def launch(specs: list[RunSpec], executor: ExecutorKind = "auto", *, log_dir: Path,
           cluster: ClusterConfig | None = None, max_parallel: int | None = None,
           progress: bool = True) -> LaunchReport:
    """Run every spec that is not done and wait; failures are collected, not raised."""
    _check_specs(specs)
    kind = resolve_kind(executor)
    log_dir = Path(log_dir)
    report = LaunchReport(skipped=[s.name for s in specs if run_status(s) == "done"])
    todo = deque(s for s in specs if run_status(s) != "done")
    if not todo:
        return report
    ex = make_executor(kind, log_dir, cluster, max_parallel)
    with tqdm(total=len(todo), desc=f"runs ({kind})", unit="run", disable=not progress) as bar:
        if kind == "debug":  # in-process, one after the other: exception() executes the job
            for spec in todo:
                _collect(ex.submit(RunJob(spec)), spec, report)
                bar.update(1)
        elif kind == "slurm":
            _wait(ex, kind, deque(), _submit_slurm(ex, list(todo), log_dir), report, bar, parallel=0, gpus=[])
        else:
            gpus = visible_gpu_ids()
            _wait(ex, kind, todo, [], report, bar, parallel=max_parallel or max(1, len(gpus)), gpus=gpus)
    return report


def _submit_slurm(ex: submitit.Executor, todo: list[RunSpec], log_dir: Path) -> list[tuple[submitit.Job, RunSpec]]:
    """Re-attach to runs still queued from an earlier launch; submit the rest as ONE job array."""
    attached = attach_active_slurm_jobs(todo, log_dir)
    running = [(attached[s.name], s) for s in todo if s.name in attached]
    fresh = [s for s in todo if s.name not in attached]
    if fresh:
        jobs = ex.submit_array([RunJob(s) for s in fresh])
        _record_jobs(log_dir, {s.name: j.job_id for j, s in zip(jobs, fresh)})
        running += list(zip(jobs, fresh))
    return running


def _wait(ex: submitit.Executor, kind: str, todo: deque[RunSpec], running: list[tuple[submitit.Job, RunSpec]],
          report: LaunchReport, bar: tqdm, parallel: int, gpus: list[int]) -> None:
    """Poll until every job is done, feeding `todo` in so that at most `parallel` run at once (local);
    each local job is pinned to one visible GPU, round-robin."""
    free_slots = deque(range(parallel))
    slot_of: dict[str, int] = {}
    try:
        while todo or running:
            while todo and free_slots:
                spec, slot = todo.popleft(), free_slots.popleft()
                if gpus:
                    ex.update_parameters(gpus_per_node=1, visible_gpus=(gpus[slot % len(gpus)],))
                running.append((ex.submit(RunJob(spec)), spec))
                slot_of[spec.name] = slot
            for job, spec in [(j, s) for j, s in running if j.done()]:
                running.remove((job, spec))
                _collect(job, spec, report)
                if spec.name in slot_of:
                    free_slots.append(slot_of.pop(spec.name))
                bar.update(1)
                bar.set_postfix(failed=len(report.failed))
            if running:
                time.sleep(_POLL_S[kind])
    except BaseException:
        if kind == "local":  # local jobs would outlive us and race a relaunch; Slurm jobs are re-attached
            for job, _ in running:
                job.cancel(check=False)
        raise


def dry_run_table(specs: list[RunSpec]) -> str:
    """The grid as a text table with projected GPU-hours, for `--dry-run`."""
    rows = [(s.name, s.group, str(s.run_dir), run_status(s), f"{s.gpu_hours:.1f}") for s in specs]
    header = ("name", "group", "run_dir", "status", "gpu_hours")
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:{'>' if i == 4 else '<'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    counts = {st: sum(run_status(s) == st for s in specs) for st in ("done", "partial", "new")}
    total = sum(s.gpu_hours for s in specs)
    remaining = sum(s.gpu_hours for s in specs if run_status(s) != "done")
    lines.append(f"total: {len(specs)} runs ({counts['done']} done, {counts['partial']} partial, "
                 f"{counts['new']} new); {total:.1f} GPU-hours projected, {remaining:.1f} still to run")
    return "\n".join(lines)
