"""Cluster settings (YAML) and the submitit executor factory: the only place that knows Slurm flags."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import submitit

from diamond.run.io import read_yaml

ExecutorKind = Literal["auto", "local", "slurm", "debug"]
EXECUTOR_KINDS: tuple[str, ...] = ("auto", "local", "slurm", "debug")


DEFAULT_GPUS_PER_NODE = 1  # a run of the paper's networks trains on one GPU


@dataclass
class ClusterConfig:
    """Per-job Slurm resources; one job = one run, so these are the needs of a single run."""

    partition: str | None = None
    gpus_per_node: int | None = None  # None: what the runs need (run_suite.py: 1, or 0 for a CPU profile)
    cpus_per_task: int = 8
    mem_gb: int = 32
    timeout_min: int = 4320
    array_parallelism: int = 64
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    additional_parameters: dict[str, Any] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)
    poll_s: float = 15.0  # seconds between two squeue calls while waiting for the jobs
    source: Path | None = field(default=None, compare=False)  # the YAML file these came from, for messages

    def __post_init__(self) -> None:
        for name in ("partition", "account", "qos", "constraint"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"cluster config: {name} must be a string or null, got {value!r}")
        for name, low in (("gpus_per_node", 0), ("cpus_per_task", 1), ("mem_gb", 1), ("timeout_min", 1),
                          ("array_parallelism", 1)):
            value = getattr(self, name)
            if name == "gpus_per_node" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"cluster config: {name} must be an integer >= {low}, got {value!r}")
        if isinstance(self.poll_s, bool) or not isinstance(self.poll_s, (int, float)) or self.poll_s <= 0:
            raise ValueError(f"cluster config: poll_s must be a number of seconds > 0, got {self.poll_s!r}")
        if not isinstance(self.additional_parameters, dict):
            raise ValueError(f"cluster config: additional_parameters must be a mapping, "
                             f"got {self.additional_parameters!r}")
        if not isinstance(self.setup, list) or not all(isinstance(line, str) for line in self.setup):
            raise ValueError(f"cluster config: setup must be a list of shell lines, got {self.setup!r}")


def load_cluster_config(path: str | os.PathLike) -> ClusterConfig:
    """Read cluster settings; a typo'd key must fail loudly, not silently fall back to a default."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cluster config {path} does not exist (see slurm/cluster.example.yaml)")
    raw = read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"cluster config {path}: expected a mapping of settings, got {type(raw).__name__}")
    valid = [f.name for f in dataclasses.fields(ClusterConfig) if f.name != "source"]
    unknown = sorted(set(raw) - set(valid))
    if unknown:
        raise ValueError(f"cluster config {path}: unknown key(s) {unknown}; valid keys are {valid}")
    try:
        return ClusterConfig(**raw, source=path)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def slurm_reachable(timeout_s: float = 20.0) -> bool:
    """sbatch is on PATH and a Slurm controller answers `sinfo`: Slurm's packages installed on a machine that
    belongs to no cluster (a laptop, a CI image) must not turn `auto` into failed submissions."""
    if shutil.which("sbatch") is None:
        return False
    try:
        return subprocess.run(["sinfo", "--noheader", "--format=%P"], capture_output=True,
                              timeout=timeout_s).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def resolve_kind(kind: str) -> str:
    """'auto' means Slurm exactly when this machine can submit to a cluster that answers, else local."""
    if kind not in EXECUTOR_KINDS:
        raise ValueError(f"unknown executor {kind!r}; valid choices are {list(EXECUTOR_KINDS)}")
    if kind == "auto":
        return "slurm" if slurm_reachable() else "local"
    return kind


def slurm_parameters(cluster: ClusterConfig, max_parallel: int | None, job_name: str) -> dict[str, Any]:
    """Translate our settings to submitit's Slurm parameter names (sbatch flags)."""
    params: dict[str, Any] = {
        "job_name": job_name,
        "time": cluster.timeout_min,
        "mem": f"{cluster.mem_gb}GB",
        "cpus_per_task": cluster.cpus_per_task,
        "ntasks_per_node": 1,
        "array_parallelism": max_parallel or cluster.array_parallelism,
        "setup": list(cluster.setup),
        "additional_parameters": dict(cluster.additional_parameters),
    }
    gpus = DEFAULT_GPUS_PER_NODE if cluster.gpus_per_node is None else cluster.gpus_per_node
    if gpus > 0:
        params["gpus_per_node"] = gpus
    for name in ("partition", "account", "qos", "constraint"):
        if getattr(cluster, name) is not None:
            params[name] = getattr(cluster, name)
    return params


def make_executor(kind: ExecutorKind, log_dir: Path, cluster: ClusterConfig | None = None,
                  max_parallel: int | None = None, job_name: str = "diamond") -> submitit.Executor:
    """Build the executor; `max_parallel` is the Slurm array throttle (%N) here, while local
    concurrency is enforced by `launch`, since submitit's LocalExecutor starts every job at once."""
    if max_parallel is not None and max_parallel < 1:
        raise ValueError(f"max_parallel must be >= 1, got {max_parallel}")
    kind = resolve_kind(kind)
    cluster = cluster or ClusterConfig()
    log_dir = Path(log_dir)
    if kind == "debug":
        return submitit.DebugExecutor(folder=log_dir)
    if kind == "local":
        executor = submitit.LocalExecutor(folder=log_dir)
        executor.update_parameters(timeout_min=cluster.timeout_min)
        return executor
    executor = submitit.SlurmExecutor(folder=log_dir)
    executor.update_parameters(**slurm_parameters(cluster, max_parallel, job_name))
    return executor


def visible_gpu_ids() -> list[int]:
    """GPU ids a local job may be pinned to. submitit's LocalExecutor always overwrites
    CUDA_VISIBLE_DEVICES, so without pinning a local job would see no GPU at all."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        tokens = [t.strip() for t in env.split(",") if t.strip()]
        if not all(t.isdigit() for t in tokens):
            raise ValueError(f"CUDA_VISIBLE_DEVICES={env!r}: the local executor needs integer GPU indices")
        return [int(t) for t in tokens]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(t) for t in out.split() if t.strip().isdigit()]
