"""Every fault of issue 12's "Found" list ends in one line naming the cause (and the file or flag), no traceback."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

import diamond.train as train
import run_suite
from ablations.registry import SUITE_MODULES
from diamond.loop.data import ReplayBuffer
from diamond.run.cli import run_cli
from diamond.run.errors import KnownError
from diamond.run.io import CorruptFileError, atomic_write_json, read_json
from diamond.run.rundir import hold_lock
from tests.test_trainer import TINY

SMOKE = ["--game", "Breakout", "--seed", "1", "--profile", "smoke"]


@pytest.fixture(autouse=True)
def _restore_pythonpath(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    monkeypatch.delenv("DIAMOND_DEBUG", raising=False)


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------- diamond.train

def started_folder(tmp_path: Path) -> Path:
    """A run folder as a killed run leaves it: identity and config recorded, no checkpoint yet."""
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train.run(out, "Breakout", seed=1, profile="smoke", overrides=TINY,
                  epoch_hook=lambda e, t: (_ for _ in ()).throw(KeyboardInterrupt()))
    return out


def test_corrupt_config_yaml_in_the_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("env: [unclosed\n")
    assert train.main([*SMOKE, "--out", str(out), *TINY]) == 1
    assert one_line(capsys).startswith(f"python -m diamond.train: error: {out / 'config.yaml'}: not valid YAML")


def test_truncated_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = started_folder(tmp_path)
    ckpt = out / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    capsys.readouterr()
    assert train.main([*SMOKE, "--out", str(out), *TINY]) == 1
    err = one_line(capsys)
    assert f"{ckpt}: not a readable checkpoint (truncated or corrupt" in err and "move the run folder away" in err


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "episode_000000.npz").write_bytes(b"garbage"), "episode_000000.npz: not a readable episode file"),
    (lambda d: (d / "episode_000000.npz").unlink(), "episode_000000.npz: episode file listed in the replay index is "
                                                    "missing"),
    (lambda d: (d / "index.json").write_text('{"format": 99}'), "index.json: not a replay index of format"),
    (lambda d: (d / "index.json").unlink(), "index.json is missing"),
])
def test_damaged_replay_is_one_error_naming_the_file(tmp_path: Path, damage, message: str) -> None:
    buf = ReplayBuffer(tmp_path / "replay")
    buf.start_episode(np.zeros((3, 8, 8), np.uint8))
    buf.add_step(0, 0.0, True, False, np.zeros((3, 8, 8), np.uint8))
    buf.save()
    damage(tmp_path / "replay")
    with pytest.raises(CorruptFileError, match=message) as err:
        ReplayBuffer.load(tmp_path / "replay")
    assert "allow_pickle" not in str(err.value) and "move the run folder away" in str(err.value)


def test_out_is_a_file_or_under_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("x")
    assert train.main([*SMOKE, "--out", str(tmp_path / "f"), *TINY]) == 1
    assert "is a file, not a run folder; choose another --out" in one_line(capsys)
    assert train.main([*SMOKE, "--out", str(tmp_path / "f" / "run"), *TINY]) == 74  # the OS refused: README's 74
    assert "cannot be written (Not a directory); fix its permissions or choose another --out" in one_line(capsys)


def test_ctrl_c_says_how_to_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "run", interrupted)
    argv = [*SMOKE, "--out", str(tmp_path / "run")]
    assert train.main(argv) == 130
    assert one_line(capsys) == ("python -m diamond.train: interrupted; run the same command to resume: "
                                f"python -m diamond.train {' '.join(argv)}")


def test_full_disk_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(ckpt))

    monkeypatch.setattr(train, "run", full)
    assert train.main([*SMOKE, "--out", str(tmp_path / "run")]) == 74
    assert one_line(capsys) == (f"python -m diamond.train: error: cannot use {ckpt}: the disk is full: free space, "
                                "then run the same command to resume (--debug shows the traceback)")
    monkeypatch.setenv("DIAMOND_DEBUG", "1")  # the traceback too, and the same exit status
    assert train.main([*SMOKE, "--out", str(tmp_path / "run")]) == 74
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.delenv("DIAMOND_DEBUG")
    assert train.main([*SMOKE, "--out", str(tmp_path / "run"), "--debug"]) == 74
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("(--debug shows the traceback)")


@pytest.mark.parametrize("argv, message", [
    (["--game", "Breakot", "--out", "x"], "--game 'Breakot' is not an Atari game. Did you mean Breakout? The Atari "
                                          "100k games are Alien, "),
    (["--game", "Breakout", "--seed", "-1", "--out", "x"], "--seed must be an integer in [0, 1000000000], got -1"),
    (["--game", "Breakout", "--out", "x", "training.epochz=3"], "unknown config key 'training.epochz'"),
])
def test_usage_errors_name_the_flag(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert train.main(["--profile", "smoke", *argv]) == 2
    err = one_line(capsys)
    assert message in err and "Tetris" not in err, "only the 26 games are listed, not the ~100 ALE games"


def test_paper_profile_on_cpu_warns_with_the_projected_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(train.torch.cuda, "is_available", lambda: False)
    result = {"mean_return": 1.0, "num_episodes": 1, "env_steps": 1, "wall_time_s": 1.0}
    monkeypatch.setattr(train, "run", lambda *a, **k: result)
    assert train.main(["--game", "Breakout", "--profile", "paper", "--out", str(tmp_path / "p")]) == 0
    err = capsys.readouterr().err
    assert "warning: no GPU is in use; this paper-profile run would take about 1,0" in err and " days " in err
    assert train.main([*SMOKE, "--out", str(tmp_path / "s")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_run_cli_contract(capsys: pytest.CaptureFixture[str]) -> None:
    class Bad(KnownError):
        exit_code = 9

    def main(argv: list[str]) -> int:
        raise Bad(f"file {argv[0]} is bad")

    assert run_cli("prog", main, ["a.txt"]) == 9
    assert capsys.readouterr().err == "prog: error: file a.txt is bad\n"


# ---------------------------------------------------------------- run_suite.py (a toy suite: tests/test_run_suite.py)

def toy_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["--suite", "toy", "--executor", "debug", "--out", str(tmp_path / "runs"),
            "--report-dir", str(tmp_path / "reports"), *extra]


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SUITE_MODULES, "toy", "tests.test_run_suite")


def test_suite_corrupt_result_fails_that_run_only(tmp_path: Path, toy: None,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "runs" / "toy" / "paper"
    atomic_write_json(root / "b" / "result.json", {"score": 5.0})  # b done (the toy would fail it otherwise)
    (root / "a").mkdir(parents=True)
    (root / "a" / "result.json").write_text('{"score": 1')  # torn
    assert run_suite.main(toy_args(tmp_path, "--dry-run")) == 0
    assert f"CORRUPT a: {root / 'a' / 'result.json'}: not valid JSON" in capsys.readouterr().out
    assert run_suite.main(toy_args(tmp_path)) == 1
    out = capsys.readouterr().out
    assert (f"FAILED a: {root / 'a' / 'result.json'}: not valid JSON" in out
            and f"move the folder {root / 'a'} away to train this run again" in out)
    assert "BLOCKED from_a: its input run(s) did not finish: a (corrupt result.json)" in out
    assert read_json(root / "from_b" / "result.json") == {"score": 6.0}, "the other runs go on"
    assert "report written:" in out


def test_suite_locked_run_is_running_elsewhere(tmp_path: Path, toy: None, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "runs" / "toy" / "paper"
    with hold_lock(root / "b"):
        assert run_suite.main(toy_args(tmp_path)) == run_suite.EXIT_RUNNING_ELSEWHERE
    out = capsys.readouterr().out
    assert f"RUNNING ELSEWHERE b: its folder is held by pid {os.getpid()} on host" in out
    assert "FAILED" not in out and not (root / "b" / "calls.jsonl").exists(), "b was not started here"
    assert read_json(root / "from_a" / "result.json") == {"score": 2.0}


def test_suite_interrupted_says_how_to_resume(tmp_path: Path, toy: None, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_suite, "run_stages", interrupted)
    argv = toy_args(tmp_path)
    assert run_suite.main(argv) == 130
    assert one_line(capsys) == ("run_suite.py: interrupted; run the same command to resume: "
                                f"run_suite.py {' '.join(argv)}")


@pytest.mark.parametrize("bad, message", [
    ("report-dir-under-file",
     "--report-dir {f}/reports is not writable (Not a directory); choose another --report-dir"),
    ("out-is-file", "--out {f} is a file, not a folder; choose another --out"),
    ("slurm", "--executor slurm: Slurm is not installed here (no sbatch on PATH)"),
])
def test_suite_bad_paths_and_executor_fail_before_any_run(tmp_path: Path, toy: None, bad: str, message: str,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(run_suite.shutil, "which", lambda name: None)
    f = tmp_path / "f"
    f.write_text("x")
    argv = {"report-dir-under-file": toy_args(tmp_path) + ["--report-dir", str(f / "reports")],
            "out-is-file": toy_args(tmp_path) + ["--out", str(f)],
            "slurm": toy_args(tmp_path) + ["--executor", "slurm"]}[bad]
    assert run_suite.main(argv) == (74 if bad == "report-dir-under-file" else 2)  # the OS refused: 74
    assert message.format(f=f) in one_line(capsys)
    assert not (tmp_path / "runs").exists(), "nothing ran"


def test_report_only_names_runs_at_another_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "runs" / "atari100k" / "smoke" / "Breakout-s0").mkdir(parents=True)
    (tmp_path / "runs" / "atari100k" / "smoke" / "Breakout-s0" / "result.json").write_text(json.dumps({"x": 1}))
    argv = ["--suite", "atari100k", "--profile", "small", "--games", "Breakout", "--seeds", "1", "--report-only",
            "--out", str(tmp_path / "runs"), "--report-dir", str(tmp_path / "reports")]
    assert run_suite.main(argv) == 1
    err = one_line(capsys)
    assert "no finished run" in err and "runs of this suite exist at profile smoke" in err
    assert err.endswith("add --profile smoke")
