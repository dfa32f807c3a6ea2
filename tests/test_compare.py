"""evaluation/compare.py: IQM-difference CIs on synthetic data with a known shift, paired clip bootstraps, verdicts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from evaluation.compare import (Interval, clip_mean, clip_ratio, clip_resamples, compare_agent_arms,
                                describe_difference, frechet_replicates, iqm_difference, paired_clip_difference,
                                replicate_difference, summary_paragraph, wm_difference, wm_interval)

REPS = 300


def scores(rng: np.random.Generator, shift: float, runs: int = 8, games: int = 5) -> np.ndarray:
    """[runs, games]: a per-game level plus unit-scale noise, all moved by `shift` (IQM is translation-equivariant,
    so the true IQM difference of two such arms is exactly the difference of their shifts)."""
    levels = np.linspace(0.0, 4.0, games)
    return levels + shift + rng.normal(0.0, 0.5, size=(runs, games))


def test_iqm_difference_ci_covers_the_known_shift():
    covered = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        d = iqm_difference(scores(rng, 0.4), scores(rng, 0.0), reps=REPS, seed=seed)
        assert d.has_ci and d.ci_low < d.value < d.ci_high
        covered += d.ci_low <= 0.4 <= d.ci_high
    assert covered >= 8  # nominal 95 %: fewer than 8 of 10 would be very unlikely


def test_iqm_difference_excludes_zero_for_a_large_shift_and_not_for_none():
    rng = np.random.default_rng(0)
    big = iqm_difference(scores(rng, 2.0), scores(rng, 0.0), reps=REPS)
    assert big.excludes(0.0) and big.ci_low > 1.0 and big.value == pytest.approx(2.0, abs=0.4)
    rng = np.random.default_rng(1)
    none = iqm_difference(scores(rng, 0.0), scores(rng, 0.0), reps=REPS)
    assert none.has_ci and not none.excludes(0.0)


def test_iqm_difference_is_seeded_and_leaves_the_global_rng_alone():
    rng = np.random.default_rng(2)
    x, y = scores(rng, 0.3), scores(rng, 0.0)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = iqm_difference(x, y, reps=REPS, seed=7)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    assert a == iqm_difference(x, y, reps=REPS, seed=7)
    assert a != iqm_difference(x, y, reps=REPS, seed=8)


def test_iqm_difference_needs_two_runs_for_a_ci_and_equal_games():
    one = iqm_difference(np.ones((1, 3)), np.zeros((4, 3)))
    assert one.value == 1.0 and not one.has_ci and not one.excludes(0.0)
    with pytest.raises(ValueError, match="same games"):
        iqm_difference(np.ones((2, 3)), np.ones((2, 4)))


def test_compare_agent_arms_on_atari_scores():
    rng = np.random.default_rng(0)
    rows = []
    for game, human in (("Pong", 14.6), ("Boxing", 12.1), ("Breakout", 30.5)):
        for seed in range(4):
            rows.append({"algorithm": "ref", "game": game, "seed": seed, "score": human * rng.uniform(0.1, 0.3)})
            rows.append({"algorithm": "good", "game": game, "seed": seed, "score": human * rng.uniform(1.5, 2.0)})
            rows.append({"algorithm": "same", "game": game, "seed": seed, "score": rows[-2]["score"]})
    table = compare_agent_arms(pd.DataFrame(rows), "ref", ["ref", "good", "same"], reps=REPS, poi_reps=100)
    good, same = table.set_index("arm").loc["good"], table.set_index("arm").loc["same"]
    assert list(table["arm"]) == ["good", "same"] and good["n_games"] == 3 and good["n_runs_arm"] == 4
    assert good["iqm_diff_ci_low"] > 0.5 and good["poi"] == 1.0 and good["poi_ci_low"] == 1.0
    assert same["iqm_diff"] == 0.0 and same["poi"] == 0.5


def test_paired_clip_statistics():
    rng = np.random.default_rng(0)
    base = rng.normal(1.0, 1.0, 200)  # large between-clip spread, tiny within-pair difference
    res = clip_resamples(200, 500, seed=3)
    np.testing.assert_array_equal(res, clip_resamples(200, 500, seed=3))
    assert res.shape == (500, 200) and res.min() >= 0 and res.max() < 200
    paired = paired_clip_difference(base + 0.05, base, res)
    assert paired.value == pytest.approx(0.05) and paired.excludes(0.0)  # pairing removes the clip spread
    unpaired_width = clip_mean(base + 0.05, res).ci_high - clip_mean(base + 0.05, res).ci_low
    assert paired.ci_high - paired.ci_low < unpaired_width / 100
    ratio = clip_ratio(0.5 * np.abs(base) + 0.0, np.abs(base), res)
    assert ratio.value == pytest.approx(0.5) and ratio.ci_low == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least 2 clips"):
        clip_resamples(1, 10)


def test_frechet_replicates_are_zero_for_identical_sets_and_pair_by_replicate():
    rng = np.random.default_rng(0)
    res = clip_resamples(12, 20, seed=0)
    feats = rng.normal(size=(12 * 3, 4))  # 3 rows (frames) per clip
    same = frechet_replicates(feats, feats.copy(), res)
    assert same.shape == (20,) and np.abs(same).max() < 1e-8
    moved = frechet_replicates(feats, feats + 1.0, res)
    np.testing.assert_allclose(moved, 4.0, rtol=1e-6)  # a mean shift of 1 in each of 4 dims: ||mu||^2 = 4
    d = replicate_difference(4.0, 0.0, moved, same)
    assert d.value == 4.0 and d.ci_low == pytest.approx(4.0) and d.excludes(0.0)
    with pytest.raises(ValueError, match="do not split into 12 clips"):
        frechet_replicates(feats[:-1], feats[:-1], res)


def test_world_model_metrics_from_rows_and_clip_arrays():
    res = clip_resamples(6, 50, seed=0)
    real = np.array([1.0, 2.0, 3.0, 1.0, 2.0, 3.0])
    a = ({"mse": 0.2, "fid": 5.0}, {"mse": np.full(6, 0.2), "fid_reps": np.linspace(4, 6, 50),
                                    "sharpness": 0.5 * real, "real.sharpness": real})
    b = ({"mse": 0.1, "fid": 1.0}, {"mse": np.full(6, 0.1), "fid_reps": np.linspace(0.5, 1.5, 50),
                                    "sharpness": real, "real.sharpness": real})
    assert wm_interval("sharpness", *a, res).value == pytest.approx(0.5)
    assert wm_interval("fid", *a, res) == Interval(5.0, pytest.approx(4.05, abs=0.01), pytest.approx(5.95, abs=0.01))
    assert wm_difference("mse", a, b, res).value == pytest.approx(0.1)
    assert wm_difference("fid", a, b, res).value == 4.0 and wm_difference("fid", a, b, res).excludes(0.0)
    assert wm_difference("sharpness", a, b, res).value == pytest.approx(-0.5)
    other = (b[0], {**b[1], "real.sharpness": real + 1})
    with pytest.raises(ValueError, match="same real clips"):
        wm_difference("mse", a, other, res)


def test_summary_picks_the_right_winner_and_says_whether_the_ci_excludes_zero():
    values = {"ref": 1.0, "A": 1.5, "B": 0.9}
    diffs = {"A": Interval(0.5, 0.2, 0.8), "B": Interval(-0.1, -0.4, 0.2)}
    text = summary_paragraph("IQM", values, diffs, "ref", higher_is_better=True)
    assert "**A** comes out best" in text and "A +0.5 [0.2, 0.8], the CI excludes 0: significantly better" in text
    assert "B -0.1 [-0.4, 0.2], the CI includes 0: no detectable difference" in text
    assert "Verdict: A wins, and the CI of its difference to ref excludes 0" in text
    lower = summary_paragraph("FID", values, diffs, "ref", higher_is_better=False)
    assert "**B** comes out best" in lower
    assert "B has the best point estimate, but its CI against ref includes 0" in lower
    worse = {"A": Interval(0.5, 0.2, 0.8), "B": Interval(0.1, 0.05, 0.2)}
    assert "every other arm is significantly worse" in summary_paragraph("FID", {"ref": 0.5, "A": 1.0, "B": 0.6},
                                                                          worse, "ref", higher_is_better=False)
    tie = summary_paragraph("IQM", {"ref": 1.0, "A": 1.0}, {"A": Interval(0.0)}, "ref", higher_is_better=True)
    assert "**ref** comes out best" in tie and "no CI" in tie
    assert describe_difference(Interval(math.nan), True).startswith("not comparable")
    with pytest.raises(ValueError, match="reference arm 'zzz'"):
        summary_paragraph("IQM", values, diffs, "zzz", higher_is_better=True)
