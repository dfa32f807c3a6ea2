"""What Slurm says about our jobs, asked the way every cluster answers: squeue first (the controller knows every
queued or running job, and recently ended ones), sacct only as the fallback (accounting may be absent or
restricted, and submitit alone then waits forever on a cancelled job). Also: an sbatch refusal as one sentence.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Iterable

import submitit
from submitit.slurm.slurm import read_job_id

from diamond.run.errors import KnownError

# States of a job that is queued or running and may still write to its run folder; UNKNOWN = nobody answered.
ACTIVE_STATES = frozenset({"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING",
                           "REQUEUE_HOLD", "REQUEUE_FED", "PREEMPTED", "SIGNALING", "STAGE_OUT", "UNKNOWN"})
GONE = "GONE"  # the controller no longer lists the job and accounting does not know it: it has ended
# sbatch's words -> the cluster-file setting they point at (first match wins)
_SETTING_WORDS = (("memory", "mem_gb"), ("account", "account"), ("partition", "partition"), ("qos", "qos"),
                  ("gres", "gpus_per_node"), ("gpu", "gpus_per_node"), ("time limit", "timeout_min"),
                  ("feature", "constraint"), ("constraint", "constraint"), ("processor", "cpus_per_task"),
                  ("cpu", "cpus_per_task"), ("array", "array_parallelism"))

# sbatch's words when no controller answers: not a refusal of any setting
_UNREACHABLE_WORDS = ("unable to contact slurm controller", "connect failure", "connection refused",
                      "socket timed out", "zero bytes were transmitted")


class SlurmQueryError(KnownError):
    """Neither squeue nor sacct answered, so whether earlier jobs still run cannot be told."""


class SubmissionRejectedError(KnownError):
    """sbatch refused the job array: the message names the cluster file, the setting and sbatch's words."""


def _ask(argv: list[str]) -> tuple[int, str]:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return 1, str(e)
    return out.returncode, out.stdout if out.returncode == 0 else (out.stderr or out.stdout).strip()


def _expand(job_id: str) -> list[str]:
    """sacct writes pending array tasks as 12_[3-5%2]: one id per task."""
    ids = []
    for part in read_job_id(job_id.split("%")[0].rstrip("]") + ("]" if "[" in job_id else "")):
        if len(part) < 3:
            ids.append("_".join(part))
        else:
            ids += [f"{part[0]}_{i}" for i in range(int(part[1]), int(part[2]) + 1)]
    return ids


def _parse(text: str) -> dict[str, str]:
    states: dict[str, str] = {}
    for line in text.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id and state and "." not in job_id:
            for one in _expand(job_id):
                states[one] = state.split()[0].upper()  # "CANCELLED by 0" -> CANCELLED
    return states


def job_states(job_ids: Iterable[str]) -> dict[str, str]:
    """Slurm state of each job id (array tasks as 12_3); GONE for a job that ended long ago where accounting
    is off; raises SlurmQueryError when neither squeue nor sacct answered."""
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    bases = ",".join(sorted({i.split("_")[0] for i in ids}))
    rc, out = _ask(["squeue", "--noheader", "--array", "--states=all", f"--jobs={bases}", "--format=%i|%T"])
    squeue_ok = rc == 0 or "Invalid job id" in out
    listed = _parse(out) if rc == 0 else {}
    missing = [i for i in ids if i not in listed]
    sacct: dict[str, str] = {}
    if missing:
        rc_acct, out_acct = _ask(["sacct", "--noheader", "--allocations", "--parsable2", "--format=JobID,State",
                                  *(f"--jobs={i}" for i in missing)])
        if rc_acct == 0:
            sacct = _parse(out_acct)
        elif not squeue_ok:
            raise SlurmQueryError(f"cannot ask Slurm about jobs {', '.join(missing)}: squeue said {out!r} and "
                                  f"sacct said {out_acct!r}")
    return {i: listed.get(i) or sacct.get(i) or (GONE if squeue_ok else "UNKNOWN") for i in ids}


class SlurmWatch:
    """Which jobs have ended: a result file, or Slurm no longer queueing/running the job (then, after `grace_s`
    for a shared file system to show a late result file, it ended without one: cancelled, killed, node lost)."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.states: dict[str, str] = {}
        self._ended_at: dict[str, float] = {}

    def refresh(self, jobs: Iterable[submitit.Job]) -> None:
        try:
            self.states = job_states(j.job_id for j in jobs)
        except SlurmQueryError:  # a controller hiccup: keep waiting, ask again at the next poll
            self.states = {}

    def state(self, job: submitit.Job) -> str:
        return self.states.get(job.job_id, "UNKNOWN")

    def has_result(self, job: submitit.Job) -> bool:
        folder = job.paths.folder
        try:
            folder.chmod(folder.stat().st_mode)  # refreshes a network file system's cached listing
        except OSError:
            pass
        return job.paths.result_pickle.exists()

    def lost(self, job: submitit.Job) -> bool:
        """True once the job has been out of Slurm's queue for `grace_s` without a result file."""
        if self.state(job) in ACTIVE_STATES:
            self._ended_at.pop(job.job_id, None)
            return False
        first = self._ended_at.setdefault(job.job_id, time.monotonic())
        return time.monotonic() - first >= self.grace_s


def rejection_error(sbatch_stderr: str, settings: dict[str, object],
                    cluster_file: Path | None) -> SubmissionRejectedError:
    """One sentence: the cluster file, which of its settings sbatch refused (read from sbatch's words), and those
    words."""
    lines = [ln.removeprefix("sbatch: ").removeprefix("error: ").strip() for ln in sbatch_stderr.splitlines()]
    said = "; ".join(ln for ln in lines if ln)
    where = str(cluster_file) if cluster_file else "the built-in cluster settings (no --cluster file)"
    lower = said.lower()
    if any(word in lower for word in _UNREACHABLE_WORDS):
        return SubmissionRejectedError(f"the Slurm controller does not answer, so nothing was submitted (sbatch said: "
                                       f"{said}); check `sinfo` on this machine, or use --executor local")
    setting = next((name for word, name in _SETTING_WORDS if word in lower), None)
    if setting is None:
        what = "check its partition, gpus_per_node, cpus_per_task, mem_gb, timeout_min, account, qos and constraint"
    else:
        what = f"its setting {setting}: {settings.get(setting)!r} was refused"
    return SubmissionRejectedError(f"sbatch refused the jobs of {where} ({what}); sbatch said: {said}")
