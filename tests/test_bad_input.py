"""Bad input, second round (issue 19): one test per kind of failure the probes found. Each bad input ends in one
sentence and the exit status of the README's table, or in the right behaviour; nothing hangs, no traceback.
(Config fields: tests/test_config.py; evaluate's run folders: tests/test_evaluate.py; signals to a running
suite: tests/test_bad_input_signals.py.)"""

from __future__ import annotations

import importlib
import json
import os
import re
import time
from pathlib import Path

import pytest

import diamond.evaluate as evaluate
import diamond.train as train
import run_suite
from ablations.registry import SUITE_MODULES, SuiteOptions
from diamond.loop.config import build_config
from diamond.run.cli import EXIT_INTERRUPTED, EXIT_OS_ERROR, EXIT_STATUSES, exit_status_table, run_cli
from diamond.run.errors import KnownError, UsageError
from diamond.run.io import CorruptFileError, atomic_write_json
from slurm.executors import ClusterConfig, slurm_parameters
from slurm.queue import rejection_error
from tests._fakes import fake_slurm_commands

REPO = Path(__file__).resolve().parent.parent
CLI_MODULES = ("diamond.train", "diamond.evaluate", "diamond.bench", "run_suite", "slurm.launcher", "slurm.queue",
               "diamond.models.official", "diamond.loop.data", "diamond.run.io", "diamond.models.registry",
               "diamond.play")


from tests.test_cli_errors import _restore_pythonpath, one_line  # noqa: E402,F401 (an autouse fixture, shared)

# ---------------------------------------------------------------- docs that disagree with the code

def test_readme_exit_table_is_the_codes_table() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- exit-statuses:[^>]*-->\n(.*?)\n<!-- /exit-statuses -->", readme, re.S)
    assert block, "README.md lost its exit-status table"
    assert block.group(1) == exit_status_table(), "README's table differs: paste diamond.run.cli.exit_status_table()"


def _subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


def test_every_error_class_exits_with_a_documented_status() -> None:
    for name in CLI_MODULES:
        importlib.import_module(name)
    errors = _subclasses(KnownError)
    assert len(errors) >= 8, [e.__name__ for e in errors]
    undocumented = [f"{e.__module__}.{e.__name__} ({e.exit_code})" for e in errors if e.exit_code not in EXIT_STATUSES]
    assert not undocumented, f"exit statuses missing from the README's table: {undocumented}"
    assert {EXIT_OS_ERROR, EXIT_INTERRUPTED, run_suite.EXIT_RUNNING_ELSEWHERE} <= set(EXIT_STATUSES)
    # a bad file is a known error (1), not a usage error (2)
    from diamond.models.official import OfficialCheckpointError

    assert evaluate.CheckpointError.exit_code == OfficialCheckpointError.exit_code == CorruptFileError.exit_code == 1


def test_debug_shows_the_traceback_and_keeps_the_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    def bad_flag(argv: list[str]) -> int:
        raise UsageError("--flag is bad")

    assert run_cli("prog", bad_flag, ["--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("prog: error: --flag is bad\n")


@pytest.mark.parametrize("module", ["diamond.train", "diamond.evaluate", "diamond.bench", "run_suite"])
def test_help_texts_are_whole_and_name_debug_and_every_profile(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--debug" in text and "exit status" in text.lower()
    if module != "diamond.bench":
        assert all(f"{p} =" in text for p in ("paper", "small", "smoke", "cpu")), text
    if module == "diamond.bench":
        description = text.split("positional arguments:")[0].split("[overrides ...]")[-1].strip()
        assert description.endswith("on CPU or GPU."), f"description stops mid-sentence: {description!r}"


# ---------------------------------------------------------------- tracebacks become one sentence

CUDA_ON_CPU = "perf.device=cuda asks for a GPU, but PyTorch sees none here"


@pytest.mark.parametrize("extra, message", [
    (["training.batch_size=-3"], r"'training.batch_size' must be an integer in [1, 65536], got -3"),
    (["denoiser.channels=abc"], "'denoiser.channels' must be a list of 1 to 8 items"),
    (["--seed", str(2**70)], f"--seed must be an integer in [0, 1000000000], got {2**70}"),
    (["perf.device=cuda"], CUDA_ON_CPU),
])
def test_train_bad_values_are_usage_errors(tmp_path: Path, extra: list[str], message: str,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(train.torch.cuda, "is_available", lambda: False)
    assert train.main(["--game", "Breakout", "--profile", "smoke", "--out", str(tmp_path / "r"), *extra]) == 2
    assert message in one_line(capsys)
    assert not (tmp_path / "r").exists(), "nothing was written"


@pytest.mark.parametrize("extra, message", [
    (["--game", "Breakot"], "--game 'Breakot' is not an Atari game. Did you mean Breakout?"),
    (["--game", "Breakout", "--seed", "-1"], "--seed must be an integer in [0, 1000000000], got -1"),
    (["--game", "Breakout", "--seed", str(2**70)], "--seed must be an integer in [0, 1000000000]"),
    (["--game", "Breakout", "--set", "perf.device=cuda"], CUDA_ON_CPU),
    (["--game", "Breakout", "--episodes", str(10**9)], "--episodes must be an integer in [1, 100000]"),
    (["--game", "Breakout", "--set", "diffusion.edm.quantize=maybe"], "must be true or false, got 'maybe'"),
])
def test_evaluate_bad_values_are_usage_errors(tmp_path: Path, extra: list[str], message: str,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(train.torch.cuda, "is_available", lambda: False)
    argv = ["--checkpoint", str(tmp_path / "last.pt"), "--profile", "smoke", "--out", str(tmp_path / "e"), *extra]
    assert evaluate.main(argv) == 2
    assert message in one_line(capsys)
    assert not (tmp_path / "e").exists()


def test_bad_checkpoint_file_is_a_bad_file_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "last.pt").write_bytes(b"\x00\xffnot a checkpoint")
    assert evaluate.main(["--checkpoint", str(tmp_path / "last.pt"), "--game", "Breakout", "--profile", "smoke",
                          "--out", str(tmp_path / "e")]) == 1
    assert "not a PyTorch checkpoint" in one_line(capsys)
    assert not (tmp_path / "e").exists(), "a bad checkpoint is refused before --out is claimed"


def test_finished_run_with_a_garbage_result_is_one_error_not_nothing_to_do(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "result.json").write_bytes(b"\x89PNG\r\n\x1a\x00garbage")
    assert train.main(["--game", "Breakout", "--profile", "smoke", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "nothing to do" not in captured.out
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and f"{out / 'result.json'}: not valid JSON" in err and "move the" in err


# ---------------------------------------------------------------- run_suite.py: bounded flags, config errors up front

def suite_argv(tmp_path: Path, *extra: str) -> list[str]:
    return ["--suite", "atari100k", "--profile", "smoke", "--games", "Breakout", "--out", str(tmp_path / "runs"),
            "--report-dir", str(tmp_path / "reports"), *extra]


@pytest.mark.parametrize("extra, message", [
    (["--seeds", str(10**12), "--dry-run"], f"--seeds must be between 1 and 100 (seeds per game), got {10**12}"),
    (["--seeds", "1", "--set", "training.batch_size=-3", "--executor", "debug"],
     "'training.batch_size' must be an integer in [1, 65536], got -3"),
    (["--seeds", "1", "--set", "training.gamma=2", "--executor", "debug"], "'training.gamma' must be a number in"),
])
def test_suite_flags_are_bounded_and_checked_before_any_run(tmp_path: Path, extra: list[str], message: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    start = time.monotonic()
    assert run_suite.main(suite_argv(tmp_path, *extra)) == 2
    assert time.monotonic() - start < 10, "answered at once"
    assert message in one_line(capsys)
    assert not (tmp_path / "runs").exists(), "no run was started"


# ---------------------------------------------------------------- misleading messages

@pytest.mark.parametrize("profile, file_gpus, expected", [
    ("smoke", None, 0), ("cpu", None, 0), ("paper", None, 1), ("small", None, 1), ("smoke", 2, 2),
])
def test_slurm_gpu_request_follows_the_profile_unless_the_cluster_file_sets_it(
        tmp_path: Path, profile: str, file_gpus: int | None, expected: int) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text("mem_gb: 4\n" + (f"gpus_per_node: {file_gpus}\n" if file_gpus is not None else ""))
    opts = SuiteOptions(profile=profile, out=tmp_path, report_root=tmp_path)
    cluster = run_suite.cluster_config(path, opts)
    assert cluster.gpus_per_node == expected
    assert slurm_parameters(cluster, None, "x").get("gpus_per_node", 0) == expected


def test_unreachable_controller_is_named_not_a_setting() -> None:
    err = rejection_error("sbatch: error: Batch job submission failed: Unable to contact slurm controller "
                          "(connect failure)", {"gpus_per_node": 1}, None)
    assert "the Slurm controller does not answer" in str(err) and "gpus_per_node" not in str(err)


def test_explicit_slurm_with_a_silent_controller_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = fake_slurm_commands(tmp_path, monkeypatch, sinfo_rc=1)
    with pytest.raises(KnownError, match="the Slurm controller does not answer `sinfo`") as err:
        run_suite.check_executor("slurm")
    assert err.value.exit_code == 1


def test_finished_run_of_another_game_is_refused_naming_the_game(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from diamond.loop.config import config_hash

    folder = tmp_path / "runs" / "atari100k" / "smoke" / "Breakout-s0"
    pong = build_config("smoke", seed=0, **{"env.game": "Pong"})
    atomic_write_json(folder / "result.json", {"game": "Pong", "seed": 0, "profile": "smoke",
                                               "config_hash": config_hash(pong), "score": 1.0})
    assert run_suite.main(suite_argv(tmp_path, "--seeds", "1", "--dry-run")) == 1
    err = one_line(capsys)
    assert "game 'Pong' on disk vs 'Breakout' requested" in err and "--set" not in err


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SUITE_MODULES, "toy", "tests.test_run_suite")


@pytest.mark.parametrize("content", ["{}", "[]", '{"score": 1'])
def test_a_corrupt_result_is_counted_failed_in_the_summary(tmp_path: Path, toy: None, content: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "runs" / "toy" / "paper"
    atomic_write_json(root / "b" / "result.json", {"score": 5.0})
    (root / "a").mkdir(parents=True)
    (root / "a" / "result.json").write_text(content)
    argv = ["--suite", "toy", "--executor", "debug", "--out", str(tmp_path / "runs"),
            "--report-dir", str(tmp_path / "reports")]
    assert run_suite.main(argv) == 1
    captured = capsys.readouterr()
    summary = [line for line in captured.out.splitlines() if "finished," in line]
    assert summary[0] == "0 finished, 1 skipped (already done), 1 failed", captured.out
    assert f"FAILED a: {root / 'a' / 'result.json'}" in captured.out and "Traceback" not in captured.err
    assert "non-finite" not in captured.out + captured.err


def test_an_empty_result_is_not_read_as_a_finished_run(tmp_path: Path) -> None:
    from reports.common import collect_results
    from slurm.launcher import RunSpec

    atomic_write_json(tmp_path / "a" / "result.json", {})
    table, missing = collect_results([RunSpec("a", tmp_path / "a", "diamond.train:run", {})])
    assert table.empty and [s.name for s in missing] == ["a"]


def test_cluster_file_keys_and_example_still_load(tmp_path: Path) -> None:
    """The real-Slurm stage's contract: an explicit gpus_per_node (0 there) is kept as written."""
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"gpus_per_node": 0, "cpus_per_task": 1}))
    opts = SuiteOptions(profile="paper", out=tmp_path, report_root=tmp_path)
    assert run_suite.cluster_config(path, opts).gpus_per_node == 0
    assert ClusterConfig().gpus_per_node is None


def test_a_checkpoint_that_is_not_a_mapping_is_a_corrupt_file(tmp_path: Path) -> None:
    import torch

    from diamond.run.checkpoint import load_checkpoint

    torch.save([1, 2, 3], tmp_path / "last.pt")
    with pytest.raises(CorruptFileError, match=r"last.pt: holds a list, not a checkpoint; move the run folder away"):
        load_checkpoint(tmp_path / "last.pt", "abc", torch.device("cpu"))
