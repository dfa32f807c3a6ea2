"""reports/memory.py: seeds pooled per arm, the ceiling and floor rows, and the sentence on cross-attention's use
of its context (issue 30, items 2 and 3)."""

from __future__ import annotations

import pandas as pd
import pytest

from diamond.loop.memory_game import DelayedCueEnv
from evaluation.memory import CEILING, FLOOR, MODEL, context_use, cue_probe
from reports.memory import _context_sentence, answer_sentence, curves, separations
from tests.test_memory_probe import KS, C, ScriptedMemory


def _probes() -> dict[str, pd.DataFrame]:
    env = DelayedCueEnv(num_actions=3, size=32, cue_frames=C)
    tables = {}
    for name, window in (("window 4", 4), ("window 1", 1)):
        seeds = [cue_probe(ScriptedMemory(env, window), env, occlusions=KS, starts=6, seed=0).assign(seed=s)
                 for s in (0, 1, 2)]
        tables[name] = pd.concat(seeds, ignore_index=True)
    return tables


def test_curves_pool_seeds_and_add_the_ceiling_and_the_floor_once() -> None:
    tidy = curves(_probes())
    kept = tidy[tidy["metric"] == "information kept"].set_index(["setting", "k"])["value"]
    assert list(pd.unique(tidy["setting"])) == ["window 4", "window 1", CEILING, FLOOR]
    assert kept["window 4"].to_dict() == pytest.approx({0: 1, 1: 1, 3: 1, 4: 0, 6: 0, 8: 0})
    assert kept["window 1"].to_dict() == kept[FLOOR].to_dict() == pytest.approx({k: float(k == 0) for k in KS})
    assert kept[CEILING].to_dict() == pytest.approx({k: 1.0 for k in KS})


def test_the_context_sentence_says_whether_cross_attention_follows_its_context() -> None:
    probes = _probes()
    use = pd.concat([context_use(t, MODEL).assign(setting=n) for n, t in probes.items()], ignore_index=True)
    assert "at k = [1, 3]" in _context_sentence(use, "window 4", 8)
    assert "does not use its older frames" in _context_sentence(use, "window 1", 8)
    assert _context_sentence(use, None, 8) == "No cross-attention model finished."


def test_separations_name_the_pairs_told_apart_and_where() -> None:
    tidy = curves(_probes())
    table = separations(tidy[tidy["metric"] == "information kept"])
    apart = {(r["keeps more"], r["than"]): r["k (CIs apart)"] for _, r in table.iterrows()}
    assert apart[("window 4", "window 1")] == "1, 3" and apart[("window 4", FLOOR)] == "1, 3"
    assert apart[(CEILING, "window 4")] == "4, 6, 8" and apart[(CEILING, FLOOR)] == "1, 3, 4, 6, 8"
    assert ("window 1", "window 4") not in apart and ("window 1", FLOOR) not in apart  # equal: not apart


def test_the_answer_sentence_says_which_models_cannot_be_judged() -> None:
    tidy = curves(_probes())
    text = answer_sentence(tidy, ["window 4", "window 1"], 8)
    assert "Every model draws the cue's colour" in text
    broken = tidy.copy()
    rows = (broken["setting"] == "window 1") & (broken["metric"] == "answer-block MSE")
    broken.loc[rows, ["value", "ci_low", "ci_high"]] = 0.3  # above blind even at k = 0
    text = answer_sentence(broken, ["window 4", "window 1"], 8)
    assert "window 1 does not draw the cue's colour even with the cue in view" in text


def test_the_budget_table_says_when_a_model_draws_the_answer_below_blind(tmp_path) -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from memory_budget import main

    env = DelayedCueEnv(num_actions=3, size=32, cue_frames=C)
    for updates, window in ((100, 1), (200, 4)):  # a blind model first, then one that keeps the cue 4 frames
        cue_probe(ScriptedMemory(env, window), env, occlusions=KS, starts=6, seed=0).to_csv(tmp_path / f"{updates}.csv")
    out = tmp_path / "budget.csv"
    assert main(["--probe", f"200={tmp_path / '200.csv'}", "--probe", f"100={tmp_path / '100.csv'}",
                 "--out", str(out)]) == 0
    table = pd.read_csv(out).set_index(["updates", "k"])
    assert table.loc[(100, 0), "below_blind"] and not table.loc[(100, 1), "below_blind"]
    assert table.loc[(200, 3), "below_blind"] and not table.loc[(200, 4), "below_blind"]
    assert table["blind"].iloc[0] > 0.1
