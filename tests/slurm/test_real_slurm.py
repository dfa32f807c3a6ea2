"""The launcher against a real one-node Slurm (tests/slurm/cluster.py), without and with accounting.

Scenarios: the smoke suite as a job array with its report, and a re-run that submits nothing; a run interrupted
by `scontrol requeue`, by a preemption signal (USR2) and by its time limit resumes from its checkpoint and ends
with result.json and metrics.jsonl identical to an uninterrupted run; a launcher killed and started again while
its jobs run submits nothing and waits for them; a cancelled job is reported failed within a minute; an
impossible resource request is one sentence. Run by tests/slurm/run_stage.sh (see conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml

from tests.slurm._entry import toy_run
from tests.slurm.conftest import REPO, Slurm

if os.environ.get("DIAMOND_SLURM_TESTS", "") in ("", "0"):
    pytest.skip("real-Slurm tests are opt-in (they start daemons as root): tests/slurm/run_stage.sh runs them",
                allow_module_level=True)

ENTRY = "tests.slurm._entry:toy_run"
plain_only = pytest.mark.parametrize("slurm", ["plain"], indirect=True)


def cluster_yaml(tmp: Path, **settings) -> Path:
    path = tmp / "cluster.yaml"
    path.write_text(yaml.safe_dump({"gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 1, "timeout_min": 60,
                                    "array_parallelism": 4, "poll_s": 1, **settings}))
    return path


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.3)


class Launcher:
    """tests/slurm/_launch.py in its own process, on a grid of toy runs."""

    def __init__(self, slurm: Slurm, tmp: Path, runs: dict[str, dict], **settings) -> None:
        self.slurm, self.tmp = slurm, tmp
        self.args = tmp / "launch.json"
        self.args.write_text(json.dumps({
            "specs": [{"name": n, "run_dir": str(tmp / "runs" / n), "entry": ENTRY, "kwargs": kw}
                      for n, kw in runs.items()],
            "log_dir": str(tmp / "logs"), "cluster": str(cluster_yaml(tmp, **settings)),
            "report": str(tmp / "report.json")}))
        self.proc: subprocess.Popen | None = None
        self.output = ""

    def start(self) -> Launcher:
        self.out = open(self.tmp / "launcher.out", "w")
        self.proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "slurm" / "_launch.py"), str(self.args)],
                                     env=self.slurm.env, stdout=self.out, stderr=subprocess.STDOUT, cwd=self.tmp)
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def finish(self, timeout_s: float) -> dict:
        """The LaunchReport as JSON; fails, and kills the launcher, when it is still waiting after `timeout_s`."""
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the launcher was still waiting after {timeout_s:.0f} s:\n{self.log()}")
        finally:
            self.out.close()
        assert self.proc.returncode == 0, self.log()
        return json.loads((self.tmp / "report.json").read_text())

    def log(self) -> str:
        return (self.tmp / "launcher.out").read_text(errors="replace")[-4000:]

    def job_id(self, name: str) -> str:
        return json.loads((self.tmp / "logs" / "jobs.json").read_text())[name]

    def run_dir(self, name: str) -> Path:
        return self.tmp / "runs" / name


def started(run_dir: Path) -> Callable[[], bool]:
    return lambda: (run_dir / "calls.jsonl").is_file()


def calls(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "calls.jsonl").read_text().splitlines()]


def assert_same_as_uninterrupted(run_dir: Path, tmp: Path, **kwargs) -> None:
    reference = tmp / "reference" / run_dir.name
    toy_run(reference, **{**kwargs, "step_s": 0.0, "wait_at_step": None})
    for name in ("metrics.jsonl", "result.json"):
        assert (run_dir / name).read_bytes() == (reference / name).read_bytes(), \
            f"{name} differs from an uninterrupted run"


@plain_only
def test_smoke_suite_as_job_array_then_rerun_submits_nothing(slurm: Slurm, tmp_path: Path) -> None:
    argv = [sys.executable, str(REPO / "run_suite.py"), "--suite", "atari100k", "--profile", "smoke",
            "--games", "Breakout", "--seeds", "2", "--executor", "slurm", "--cluster", str(cluster_yaml(tmp_path)),
            "--out", str(tmp_path / "runs"), "--report-dir", str(tmp_path / "reports")]
    before = slurm.sbatch_calls()
    start = time.monotonic()
    first = subprocess.run(argv, env=slurm.env, capture_output=True, text=True, timeout=480, cwd=tmp_path)
    took = time.monotonic() - start
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "2 finished, 0 skipped (already done), 0 failed" in first.stdout
    jobs = json.loads(next((tmp_path / "runs").rglob("jobs.json")).read_text())
    assert sorted(jobs.values()) == [f"{jobs['Breakout-s0'].split('_')[0]}_{i}" for i in (0, 1)], "not one array"
    assert slurm.sbatch_calls() == before + 1
    assert (tmp_path / "reports" / "atari100k" / "report.md").is_file()
    if took > 45:  # the suite printed each running run's progress while it waited
        assert re.search(r"^\[\d\d:\d\d:\d\d\]\s+Breakout-s[01]: \S", first.stderr, re.M), first.stderr[-3000:]

    again = subprocess.run(argv, env=slurm.env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "0 finished, 2 skipped (already done), 0 failed" in again.stdout
    assert slurm.sbatch_calls() == before + 1, "re-running a finished suite submitted jobs"


# the signal paths do not involve accounting: they run once, on the cluster without it
@pytest.mark.parametrize("slurm,interrupt", [("plain", "scontrol-requeue"), ("plain", "preemption-usr2"),
                                             ("plain", "time-limit"), ("accounting", "scontrol-requeue")],
                         indirect=["slurm"])
def test_interrupted_run_resumes_like_an_uninterrupted_one(slurm: Slurm, tmp_path: Path, interrupt: str) -> None:
    victim, bystander = {"steps": 6, "wait_at_step": 2}, {"steps": 5}
    # time-limit: with a 2-minute limit, Slurm sends USR2 (submitit's --signal=USR2@90) within the first minute
    launcher = Launcher(slurm, tmp_path, {"victim": victim, "bystander": bystander},
                        timeout_min=2 if interrupt == "time-limit" else 60).start()
    run_dir = launcher.run_dir("victim")
    wait_until(lambda: (run_dir / ".waiting_at_2").exists(), 60, "the victim run to reach step 2")
    job = launcher.job_id("victim")
    if interrupt == "scontrol-requeue":
        slurm.run("scontrol", "requeue", job)
    elif interrupt == "preemption-usr2":
        slurm.run("scancel", "--signal=USR2", job)
    report = launcher.finish(timeout_s=150)
    assert sorted(report["finished"]) == ["bystander", "victim"] and report["failed"] == []
    starts = [c["start_step"] for c in calls(run_dir)]  # a time limit may signal twice: resumed each time
    assert starts == [0, 2] or (interrupt == "time-limit" and starts[0] == 0 and starts[-1] >= 2), \
        f"did not resume from its checkpoint: started at steps {starts}"
    assert len({c["job"] for c in calls(run_dir)}) == 1, "not requeued as the same job"
    stdout = (tmp_path / "logs" / f"{job}_0_log.out").read_text()
    if interrupt == "preemption-usr2":
        assert "this job is preempted" in stdout and "Requeued job" in stdout
    if interrupt == "time-limit":
        assert "this job is timed-out" in stdout and "Requeued job" in stdout
    assert_same_as_uninterrupted(run_dir, tmp_path, **victim)
    assert_same_as_uninterrupted(launcher.run_dir("bystander"), tmp_path, **bystander)


def test_killed_launcher_rerun_submits_nothing_and_waits(slurm: Slurm, tmp_path: Path) -> None:
    runs = {"a": {"steps": 12, "step_s": 0.5}, "b": {"steps": 12, "step_s": 0.5}}
    before = slurm.sbatch_calls()
    first = Launcher(slurm, tmp_path, runs).start()
    wait_until(lambda: all(started(first.run_dir(n))() for n in runs), 60, "both runs to start")
    first.kill()  # the login shell died; the jobs go on
    assert {state for _, state, _ in slurm.cluster.squeue()} == {"RUNNING"}
    second = Launcher(slurm, tmp_path, runs).start()
    report = second.finish(timeout_s=90)
    assert slurm.sbatch_calls() == before + 1, "the relaunch submitted the runs a second time"
    assert "2 run(s) still queued or running from an earlier launch" in second.log()
    assert sorted(report["finished"]) == ["a", "b"] and report["failed"] == []
    assert all(len(calls(second.run_dir(n))) == 1 for n in runs), "a run was started twice"


def test_cancelled_job_is_reported_failed_within_a_minute(slurm: Slurm, tmp_path: Path) -> None:
    launcher = Launcher(slurm, tmp_path, {"doomed": {"steps": 300, "step_s": 1.0}}).start()
    wait_until(started(launcher.run_dir("doomed")), 60, "the run to start")
    job = launcher.job_id("doomed")
    slurm.run("scancel", job)
    cancelled = time.monotonic()
    report = launcher.finish(timeout_s=90)
    assert time.monotonic() - cancelled < 60, "the cancelled job was reported after more than a minute"
    (name, error, log), = report["failed"]
    assert name == "doomed" and error == f"Slurm job {job} ended without a result (state: CANCELLED)"
    assert Path(log).is_file() and log in launcher.log()


@plain_only
def test_impossible_resource_request_is_one_sentence(slurm: Slurm, tmp_path: Path) -> None:
    path = cluster_yaml(tmp_path, mem_gb=64)  # the node has 4 GB
    before = slurm.sbatch_calls()
    out = subprocess.run([sys.executable, str(REPO / "run_suite.py"), "--suite", "atari100k", "--profile", "smoke",
                          "--games", "Breakout", "--seeds", "1", "--executor", "slurm", "--cluster", str(path),
                          "--out", str(tmp_path / "runs"), "--report-dir", str(tmp_path / "reports")],
                         env=slurm.env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert slurm.sbatch_calls() == before + 1
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert str(path) in out.stderr and "mem_gb: 64" in out.stderr
    assert "Memory specification can not be satisfied" in out.stderr and "Traceback" not in out.stderr
