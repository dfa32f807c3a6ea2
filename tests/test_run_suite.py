"""run_suite.py: dry run of the 130-run grid, usage errors, blocked later stages, and a tiny real grid end to end."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

import run_suite
from ablations.registry import SUITE_MODULES, Suite, SuiteOptions
from diamond.run.io import atomic_write_json, atomic_write_text, read_json
from evaluation.atari import GAMES
from reports.common import REPS_ENV
from slurm.launcher import RunSpec

TINY = ["training.epochs=1", "training.total_env_steps=200", "training.initial_collect_steps=150",
        "training.eval_episodes=1", "env.eval_max_episode_frames=1000"]


@pytest.fixture(autouse=True)
def _restore_pythonpath(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_suite.main puts the repository on PYTHONPATH for its job processes; undo it after each test."""
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))


def common_args(tmp: Path) -> list[str]:
    return ["--out", str(tmp / "runs"), "--report-dir", str(tmp / "reports")]


def test_dry_run_lists_the_130_runs_and_submits_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_suite.main(["--suite", "atari100k", "--dry-run", "--executor", "debug", *common_args(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if re.match(r"^[A-Za-z]+-s\d\s", line)]
    assert len(rows) == 130
    assert {r[0] for r in rows} == {f"{g}-s{s}" for g in GAMES for s in range(5)}
    assert all(r[-2] == "new" and r[-1] == "69.6" for r in rows)
    assert "all stages: 130 runs; 9048.0 GPU-hours projected, 9048.0 still to run" in out
    assert not (tmp_path / "runs").exists() and not (tmp_path / "reports").exists(), "a dry run writes nothing"


def test_projected_hours_follow_the_update_counts_set_on_the_command_line(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    """4x every update count (--set), the env steps unchanged: 4x the projected hours of each run."""
    updates = {"denoiser_steps": 400, "reward_end_steps": 400, "actor_critic_steps": 400,
               "first_epoch_denoiser_steps": 10_000, "first_epoch_reward_end_steps": 10_000,
               "first_epoch_actor_critic_steps": 5_000}  # the paper profile's
    sets = [a for k, v in updates.items() for a in ("--set", f"training.{k}={4 * v}")]
    assert run_suite.main(["--suite", "atari100k", "--dry-run", "--executor", "debug", "--games", "Pong",
                           "--seeds", "1", *sets, *common_args(tmp_path)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("Pong-s0 ")]
    assert [r[-1] for r in rows] == [f"{4 * 69.6:.1f}"]


@pytest.mark.parametrize("argv, message", [
    (["--suite", "nope"], "invalid choice: 'nope' (choose from 'atari100k', 'ablation_ddpm_vs_edm'"),
    (["--suite", "atari100k", "--profile", "huge"],
     "invalid choice: 'huge' (choose from 'paper', 'small', 'smoke'"),
    (["--suite", "atari100k", "--executor", "cloud"], "invalid choice: 'cloud'"),
])
def test_unknown_suite_profile_executor(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        run_suite.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


@pytest.mark.parametrize("extra, message", [
    (["--games", "Breakout", "Pongg"], "Unknown Atari 100k game 'Pongg'. Did you mean Pong, Boxing? Valid games: Alien,"),
    (["--seeds", "0"], "--seeds must be between 1 and 100 (seeds per game), got 0"),
    (["--set", "training.epochs"], "is not of the form section.field=value"),
    (["--set", "training.epochz=3"], "unknown config key 'training.epochz'"),
])
def test_bad_grid_options(tmp_path: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert run_suite.main(["--suite", "atari100k", "--dry-run", *extra, *common_args(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_registered_suite_without_module(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(SUITE_MODULES, "not_written_yet", "ablations._no_such_module")
    assert run_suite.main(["--suite", "not_written_yet", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "suite 'not_written_yet' is registered but its module ablations._no_such_module cannot be imported" in err


# ---------------------------------------------------------------- a toy two-stage suite (this module is its SUITE)

def toy_consumer(run_dir: Path, source: str) -> None:
    """Stage 2: reads the result of a stage-1 run, the way a real suite reads a dataset or a checkpoint."""
    score = read_json(Path(source) / "result.json")["score"]
    atomic_write_json(Path(run_dir) / "result.json", {"score": score + 1})


def _toy_stages(opts: SuiteOptions) -> list[list[RunSpec]]:
    root = opts.suite_dir("toy")
    first = [RunSpec("a", root / "a", "tests._toy_entry:toy_entry", {"steps": 2}),
             RunSpec("b", root / "b", "tests._toy_entry:toy_entry", {"fail": True})]
    second = [RunSpec(f"from_{s.name}", root / f"from_{s.name}", "tests.test_run_suite:toy_consumer",
                      {"source": str(s.run_dir)}) for s in first]
    return [first, second]


def _toy_report(opts: SuiteOptions) -> tuple[Path, Path]:
    out = opts.report_dir("toy")
    return atomic_write_text(out / "report.md", "toy\n"), atomic_write_text(out / "report.pdf", "toy\n")


SUITE = Suite(name="toy", description="two stages", paper_artefact="none", stages=_toy_stages, report=_toy_report)


def test_failed_input_blocks_its_later_run_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(SUITE_MODULES, "toy", "tests.test_run_suite")
    assert run_suite.main(["--suite", "toy", "--executor", "debug", *common_args(tmp_path)]) == 1
    out = capsys.readouterr().out
    root = tmp_path / "runs" / "toy" / "paper"
    assert read_json(root / "from_a" / "result.json") == {"score": 2.0}, "toy run a scores 0 + 1, plus 1"
    assert not (root / "from_b").exists(), "a run whose input failed must not start"
    blocked = [line for line in out.splitlines() if "BLOCKED" in line]
    assert len(blocked) == 1 and blocked[0].startswith("  BLOCKED from_b: its input run(s) did not finish: b (log: ")
    log = Path(blocked[0].split("(log: ")[1].rstrip(")"))
    assert log.is_file() and "told to fail" in log.read_text()
    assert "FAILED b: " in out and f"report written: {tmp_path / 'reports' / 'toy' / 'report.md'}" in out


# ---------------------------------------------------------------- the real trainer, a tiny grid, end to end

def test_tiny_real_grid_end_to_end_then_skips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    torch.set_num_threads(1)
    monkeypatch.setenv(REPS_ENV, "20")
    argv = ["--suite", "atari100k", "--profile", "smoke", "--games", "Breakout", "--seeds", "2", "--executor",
            "debug", *common_args(tmp_path), *[x for item in TINY for x in ("--set", item)]]
    assert run_suite.main(argv) == 0
    out = capsys.readouterr().out
    assert "2 finished, 0 skipped (already done), 0 failed" in out
    results = sorted((tmp_path / "runs" / "atari100k" / "smoke").glob("*/result.json"))
    assert [p.parent.name for p in results] == ["Breakout-s0", "Breakout-s1"]
    for path in results:
        result = read_json(path)
        assert result["game"] == "Breakout" and result["epochs"] == 1 and result["num_episodes"] == 1
    md, pdf = tmp_path / "reports" / "atari100k" / "report.md", tmp_path / "reports" / "atari100k" / "report.pdf"
    assert md.is_file() and pdf.read_bytes().startswith(b"%PDF")
    assert f"report written: {md} and {pdf}" in out
    assert "training.epochs" in (md.parent / "tables" / "overrides.csv").read_text()

    mtimes = [os.stat(p).st_mtime_ns for p in results]
    ckpts = [os.stat(p.parent / "checkpoints" / "last.pt").st_mtime_ns for p in results]
    assert run_suite.main(argv) == 0
    out = capsys.readouterr().out
    assert "0 finished, 2 skipped (already done), 0 failed" in out
    assert [os.stat(p).st_mtime_ns for p in results] == mtimes
    assert [os.stat(p.parent / "checkpoints" / "last.pt").st_mtime_ns for p in results] == ckpts, "no training"
