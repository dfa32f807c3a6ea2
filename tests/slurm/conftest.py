"""Fixtures of the real-Slurm tests: a one-node cluster per variant (without, then with accounting), started once
per session, with sbatch wrapped to count submissions.

Opt-in only (DIAMOND_SLURM_TESTS=1; tests/slurm/run_stage.sh sets it): a plain `python -m pytest` never starts a
daemon. Opted in but unable to set Slurm up, a test skips with the reason, or fails where the stage is required
(DIAMOND_SLURM_TESTS=required or CI=true).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.slurm.cluster import OneNodeCluster, why_unavailable

REPO = Path(__file__).resolve().parents[2]
REQUIRED = os.environ.get("DIAMOND_SLURM_TESTS") == "required" or os.environ.get("CI") == "true"


@dataclass
class Slurm:
    """A running cluster as the tests see it: `env` for every client command and launcher process."""

    cluster: OneNodeCluster
    env: dict[str, str]
    sbatch_log: Path

    @property
    def accounting(self) -> bool:
        return self.cluster.accounting

    def sbatch_calls(self) -> int:
        return len(self.sbatch_log.read_text().splitlines()) if self.sbatch_log.exists() else 0

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=60, check=True)


class _Clusters:
    """At most one cluster at a time; asking for the other variant stops the running one."""

    def __init__(self) -> None:
        self.current: tuple[str, Slurm, Path] | None = None

    def get(self, variant: str) -> Slurm:
        if self.current is not None and self.current[0] == variant:
            return self.current[1]
        self.close()
        accounting = variant == "accounting"
        reason = why_unavailable(accounting)
        if reason:
            (pytest.fail if REQUIRED else pytest.skip)(reason)
        root = Path(tempfile.mkdtemp(prefix=f"slurm-{variant}-"))  # short: munge's socket path is limited
        cluster = OneNodeCluster(root, accounting)
        cluster.start()
        bin_dir, sbatch_log = root / "bin", root / "sbatch.log"
        bin_dir.mkdir()
        (bin_dir / "sbatch").write_text(f'#!/bin/sh\necho "$@" >> {sbatch_log}\nexec {shutil.which("sbatch")} "$@"\n')
        (bin_dir / "sbatch").chmod(0o755)
        env = dict(cluster.env, PATH=f"{bin_dir}{os.pathsep}{os.path.dirname(sys.executable)}{os.pathsep}"
                                     f"{cluster.env['PATH']}",
                   PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
                   OMP_NUM_THREADS="1")
        self.current = (variant, Slurm(cluster, env, sbatch_log), root)
        return self.current[1]

    def close(self) -> None:
        if self.current is None:
            return
        _, slurm, root = self.current
        self.current = None
        slurm.cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def _clusters() -> Iterator[_Clusters]:
    clusters = _Clusters()
    try:
        yield clusters
    finally:
        clusters.close()


@pytest.fixture(params=["plain", "accounting"])
def slurm(request: pytest.FixtureRequest, _clusters: _Clusters) -> Slurm:
    """The cluster of the test's variant: "plain" (no accounting: sacct fails) or "accounting" (slurmdbd)."""
    return _clusters.get(request.param)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of one variant before any of the other, so that each cluster starts once."""
    def variant(item: pytest.Item) -> bool:
        return getattr(item, "callspec", None) is not None and item.callspec.params.get("slurm") == "accounting"
    items.sort(key=variant)
