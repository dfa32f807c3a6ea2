"""The leaderboard suite (issue 29 item 3): DIAMOND and a model written only for the test, trained on the same data,
every world-model metric ranked with CIs beside its ceiling and floors, at a smoke scale."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import torch

from ablations import benchmark, ddpm_vs_edm, memory
from ablations.entrants import parse_models
from ablations.registry import SuiteOptions, get_suite
from reports.benchmark import ranked
from slurm.launcher import launch
from tests.test_ddpm_vs_edm_suite import TINY

torch.set_num_threads(1)


def test_ranking_says_where_cis_overlap() -> None:
    table = pd.DataFrame([
        {"row": "a", "metric": "ball error", "value": 1.0, "ci_low": 0.9, "ci_high": 1.1, "reference": False},
        {"row": "b", "metric": "ball error", "value": 1.05, "ci_low": 1.0, "ci_high": 1.2, "reference": False},
        {"row": "c", "metric": "ball error", "value": 3.0, "ci_low": 2.5, "ci_high": 3.5, "reference": False},
        {"row": "ceiling", "metric": "ball error", "value": 0.1, "ci_low": 0.0, "ci_high": 0.2, "reference": True},
        {"row": "a", "metric": "memory kept", "value": 0.2, "ci_low": 0.1, "ci_high": 0.3, "reference": False},
        {"row": "c", "metric": "memory kept", "value": 0.9, "ci_low": 0.8, "ci_high": 1.0, "reference": False},
        {"row": "b", "metric": "memory kept", "value": float("nan"), "ci_low": float("nan"),
         "ci_high": float("nan"), "reference": False}])
    r = ranked(table)
    ball = r[r["metric"] == "ball error"]
    assert list(ball["row"]) == ["a", "b", "c"] and list(ball["told_apart"]) == [True, False, True]
    assert list(ball["group"]) == [1, 1, 3]
    assert list(r[r["metric"] == "memory kept"]["row"]) == ["c", "a"]  # higher is better; no value, no rank


def test_leaderboard_end_to_end_at_smoke_scale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = dataclasses.replace(ddpm_vs_edm.PROFILE_SETTINGS["smoke"], num_frames=600, random_games=1, train_steps=2,
                               warmup_steps=1, checkpoint_every=2, horizon=10, num_steps=(1,), rollouts=2, clips=2,
                               long_steps=None, short_horizon=None)
    monkeypatch.setitem(ddpm_vs_edm.PROFILE_SETTINGS, "smoke", tiny)
    monkeypatch.setitem(memory.SCHEDULES, "smoke", dataclasses.replace(memory.SCHEDULES["smoke"], num_frames=400))
    opts = SuiteOptions(profile="smoke", out=tmp_path / "runs", report_root=tmp_path / "reports", overrides=TINY,
                        models=parse_models("shift=tests._shift_wm:build"))
    suite = get_suite(benchmark.NAME)
    for stage in suite.stages(opts):
        outcome = launch(stage, "debug", log_dir=tmp_path / "logs", progress=False)
        assert outcome.ok, outcome.summary()
    md, _ = suite.report(opts)
    board = pd.read_csv(opts.report_dir(benchmark.NAME) / "tables" / "leaderboard.csv").set_index("model")
    assert {"diamond s0, n=1", "shift s0, n=1", "copy last frame", "emulator (ceiling)"} <= set(board.index)
    for metric in ("pixel MSE", "ball error", "action accuracy"):
        assert board.loc["shift s0, n=1", metric] != "–", metric
    # a copying model keeps nothing of a hidden cue: no better than blind even in sight, so no value and no rank
    assert board.loc["shift s0, n=1", "memory kept"] == "–"
    assert board.loc["ceiling: env (knows the cue)", "memory kept"].startswith("1.000")
    text = md.read_text()
    assert "Ranking per metric" in text and "figures/leaderboard.png" in text
