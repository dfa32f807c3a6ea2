"""Launcher: skip done runs, resume partial ones, report failures with logs, Slurm arrays, requeue, re-attach,
lost jobs, sbatch refusals and per-run progress (fake sbatch/squeue/sacct; tests/slurm/ has the real Slurm)."""

from __future__ import annotations

import io
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import submitit

from diamond.run.errors import KnownError, RunLockedError
from diamond.run.io import read_json, read_jsonl
from slurm.executors import resolve_kind
from slurm.launcher import (
    ClusterConfig,
    RunJob,
    RunSpec,
    attach_active_slurm_jobs,
    dry_run_table,
    launch,
    load_cluster_config,
    make_executor,
    run_status,
)
from slurm.progress import SuiteProgress, describe
from slurm.queue import SubmissionRejectedError
from tests._fakes import fake_slurm_commands

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


def test_sigterm_to_the_launching_cli_cancels_its_local_jobs(tmp_path: Path) -> None:
    """`kill <pid>` of a suite: one 'interrupted' line, exit 130, and no local job left writing (they ignore
    SIGTERM themselves, as submitit jobs do)."""
    s = spec(tmp_path, "term", steps=4, sleep_s=1.0)
    script = ("from pathlib import Path\nfrom diamond.run.cli import run_cli\n"
              "from slurm.launcher import launch, RunSpec\n"
              f"spec = RunSpec(name='term', run_dir=Path({str(s.run_dir)!r}), entry={ENTRY!r}, "
              f"kwargs={{'steps': 4, 'sleep_s': 1.0}})\n"
              f"raise SystemExit(run_cli('suite', lambda a: launch([spec], 'local', log_dir=Path("
              f"{str(tmp_path / 'logs')!r}), progress=False).ok and 0))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.time() + 60
    while not (s.run_dir / "calls.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert (s.run_dir / "calls.jsonl").exists(), "the local job never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "suite: interrupted; run the same command to resume" in err
    time.sleep(6.0)  # the run needs ~4 s; had it survived, it would have finished by now
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
    assert example.gpus_per_node is None and example.setup and example.poll_s == 15  # the profile decides
    assert example.source == REPO / "slurm" / "cluster.example.yaml"
    bad = tmp_path / "cluster.yaml"
    bad.write_text("partition: gpu\ngpus_per_nod: 2\n")
    with pytest.raises(ValueError, match=re.escape(str(bad)) + r".*gpus_per_nod"):
        load_cluster_config(bad)
    bad.write_text("mem_gb: lots\n")
    with pytest.raises(ValueError, match=re.escape(str(bad)) + r".*mem_gb"):
        load_cluster_config(bad)
    bad.write_text("poll_s: 0\n")
    with pytest.raises(ValueError, match=re.escape(str(bad)) + r".*poll_s must be a number of seconds > 0"):
        load_cluster_config(bad)
    bad.write_text("source: elsewhere.yaml\n")  # where the settings came from is not itself a setting
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['source'\]"):
        load_cluster_config(bad)


FAKE_SBATCH = """
state = Path(os.environ["FAKE_SLURM_DIR"])
if os.environ.get("FAKE_SBATCH_REJECT"):
    sys.exit("sbatch: error: Memory specification can not be satisfied\\n"
             "sbatch: error: Batch job submission failed: Requested node configuration is not available")
jid = str(time.time_ns() % 10**12)  # unique: submitit's watcher caches job states by id for the session
(state / f"{jid}.sh").write_text(Path(sys.argv[-1]).read_text())
print(f"Submitted batch job {jid}")
"""
# squeue and sacct both "schedule": they run every pending script (by then submitit has put its pickles in
# place) and record each task's final state in states.txt, then answer from it like the real commands.
FAKE_SCHEDULER = """
state = Path(os.environ["FAKE_SLURM_DIR"])
for script in sorted(state.glob("*.sh")):
    jid, text = script.stem, script.read_text()
    m = re.search(r"^#SBATCH --array=0-(\\d+)%\\d+$", text, re.M)
    for t in (range(int(m.group(1)) + 1) if m else [None]):
        task = jid if t is None else f"{jid}_{t}"
        if os.environ.get("FAKE_SLURM_CANCEL"):
            rc = "CANCELLED"
        else:
            env = dict(os.environ, SLURM_JOB_ID=jid, SLURM_NTASKS="1", SLURM_JOB_NUM_NODES="1", SLURM_NODEID="0",
                       SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_JOB_NODELIST="fake0")
            if t is not None:
                env.update(SLURM_ARRAY_JOB_ID=jid, SLURM_ARRAY_TASK_ID=str(t))
            with (state / f"{task}.batch.out").open("a") as out:  # sbatch sends the script's output to a file
                rc = subprocess.call(["bash", str(script)], env=env, stdout=out, stderr=subprocess.STDOUT)
        with (state / "states.txt").open("a") as f:
            f.write(f"{task}|{rc if isinstance(rc, str) else 'COMPLETED' if rc == 0 else 'FAILED'}\\n")
    script.rename(script.with_suffix(".done"))
lines = (state / "states.txt").read_text().splitlines() if (state / "states.txt").exists() else []
known = dict(line.split("|") for line in lines)
asked = [j for a in sys.argv if a.startswith("--jobs=") for j in a.split("=", 1)[1].split(",")]
"""
FAKE_SQUEUE = """
if os.environ.get("FAKE_SQUEUE_DOWN"):
    sys.exit("squeue: error: Unable to contact slurm controller (connect failure)")
purged = (state / "purged.txt").read_text().split() if (state / "purged.txt").exists() else []
hits = [f"{i}|{s}" for i, s in known.items() if i.split("_")[0] in asked and i not in purged]
if not hits:
    sys.exit("slurm_load_jobs error: Invalid job id specified")
print("\\n".join(hits))
"""
FAKE_SACCT = """
if os.environ.get("FAKE_NO_ACCOUNTING"):
    sys.exit("Slurm accounting storage is disabled")
print("\\n".join(f"{i}|{s}" for i, s in known.items() if i in asked or i.split("_")[0] in asked))
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
    """sbatch/squeue/sacct/srun stand-ins on PATH: jobs really run, through submitit's Slurm code path."""
    bin_dir, state = tmp_path / "fakebin", tmp_path / "fakeslurm"
    bin_dir.mkdir()
    state.mkdir()
    for name, body in (("sbatch", FAKE_SBATCH), ("squeue", FAKE_SCHEDULER + FAKE_SQUEUE),
                       ("sacct", FAKE_SCHEDULER + FAKE_SACCT), ("srun", FAKE_SRUN),
                       ("sinfo", "sys.exit(0)\n")):
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
                        setup=["export TOY_SETUP_MARK=from-setup", "echo setup-done"], poll_s=0.2)


def test_slurm_sbatch_script(tmp_path: Path, fake_slurm: Path) -> None:
    text = make_executor("slurm", tmp_path / "logs", CLUSTER, None)._make_submission_file_text("CMD", "uid")
    for line in ("#SBATCH --partition=gpu-long", "#SBATCH --gpus-per-node=2", "#SBATCH --cpus-per-task=6",
                 "#SBATCH --mem=48GB", "#SBATCH --time=90", "#SBATCH --account=proj42", "#SBATCH --qos=high",
                 "#SBATCH --constraint=a100", "#SBATCH --mail-type=FAIL", "export TOY_SETUP_MARK=from-setup"):
        assert line in text.splitlines(), f"{line!r} missing from sbatch script:\n{text}"
    assert text.index("echo setup-done") < text.index("CMD")


@pytest.mark.parametrize("accounting", [True, False])
def test_slurm_array_end_to_end(tmp_path: Path, fake_slurm: Path, monkeypatch: pytest.MonkeyPatch,
                                accounting: bool) -> None:
    if not accounting:
        monkeypatch.setenv("FAKE_NO_ACCOUNTING", "1")
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


def _jobs_file(tmp_path: Path, fake_slurm: Path, states: str) -> list[RunSpec]:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "jobs.json").write_text('{"q0": "900001_0", "q1": "900001_1", "q2": "900001_2"}')
    (fake_slurm / "states.txt").write_text(states)
    return [spec(tmp_path, "q0"), spec(tmp_path, "q1"), spec(tmp_path, "q2")]


@pytest.mark.parametrize("squeue_down,accounting", [(False, False), (False, True), (True, True)])
def test_attach_to_active_slurm_job(tmp_path: Path, fake_slurm: Path, monkeypatch: pytest.MonkeyPatch,
                                    squeue_down: bool, accounting: bool) -> None:
    """A run still queued from an earlier launch is waited on, never submitted a second time: squeue decides,
    with or without accounting; sacct answers when squeue cannot; a job neither lists has ended."""
    grid = _jobs_file(tmp_path, fake_slurm, "900001_0|RUNNING\n900001_1|FAILED\n900001_2|PENDING\n")
    (fake_slurm / "purged.txt").write_text("900001_1\n")  # ended long ago: the controller forgot it
    if squeue_down:
        monkeypatch.setenv("FAKE_SQUEUE_DOWN", "1")
    if not accounting:
        monkeypatch.setenv("FAKE_NO_ACCOUNTING", "1")
    attached = attach_active_slurm_jobs(grid, tmp_path / "logs")
    assert sorted(attached) == ["q0", "q2"] and attached["q0"].job_id == "900001_0"


def test_relaunch_waits_for_running_jobs_without_accounting(tmp_path: Path, fake_slurm: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect: without sacct, a relaunch after the launching shell died submitted the grid a second time."""
    monkeypatch.setenv("FAKE_NO_ACCOUNTING", "1")
    grid = _jobs_file(tmp_path, fake_slurm, "900001_0|RUNNING\n900001_1|RUNNING\n900001_2|RUNNING\n")
    for s in grid:  # the old jobs finish while we wait on them
        (tmp_path / "logs" / f"900001_{s.name[1]}_0_result.pkl").write_bytes(pickle.dumps(("success", {"score": 1.0})))
    report = launch(grid, "slurm", log_dir=tmp_path / "logs", cluster=CLUSTER, progress=False)
    assert not list(fake_slurm.glob("*.sh")) and not list(fake_slurm.glob("*.done")), "submitted a second time"
    assert sorted(report.finished) == ["q0", "q1", "q2"]


def test_slurm_unreachable_refuses_to_submit(tmp_path: Path, fake_slurm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SQUEUE_DOWN", "1")
    monkeypatch.setenv("FAKE_NO_ACCOUNTING", "1")
    grid = _jobs_file(tmp_path, fake_slurm, "900001_0|RUNNING\n")
    with pytest.raises(KnownError, match="cannot ask Slurm about jobs 900001_0, 900001_1, 900001_2: squeue said"):
        launch(grid, "slurm", log_dir=tmp_path / "logs", cluster=CLUSTER, progress=False)
    assert not list(fake_slurm.glob("*.sh")), "submitted although the old jobs may still run"


@pytest.mark.parametrize("accounting", [True, False])
def test_cancelled_job_is_reported_failed(tmp_path: Path, fake_slurm: Path, monkeypatch: pytest.MonkeyPatch,
                                          accounting: bool) -> None:
    """Defect: without sacct, submitit waited forever on a job that left the queue without a result."""
    import slurm.launcher as launcher

    monkeypatch.setattr(launcher, "_LOST_GRACE_MIN_S", 0.0)
    monkeypatch.setenv("FAKE_SLURM_CANCEL", "1")
    if not accounting:
        monkeypatch.setenv("FAKE_NO_ACCOUNTING", "1")
    start = time.monotonic()
    report = launch([spec(tmp_path, "c0"), spec(tmp_path, "c1")], "slurm", log_dir=tmp_path / "logs",
                    cluster=CLUSTER, progress=False)
    assert time.monotonic() - start < 30
    assert [f[0] for f in report.failed] == ["c0", "c1"]
    name, error, log = report.failed[0]
    assert re.fullmatch(r"Slurm job \d+_0 ended without a result \(state: CANCELLED\)", error)
    assert log.is_file() and error in log.read_text() and str(log) in report.summary()


def test_sbatch_rejection_is_one_sentence(tmp_path: Path, fake_slurm: Path, monkeypatch: pytest.MonkeyPatch,
                                          capfd: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("FAKE_SBATCH_REJECT", "1")
    path = tmp_path / "cluster.yaml"
    path.write_text("gpus_per_node: 0\nmem_gb: 64\n")
    with pytest.raises(SubmissionRejectedError) as info:
        launch([spec(tmp_path, "r0")], "slurm", log_dir=tmp_path / "logs", cluster=load_cluster_config(path),
               progress=False)
    assert isinstance(info.value, KnownError) and "\n" not in str(info.value)
    assert str(info.value) == (f"sbatch refused the jobs of {path} (its setting mem_gb: 64 was refused); "
                               "sbatch said: Memory specification can not be satisfied; Batch job submission "
                               "failed: Requested node configuration is not available")
    assert "sbatch: error" not in capfd.readouterr().err, "sbatch's raw lines must not be echoed as well"


def locked_entry(run_dir: Path) -> None:
    """A run whose folder another live process holds."""
    raise RunLockedError(f"{run_dir} is locked by process 4242 on another-host")


def test_locked_run_folder_is_running_elsewhere_not_failed(tmp_path: Path) -> None:
    s = RunSpec(name="busy", run_dir=tmp_path / "busy", entry="tests.test_launcher:locked_entry", kwargs={})
    report = launch([s, spec(tmp_path, "fine", steps=1)], "debug", log_dir=tmp_path / "logs", progress=False)
    assert report.failed == [] and report.finished == ["fine"] and report.ok
    assert report.elsewhere == [("busy", f"RunLockedError: {s.run_dir} is locked by process 4242 on another-host")]
    assert "1 running elsewhere" in report.summary() and "RUNNING ELSEWHERE busy" in report.summary()


def test_progress_lines_show_each_running_run(tmp_path: Path) -> None:
    """Per-run progress while waiting: metrics.jsonl counters and the job log's last progress bar, as plain
    time-stamped lines when the output is not a terminal."""
    run_dir, log = tmp_path / "run", tmp_path / "job.err"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"epoch": 2, "env_steps": 800, "loss": 0.5}\n{"epoch": 3, "env_st')
    log.write_text("noise\rdenoiser:  10%|#         | 10/100 [00:01<00:09]\r"
                   "\x1b[Aepoch 3 rollouts:  34%|###4      | 34/100 [00:05<00:10,  6.6it/s]\x1b[A")
    assert describe(run_dir, log, "RUNNING") == "epoch 2, env_steps 800, epoch 3 rollouts 34/100"
    assert describe(run_dir, log, "PENDING") == "pending"
    assert describe(tmp_path / "new", None) == "started, no progress written yet"
    out = io.StringIO()
    progress = SuiteProgress(total=2, desc="runs (slurm)", every_s=0.0, stream=out)
    progress.running([("Breakout-s0", run_dir, log, "RUNNING"), ("Pong-s0", tmp_path / "new", None, "PENDING")])
    progress.running([("Breakout-s0", run_dir, log, "RUNNING")])  # nothing moved: nothing printed
    progress.finished("Pong-s0", "FAILED")
    progress.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and all(re.match(r"\[\d\d:\d\d:\d\d\] ", ln) for ln in lines), lines
    assert lines[0].endswith("  Breakout-s0: epoch 2, env_steps 800, epoch 3 rollouts 34/100")
    assert lines[1].endswith("  Pong-s0: pending")
    assert lines[2].endswith("runs (slurm): 1/2 ended (1 failed); Pong-s0 FAILED")


def test_local_launch_prints_progress_of_running_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    s = spec(tmp_path, "slow", steps=4, sleep_s=0.6)
    report = launch([s], "local", log_dir=tmp_path / "logs", progress=True, progress_every_s=0.5)
    assert report.finished == ["slow"]
    err = capsys.readouterr().err
    assert re.search(r"\]\s+slow: step [0-9]", err), err


def test_auto_is_local_when_slurm_is_installed_but_no_controller_answers(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Slurm's packages on a machine outside any cluster: sbatch exists, sinfo fails, so `auto` runs locally."""
    bin_dir = fake_slurm_commands(tmp_path, monkeypatch, sinfo_rc=1)
    assert resolve_kind("auto") == "local"
    (bin_dir / "sinfo").write_text("#!/bin/sh\nexit 0\n")
    assert resolve_kind("auto") == "slurm"
