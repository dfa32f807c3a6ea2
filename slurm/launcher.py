"""Submit a grid of runs (Slurm job array | local processes | in-process debug) and wait for them.

A run is a folder (config.yaml, metrics.jsonl, checkpoints/last.pt, result.json: DESIGN.md); the
launcher only looks at result.json ("done") and checkpoints/last.pt ("partial", resumable), so
launching the same grid twice never re-trains a finished run and continues interrupted ones.
On Slurm, the submitted job ids are kept in <log_dir>/jobs.json: a relaunch waits on jobs still queued or
running instead of submitting them again, and a job that leaves the queue without a result (cancelled, killed)
is reported failed whether or not the cluster keeps accounting (slurm/queue.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError

from diamond.run.errors import RunLockedError
from diamond.run.io import atomic_write_json, read_json
from slurm.executors import (
    ClusterConfig,
    ExecutorKind,
    load_cluster_config,
    make_executor,
    resolve_kind,
    visible_gpu_ids,
)
from slurm.progress import SuiteProgress
from slurm.queue import ACTIVE_STATES, SlurmWatch, job_states, rejection_error

__all__ = ["RunSpec", "RunJob", "LaunchReport", "ClusterConfig", "load_cluster_config", "make_executor",
           "launch", "dry_run_table", "run_status"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ENTRY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_LOCAL_POLL_S = 0.5  # local jobs are our own processes: cheap to poll; Slurm's pace is ClusterConfig.poll_s
_LOST_GRACE_MIN_S = 10.0  # a job out of the queue may take this long to show its result file on a network FS
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
    elsewhere: list[tuple[str, str]] = field(default_factory=list)  # (name, why): another process holds its folder
    corrupt: list[tuple[str, str]] = field(default_factory=list)  # (name, why): finished, result.json unreadable

    @property
    def ok(self) -> bool:
        """No run failed; a run going on elsewhere is not done here, but it has not failed either."""
        return not self.failed and not self.corrupt

    def summary(self) -> str:
        elsewhere = f", {len(self.elsewhere)} running elsewhere" if self.elsewhere else ""
        lines = [f"{len(self.finished)} finished, {len(self.skipped)} skipped (already done), "
                 f"{len(self.failed) + len(self.corrupt)} failed{elsewhere}"]
        for name, error, log in self.failed:
            lines += [f"  FAILED {name}: {error}", f"    log: {log}"]
        lines += [f"  FAILED {name}: {why}" for name, why in self.corrupt]
        for name, why in self.elsewhere:
            lines.append(f"  RUNNING ELSEWHERE {name}: {why}")
        if self.failed:
            lines.append("Re-run the same command to retry the failed runs; "
                         "each resumes from its last checkpoint, if any.")
        if self.elsewhere:
            lines.append("Another live process is running those runs; re-run the same command once it has finished.")
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


def _collect(job: submitit.Job, spec: RunSpec, report: LaunchReport, progress: SuiteProgress) -> None:
    """Record one finished job; a failure is written down, never raised, so the others go on."""
    err = job.exception()
    if err is None:
        job.result()
        report.finished.append(spec.name)
        progress.finished(spec.name, "finished")
        return
    error = _error_summary(err)
    if RunLockedError.__name__ in error:  # the run folder's lock is held: it runs elsewhere, it did not fail
        report.elsewhere.append((spec.name, error))
        progress.finished(spec.name, "running elsewhere")
        return
    log = Path(job.paths.stderr)
    if not log.is_file() or log.stat().st_size == 0:  # the debug executor runs in-process and logs nothing
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("".join(traceback.format_exception(err)), encoding="utf-8")
    report.failed.append((spec.name, error, log))
    progress.finished(spec.name, "FAILED")


def _lost(job: submitit.Job, spec: RunSpec, state: str, report: LaunchReport, progress: SuiteProgress) -> None:
    """A Slurm job that left the queue without a result: cancelled, killed, or its node lost."""
    error = f"Slurm job {job.job_id} ended without a result (state: {state})"
    log = Path(job.paths.stderr)
    if not log.is_file():  # cancelled before it started: leave the reason where the summary points
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(error + "\n", encoding="utf-8")
    report.failed.append((spec.name, error, log))
    progress.finished(spec.name, "FAILED")


def _record_jobs(log_dir: Path, submitted: dict[str, str]) -> None:
    path = log_dir / JOBS_FILE
    known = read_json(path) if path.is_file() else {}
    known.update(submitted)
    atomic_write_json(path, known)


def attach_active_slurm_jobs(specs: list[RunSpec], log_dir: Path) -> dict[str, submitit.Job]:
    """Jobs of an earlier launch that are still queued/running: wait on them instead of submitting a
    second job that would write into the same run folder (e.g. after the launching shell died).
    Asks squeue, then sacct; raises SlurmQueryError when neither answers, rather than risk a double submission."""
    path = log_dir / JOBS_FILE
    if not path.is_file():
        return {}
    known = read_json(path)
    ids = {s.name: str(known[s.name]) for s in specs if s.name in known}
    states = job_states(ids.values())
    return {name: submitit.SlurmJob(folder=log_dir, job_id=job_id) for name, job_id in ids.items()
            if states[job_id] in ACTIVE_STATES}


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
           progress: bool = True, progress_every_s: float = 30.0) -> LaunchReport:
    """Run every spec that is not done and wait; failures are collected, not raised. While waiting, every
    `progress_every_s` seconds each running run that moved gets one line (slurm/progress.py)."""
    _check_specs(specs)
    kind = resolve_kind(executor)
    log_dir = Path(log_dir)
    report = LaunchReport(skipped=[s.name for s in specs if run_status(s) == "done"])
    todo = deque(s for s in specs if run_status(s) != "done")
    if not todo:
        return report
    cluster = cluster or ClusterConfig()
    ex = make_executor(kind, log_dir, cluster, max_parallel)
    bar = SuiteProgress(len(todo), f"runs ({kind})", enabled=progress, every_s=progress_every_s)
    try:
        if kind == "debug":  # in-process, one after the other: exception() executes the job
            for spec in todo:
                _collect(ex.submit(RunJob(spec)), spec, report, bar)
        elif kind == "slurm":
            _wait_slurm(_submit_slurm(ex, list(todo), log_dir, cluster, bar), report, bar, cluster.poll_s)
        else:
            gpus = visible_gpu_ids()
            _wait_local(ex, todo, report, bar, parallel=max_parallel or max(1, len(gpus)), gpus=gpus)
    finally:
        bar.close()
    return report


def _submit_slurm(ex: submitit.Executor, todo: list[RunSpec], log_dir: Path, cluster: ClusterConfig,
                  progress: SuiteProgress) -> list[tuple[submitit.Job, RunSpec]]:
    """Re-attach to runs still queued from an earlier launch; submit the rest as ONE job array.
    An sbatch refusal (e.g. more memory than any node has) raises SubmissionRejectedError, one sentence."""
    attached = attach_active_slurm_jobs(todo, log_dir)
    running = [(attached[s.name], s) for s in todo if s.name in attached]
    fresh = [s for s in todo if s.name not in attached]
    if attached:
        progress.note(f"{len(attached)} run(s) still queued or running from an earlier launch, waited on, not "
                      f"submitted again: Slurm job(s) {', '.join(j.job_id for j in attached.values())}")
    if fresh:
        sbatch_said = io.StringIO()
        try:
            with contextlib.redirect_stderr(sbatch_said):  # submitit echoes sbatch's stderr: ours says it once
                jobs = ex.submit_array([RunJob(s) for s in fresh])
        except FailedJobError as e:
            raise rejection_error(str(e) or sbatch_said.getvalue(), dataclasses.asdict(cluster), cluster.source) from e
        _record_jobs(log_dir, {s.name: j.job_id for j, s in zip(jobs, fresh)})
        running += list(zip(jobs, fresh))
        progress.note(f"submitted {len(fresh)} run(s) as Slurm job {jobs[0].job_id.split('_')[0]} (logs: {log_dir})")
    return running


def _wait_slurm(running: list[tuple[submitit.Job, RunSpec]], report: LaunchReport, bar: SuiteProgress,
                poll_s: float) -> None:
    """Ask squeue every `poll_s` s until each job has a result or has left the queue without one. Interrupting
    leaves the jobs running: the next launch re-attaches to them."""
    watch = SlurmWatch(grace_s=max(poll_s, _LOST_GRACE_MIN_S))
    while running:
        watch.refresh(job for job, _ in running)
        for job, spec in list(running):
            if watch.has_result(job):
                _collect(job, spec, report, bar)
            elif watch.lost(job):
                _lost(job, spec, watch.state(job), report, bar)
            else:
                continue
            running.remove((job, spec))
        bar.running((s.name, s.run_dir, Path(j.paths.stderr), watch.state(j)) for j, s in running)
        if running:
            time.sleep(poll_s)


def _wait_local(ex: submitit.Executor, todo: deque[RunSpec], report: LaunchReport, bar: SuiteProgress,
                parallel: int, gpus: list[int]) -> None:
    """Poll until every job is done, feeding `todo` in so that at most `parallel` run at once;
    each job is pinned to one visible GPU, round-robin."""
    running: list[tuple[submitit.Job, RunSpec]] = []
    free_slots = deque(range(parallel))
    slot_of: dict[str, int] = {}
    try:
        while todo or running:
            while todo and free_slots:
                spec, slot = todo.popleft(), free_slots.popleft()
                if gpus:
                    ex.update_parameters(gpus_per_node=1, visible_gpus=(gpus[slot % len(gpus)],))
                with _inherited_output(Path(ex.folder) / f"controller-{spec.name}.log"):
                    running.append((ex.submit(RunJob(spec)), spec))
                slot_of[spec.name] = slot
            for job, spec in [(j, s) for j, s in running if j.done()]:
                running.remove((job, spec))
                _collect(job, spec, report, bar)
                free_slots.append(slot_of.pop(spec.name))
            bar.running((s.name, s.run_dir, Path(j.paths.stderr), "") for j, s in running)
            if running:
                time.sleep(_LOCAL_POLL_S)
    except BaseException:  # local jobs would outlive us and race a relaunch (Slurm jobs are re-attached)
        _stop_local_jobs([job for job, _ in running])
        raise


@contextlib.contextmanager
def _inherited_output(path: Path):
    """Processes started in the block write their stdout and stderr to `path`: submitit's local controller
    prints its own traceback when it is stopped, which belongs in the logs, not under the suite's one line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _stop_local_jobs(jobs: list[submitit.Job], grace_s: float = 5.0) -> None:
    """Stop local jobs and everything they started: SIGINT to each controller (it stops its worker, which
    ignores SIGTERM), then SIGKILL to whatever of the tree is still alive after `grace_s`."""
    controllers = [p for p in (getattr(job, "_process", None) for job in jobs) if p is not None]
    tree = [pid for p in controllers for pid in _descendants(p.pid)]
    for job in jobs:
        job.cancel(check=False)
    for p in controllers:
        try:
            p.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            p.kill()
    for pid in tree:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # already gone
        if b"submitit" in cmdline:  # still the job's process, not a recycled pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


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
