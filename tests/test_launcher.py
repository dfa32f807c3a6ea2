"""Launcher: skip done runs, resume partial ones, report failures with logs, Slurm arrays, requeue."""

from __future__ import annotations

import os
import re
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import submitit

from diamond.io import read_json, read_jsonl
from slurm.launcher import (ClusterConfig, RunJob, RunSpec, attach_active_slurm_jobs, dry_run_table, launch,
                            load_cluster_config, make_executor, run_status)

REPO = Path(__file__).resolve().parents[1]
ENTRY = "tests._toy_entry:toy_entry"


@pytest.fixture(autouse=True)
def _importable_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spawned job processes must import tests._toy_entry whatever their working directory."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


def spec(tmp: Path, name: str, **kwargs) -> RunSpec:
    return RunSpec(name=name, run_dir=tmp / "runs" / name, entry=ENTRY, kwargs=kwargs, gpu_hours=1.5, group="g")


def calls(s: RunSpec) -> list[dict]:
    return read_jsonl(s.run_dir / "calls.jsonl")


def steps_logged(s: RunSpec) -> list[int]:
    return [m["step"] for m in read_jsonl(s.run_dir / "metrics.jsonl")]


def test_debug_grid_failure_resume_and_skip(tmp_path: Path) -> None:
    good, bad, killed = spec(tmp_path, "good", steps=3), spec(tmp_path, "bad", fail=True), \
        spec(tmp_path, "killed", steps=5, raise_at_step=2)
    grid = [good, bad, killed]
    report = launch(grid, "debug", log_dir=tmp_path / "logs", progress=False)
    assert report.finished == ["good"] and report.skipped == []
    assert [f[0] for f in report.failed] == ["bad", "killed"]
    for name, error, log in report.failed:
        assert log.is_file(), f"{name}: log {log} missing"
        assert str(log) in report.summary()
    assert "told to fail" in report.failed[0][1] and "told to fail" in report.failed[0][2].read_text()
    assert "simulated kill" in report.failed[1][1]
    assert read_json(good.run_dir / "result.json")["score"] == 0.0 + 1.0 + 4.0
    assert steps_logged(killed) == [0, 1] and run_status(killed) == "partial"
    assert "partial" in dry_run_table(grid).splitlines()[4]

    report = launch([good, killed], "debug", log_dir=tmp_path / "logs", progress=False)
    assert report.finished == ["killed"] and report.skipped == ["good"] and report.ok
    assert steps_logged(killed) == [0, 1, 2, 3, 4], "resumed run must continue from its checkpoint, not restart"
    assert len(calls(killed)) == 2 and len(calls(good)) == 1

    report = launch([good, killed], "debug", log_dir=tmp_path / "logs", progress=False)
    assert report.skipped == ["good", "killed"] and report.finished == []
    assert len(calls(killed)) == 2 and len(calls(good)) == 1, "a finished run must never be called again"


def test_local_executor_throttles_pins_gpus_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    grid = [spec(tmp_path, "a", steps=2, sleep_s=0.3), spec(tmp_path, "b", fail=True),
            spec(tmp_path, "c", steps=2, sleep_s=0.3)]
    report = launch(grid, "local", log_dir=tmp_path / "logs", max_parallel=2, progress=False)
    assert sorted(report.finished) == ["a", "c"]
    (name, error, log), = report.failed
    assert name == "b" and "ValueError: toy run b was told to fail" == error
    assert log.is_file() and "told to fail" in log.read_text()
    intervals = [(calls(s)[0]["t"], read_json(s.run_dir / "result.json")["t_end"]) for s in (grid[0], grid[2])]
    intervals.append((calls(grid[1])[0]["t"], calls(grid[1])[0]["t"]))
    for t, _ in intervals:
        assert sum(start <= t <= end for start, end in intervals) <= 2, "more than max_parallel jobs at once"
    assert {calls(s)[0]["cuda_visible_devices"] for s in grid} <= {"3", "5"}


def test_interrupted_local_launch_cancels_its_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while waiting must not leave local jobs running (they would race the next launch)."""
    import slurm.launcher as launcher

    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(launcher, "time", SimpleNamespace(sleep=interrupt))
    s = spec(tmp_path, "ctrlc", steps=2, sleep_s=0.5)
    with pytest.raises(KeyboardInterrupt):
        launch([s], "local", log_dir=tmp_path / "logs", progress=False)
    time.sleep(6.0)  # the run needs ~2 s; had it survived, it would have finished by now
    assert not (s.run_dir / "result.json").exists()


def test_timeout_signal_requeues_and_resumes(tmp_path: Path) -> None:
    """Real submitit requeue path: USR2 before the time limit -> RunJob.checkpoint -> same run resumes."""
    s = spec(tmp_path, "pre", steps=3, hang_at_step=1)
    executor = submitit.LocalExecutor(folder=tmp_path / "logs", max_num_timeout=2)
    executor.update_parameters(timeout_min=6 / 60, signal_delay_s=3, visible_gpus=(), gpus_per_node=0)
    job = executor.submit(RunJob(s))
    assert job.result()["score"] == 5.0
    assert len(calls(s)) == 2 and steps_logged(s) == [0, 1, 2]
    assert "Calling checkpoint method" in job.stdout() and "Requeued job" in job.stdout()


def test_checkpoint_returns_equivalent_delayed_submission(tmp_path: Path) -> None:
    job = RunJob(spec(tmp_path, "r", steps=2))
    delayed = job.checkpoint()
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert isinstance(delayed.function, RunJob) and delayed.function.spec == job.spec
    assert delayed.args == () and delayed.kwargs == {}
    assert delayed.result()["score"] == 1.0


def test_spec_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="filesystem-safe"):
        RunSpec(name="a/b", run_dir=tmp_path, entry=ENTRY, kwargs={})
    with pytest.raises(ValueError, match="package.module:function"):
        RunSpec(name="a", run_dir=tmp_path, entry="tests._toy_entry.toy_entry", kwargs={})
    with pytest.raises(ValueError, match="JSON-serialisable"):
        RunSpec(name="a", run_dir=tmp_path, entry=ENTRY, kwargs={"x": object()})
    with pytest.raises(ValueError, match="appears twice"):
        launch([spec(tmp_path, "a"), spec(tmp_path, "a")], "debug", log_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="share the run folder"):
        launch([spec(tmp_path, "a"), RunSpec("b", tmp_path / "runs" / "a", ENTRY, {})], "debug", log_dir=tmp_path,
               progress=False)
    with pytest.raises(ImportError, match="no function 'nope'"):
        launch([RunSpec("a", tmp_path / "a", "tests._toy_entry:nope", {})], "debug", log_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="valid choices"):
        launch([spec(tmp_path, "a")], "kubernetes", log_dir=tmp_path, progress=False)


def test_dry_run_table_totals(tmp_path: Path) -> None:
    grid = [spec(tmp_path, f"run{i}") for i in range(3)]
    (grid[0].run_dir).mkdir(parents=True)
    (grid[0].run_dir / "result.json").write_text("{}")
    table = dry_run_table(grid)
    assert table.splitlines()[0].split() == ["name", "group", "run_dir", "status", "gpu_hours"]
    assert table.splitlines()[-1] == ("total: 3 runs (1 done, 0 partial, 2 new); "
                                      "4.5 GPU-hours projected, 3.0 still to run")


def test_cluster_yaml(tmp_path: Path) -> None:
    example = load_cluster_config(REPO / "slurm" / "cluster.example.yaml")
    assert example.gpus_per_node == 1 and example.setup
    bad = tmp_path / "cluster.yaml"
    bad.write_text("partition: gpu\ngpus_per_nod: 2\n")
    with pytest.raises(ValueError, match=re.escape(str(bad)) + r".*gpus_per_nod"):
        load_cluster_config(bad)
    bad.write_text("mem_gb: lots\n")
    with pytest.raises(ValueError, match=re.escape(str(bad)) + r".*mem_gb"):
        load_cluster_config(bad)


FAKE_SBATCH = """
state = Path(os.environ["FAKE_SLURM_DIR"])
jid = str(time.time_ns() % 10**12)  # unique: submitit's watcher caches job states by id for the session
(state / f"{jid}.sh").write_text(Path(sys.argv[-1]).read_text())
print(f"Submitted batch job {jid}")
"""
FAKE_SACCT = """
# Runs pending jobs on first query (by then submitit has put their pickles in place), then reports.
state = Path(os.environ["FAKE_SLURM_DIR"])
acct = state / "acct.txt"
for script in sorted(state.glob("*.sh")):
    jid, text = script.stem, script.read_text()
    m = re.search(r"^#SBATCH --array=0-(\\d+)%\\d+$", text, re.M)
    for t in (range(int(m.group(1)) + 1) if m else [None]):
        env = dict(os.environ, SLURM_JOB_ID=jid, SLURM_NTASKS="1", SLURM_JOB_NUM_NODES="1", SLURM_NODEID="0",
                   SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_JOB_NODELIST="fake0")
        if t is not None:
            env.update(SLURM_ARRAY_JOB_ID=jid, SLURM_ARRAY_TASK_ID=str(t))
        with (state / f"{jid}_{t}.batch.out").open("a") as out:  # sbatch sends the script's own output to a file
            rc = subprocess.call(["bash", str(script)], env=env, stdout=out, stderr=subprocess.STDOUT)
        with acct.open("a") as f:
            f.write(f"{jid if t is None else f'{jid}_{t}'}|{'COMPLETED' if rc == 0 else 'FAILED'}|fake0\\n")
    script.rename(script.with_suffix(".done"))
print("JobID|State|NodeList")
print(acct.read_text() if acct.exists() else "", end="")
"""
FAKE_SRUN = """
args, out, err = sys.argv[1:], None, None
while args[0].startswith("--"):
    flag = args.pop(0)
    if flag in ("--output", "--error"):
        path = args.pop(0)
        for k, v in (("%A", "SLURM_ARRAY_JOB_ID"), ("%a", "SLURM_ARRAY_TASK_ID"), ("%j", "SLURM_JOB_ID")):
            path = path.replace(k, os.environ.get(v, ""))
        out, err = (path, err) if flag == "--output" else (out, path)
with open(out, "a") as o, open(err, "a") as e:
    sys.exit(subprocess.call(args, stdout=o, stderr=e))
"""


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """sbatch/sacct/srun stand-ins on PATH: jobs really run, through submitit's Slurm code path."""
    bin_dir, state = tmp_path / "fakebin", tmp_path / "fakeslurm"
    bin_dir.mkdir()
    state.mkdir()
    for name, body in (("sbatch", FAKE_SBATCH), ("sacct", FAKE_SACCT), ("srun", FAKE_SRUN)):
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\nimport os, re, subprocess, sys, time\nfrom pathlib import Path\n"
                        + textwrap.dedent(body))
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(state))
    return state


CLUSTER = ClusterConfig(partition="gpu-long", gpus_per_node=2, cpus_per_task=6, mem_gb=48, timeout_min=90,
                        array_parallelism=7, account="proj42", qos="high", constraint="a100",
                        additional_parameters={"mail-type": "FAIL"},
                        setup=["export TOY_SETUP_MARK=from-setup", "echo setup-done"])


def test_slurm_sbatch_script(tmp_path: Path, fake_slurm: Path) -> None:
    text = make_executor("slurm", tmp_path / "logs", CLUSTER, None)._make_submission_file_text("CMD", "uid")
    for line in ("#SBATCH --partition=gpu-long", "#SBATCH --gpus-per-node=2", "#SBATCH --cpus-per-task=6",
                 "#SBATCH --mem=48GB", "#SBATCH --time=90", "#SBATCH --account=proj42", "#SBATCH --qos=high",
                 "#SBATCH --constraint=a100", "#SBATCH --mail-type=FAIL", "export TOY_SETUP_MARK=from-setup"):
        assert line in text.splitlines(), f"{line!r} missing from sbatch script:\n{text}"
    assert text.index("echo setup-done") < text.index("CMD")


def test_slurm_array_end_to_end(tmp_path: Path, fake_slurm: Path) -> None:
    grid = [spec(tmp_path, "s0", steps=2), spec(tmp_path, "s1", fail=True), spec(tmp_path, "s2", steps=3)]
    report = launch(grid, "auto", log_dir=tmp_path / "logs", cluster=CLUSTER, max_parallel=2, progress=False)
    scripts = list(fake_slurm.glob("*.done"))
    assert len(scripts) == 1, "the grid must be submitted as ONE job array"
    assert "#SBATCH --array=0-2%2" in scripts[0].read_text().splitlines()
    assert sorted(report.finished) == ["s0", "s2"] and [f[0] for f in report.failed] == ["s1"]
    _, error, log = report.failed[0]
    assert "told to fail" in error and log.is_file() and "told to fail" in log.read_text()
    assert calls(grid[0])[0]["setup_mark"] == "from-setup"
    jobs = read_json(tmp_path / "logs" / "jobs.json")
    assert sorted(jobs) == ["s0", "s1", "s2"] and jobs["s1"].endswith("_1")

    report = launch(grid, "slurm", log_dir=tmp_path / "logs", cluster=CLUSTER, progress=False)
    assert report.skipped == ["s0", "s2"] and [f[0] for f in report.failed] == ["s1"]
    assert len(calls(grid[0])) == 1 and len(calls(grid[1])) == 2


def test_attach_to_active_slurm_job(tmp_path: Path, fake_slurm: Path) -> None:
    """A run still queued from an earlier launch is waited on, never submitted a second time."""
    grid = [spec(tmp_path, "q0"), spec(tmp_path, "q1")]
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "jobs.json").write_text('{"q0": "900001_0", "q1": "900001_1"}')
    (fake_slurm / "acct.txt").write_text("900001_0|RUNNING|n1\n900001_1|FAILED|n1\n")
    attached = attach_active_slurm_jobs(grid, tmp_path / "logs")
    assert list(attached) == ["q0"] and attached["q0"].job_id == "900001_0"
