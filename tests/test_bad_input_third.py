"""Bad input, third round (issue 31): each bad input ends in one sentence and the exit status of the README's
table before any work starts, or in the right behaviour. (The play page and diamond.play: tests/test_play.py.)"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import diamond.evaluate as evaluate
import diamond.train as train
import run_suite
from diamond.run.cli import EXIT_OS_ERROR
from diamond.run.io import atomic_write_json
from tests.test_cli_errors import _restore_pythonpath, one_line  # noqa: F401 (an autouse fixture, shared)
from tests.test_evaluate import TINY, released_checkpoint

SHELL_TAG = '!!python/object/apply:os.system ["touch PWNED"]'


def suite_argv(tmp_path: Path, *extra: str, suite: str = "atari100k") -> list[str]:
    return ["--suite", suite, "--profile", "smoke", "--seeds", "1", "--out", str(tmp_path / "runs"),
            "--report-dir", str(tmp_path / "reports"), *extra]


# ---------------------------------------------------------------- override values that are not YAML values

@pytest.mark.parametrize("value, message", [
    ("[0.9", "override 'training.gamma=[0.9': its value is not valid YAML"),
    (SHELL_TAG, "override 'training.gamma=!!python/object/apply:os.system"),
])
def test_a_bad_override_value_is_a_usage_error_of_train(value: str, message: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert train.main(["--game", "Breakout", "--profile", "smoke", "--out", str(out), f"training.gamma={value}"]) == 2
    err = one_line(capsys)
    assert err.startswith("python -m diamond.train: error: ") and message in err, err
    assert not out.exists() and not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("value", ["[0.9", SHELL_TAG])
@pytest.mark.parametrize("mode", ["--dry-run", "--report-only"])
def test_a_bad_override_value_is_a_usage_error_of_run_suite(value: str, mode: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_suite.main(suite_argv(tmp_path, "--games", "Breakout", "--set", f"training.gamma={value}", mode)) == 2
    assert "its value is not valid YAML" in one_line(capsys)
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- diamond.bench: flags before the benchmark

def bench_main(argv: list[str]) -> int:
    from diamond import bench

    return bench.main(["--profile", "smoke", *argv])


@pytest.fixture
def no_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    """A benchmark that would start fails the test: every refusal below comes before it."""
    from diamond import bench

    def started(*args: object) -> None:
        raise AssertionError("the benchmark ran before the flags were checked")

    monkeypatch.setattr(bench, "run_benchmark", started)


def test_bench_refuses_a_batch_size_of_zero(tmp_path: Path, no_benchmark: None,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["--batch-size", "0", "--out", str(tmp_path / "b")]) == 2
    err = one_line(capsys)
    assert err.startswith("python -m diamond.bench: error: ") and "--batch-size" in err and "got 0" in err, err


def test_bench_errors_name_the_command(tmp_path: Path, no_benchmark: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["--out", str(tmp_path / "b"), "training.gamma=2"]) == 2
    assert one_line(capsys).startswith("python -m diamond.bench: error: config key 'training.gamma' must be a number")


def test_bench_checks_out_before_the_benchmark(tmp_path: Path, no_benchmark: None,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    start = time.monotonic()
    assert bench_main(["--out", str(tmp_path / "file")]) == 2  # a file where the folder goes
    assert "--out" in one_line(capsys)
    assert bench_main(["--out", str(tmp_path / "file" / "b")]) == EXIT_OS_ERROR  # a folder that cannot be made
    assert "--out" in one_line(capsys)
    assert time.monotonic() - start < 10, "refused at once"


# ---------------------------------------------------------------- suite settings checked before the first run

def test_a_bad_decision_setting_fails_the_dry_run_naming_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from ablations import static_decision

    monkeypatch.setitem(static_decision.DECISION_PROFILES, "smoke",
                        {**static_decision.DECISION_PROFILES["smoke"], "reward_judge": "oracle"})
    assert run_suite.main(suite_argv(tmp_path, "--dry-run", suite="ablation_ddpm_vs_edm")) == 2
    err = one_line(capsys)
    assert "reward_judge" in err and "'oracle'" in err and "detector or r_psi" in err, err
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- evaluate: a folder of run folders is no run folder

def test_evaluate_refuses_a_folder_that_holds_run_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "runs" / "atari100k" / "smoke"
    atomic_write_json(suite / "Breakout-s0" / "run.json", {"game": "Breakout", "seed": 0, "profile": "smoke"})
    (suite / "logs").mkdir()
    before = sorted(p.relative_to(suite) for p in suite.rglob("*"))
    ckpt = released_checkpoint(tmp_path / "Breakout.pt")
    assert evaluate.main(["--checkpoint", str(ckpt), "--official", "--game", "Breakout", "--episodes", "1",
                          "--profile", "smoke", "--out", str(suite), "--set", *TINY]) == 1
    err = one_line(capsys)
    assert "holds run folders (Breakout-s0)" in err and "--out" in err, err
    assert sorted(p.relative_to(suite) for p in suite.rglob("*")) == before, "nothing was written beside the runs"


# ---------------------------------------------------------------- README and help

REPO = Path(__file__).resolve().parent.parent


def test_readme_says_a_new_shell_activates_the_venv() -> None:
    setup = (REPO / "README.md").read_text(encoding="utf-8").split("## Set-up")[1].split("\n## ")[0]
    assert "new shell" in setup and "`. .venv/bin/activate`" in setup, setup


def test_readme_gives_cpu_users_the_cpu_build_of_the_ci_pins() -> None:
    import re

    pins = re.search(r"pip install -q (torch==\S+ torchvision==\S+)\n", (REPO / ".ci" / "run").read_text()).group(1)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"pip install {pins} &&" in readme, "the set-up command installs what CI installs"
    assert f"pip install {pins} --index-url https://download.pytorch.org/whl/cpu" in readme


def test_run_suite_help_gives_the_main_jobs_measured_time(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_suite.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "one-minute" not in text and "about two minutes" in text
