"""Signals to a running suite: `kill <pid>` (SIGTERM to the suite's process alone, as a user or a batch system
sends) and Ctrl-C (SIGINT to the terminal's whole process group) each end in one line and exit 130, and leave
no local job writing into its run folder."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ablations.registry import Suite, SuiteOptions
from diamond.run.io import append_jsonl, atomic_write_json
from slurm.launcher import RunSpec

REPO = Path(__file__).resolve().parent.parent


def stubborn_entry(run_dir: Path, steps: int = 40, sleep_s: float = 0.25) -> None:
    """A run that ignores SIGINT (as a trainer saving a checkpoint might); submitit's worker ignores SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for step in range(steps):
        append_jsonl(Path(run_dir) / "metrics.jsonl", {"step": step})
        time.sleep(sleep_s)
    atomic_write_json(Path(run_dir) / "result.json", {"score": 1.0})


def _stages(opts: SuiteOptions) -> list[list[RunSpec]]:
    return [[RunSpec("slow", opts.suite_dir("slowtoy") / "slow", "tests.test_bad_input_signals:stubborn_entry", {})]]


def _report(opts: SuiteOptions) -> tuple[Path, Path]:
    raise AssertionError("an interrupted suite builds no report")


SUITE = Suite(name="slowtoy", description="one slow toy run", paper_artefact="none", stages=_stages, report=_report)


def lines(path: Path) -> int:
    return path.read_text().count("\n") if path.is_file() else 0


@pytest.mark.parametrize("how", ["sigterm_to_the_suite_alone", "ctrl_c_to_the_process_group"])
def test_a_stopped_suite_leaves_no_local_job_running(tmp_path: Path, how: str) -> None:
    argv = ["--suite", "slowtoy", "--executor", "local", "--out", str(tmp_path / "runs"),
            "--report-dir", str(tmp_path / "reports")]
    script = ("from ablations.registry import SUITE_MODULES\n"
              "SUITE_MODULES['slowtoy'] = 'tests.test_bad_input_signals'\n"
              f"import run_suite\nraise SystemExit(run_suite.main({argv!r}))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, start_new_session=True)
    metrics = tmp_path / "runs" / "slowtoy" / "paper" / "slow" / "metrics.jsonl"
    deadline = time.monotonic() + 240  # two Python processes to start: minutes on a loaded 2-core machine
    while lines(metrics) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lines(metrics) >= 2, "the local job never started"
    if how == "sigterm_to_the_suite_alone":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    said = [line for line in err.splitlines() if line.strip() and not re.match(r"\[\d\d:\d\d:\d\d\] ", line)]
    assert said == [f"run_suite.py: interrupted; run the same command to resume: run_suite.py {' '.join(argv)}"], \
        f"one line, no traceback (progress lines apart): {err}"
    time.sleep(1.5)  # the job's own cleanup (SIGINT, then SIGKILL one second later)
    stopped_at = lines(metrics)
    time.sleep(3.0)  # 12 more steps had it survived
    assert lines(metrics) == stopped_at and stopped_at < 40, "the local job kept writing its run folder"
