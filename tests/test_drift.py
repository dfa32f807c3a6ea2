"""Drift measures that need no real continuation (evaluation/drift.py), against brute-force and exact answers."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.drift import drift_per_step, nearest_real_distance, reference_frames, static_mask, static_pixel_error
from tests.test_static_wm import StubWM, synthetic_episodes
from evaluation.wm_protocol import COPY_SETTING, REAL_SETTING, rollout_vs_real


def _walled(rng: np.random.Generator, count: int) -> np.ndarray:
    """Random frames with a constant 2-pixel wall of level 142 on the left (Breakout's never-changing pixels)."""
    frames = rng.integers(0, 256, (count, 3, 8, 8), dtype=np.uint8)
    frames[:, :, :, :2] = 142
    return frames


def test_nearest_real_distance_matches_brute_force_and_is_zero_on_reference_frames():
    rng = np.random.default_rng(0)
    reference, frames = _walled(rng, 50), _walled(rng, 12).reshape(3, 4, 3, 8, 8)
    brute = (((frames[:, :, None].astype(np.float64) - reference.astype(np.float64)) / 255.0) ** 2).mean(
        axis=(-3, -2, -1)).min(axis=-1)
    got = nearest_real_distance(frames, reference, chunk=5)
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, brute, rtol=1e-5)
    np.testing.assert_allclose(nearest_real_distance(reference[[7, 3]], reference), 0.0, atol=1e-6)
    near = reference[7].copy()
    near[0, 4, 4] = 255 - near[0, 4, 4] if near[0, 4, 4] < 128 else 0  # one pixel off, far from every other frame
    want = ((int(near[0, 4, 4]) - int(reference[7, 0, 4, 4])) / 255.0) ** 2 / near.size
    np.testing.assert_allclose(nearest_real_distance(near[None], reference), [want], rtol=1e-4)


def test_static_pixel_error_sees_only_never_changing_pixels():
    rng = np.random.default_rng(1)
    reference = _walled(rng, 40)
    mask, values = static_mask(reference)
    assert mask.sum() == 3 * 8 * 2 and mask[:, :, :2].all()
    np.testing.assert_allclose(values[mask], 142 / 255)
    frames = _walled(rng, 6)
    np.testing.assert_allclose(static_pixel_error(frames, reference), 0.0)  # other pixels never count
    frames[2, :, :, :2] = 0  # the wall erased in one frame
    err = static_pixel_error(frames, reference)
    np.testing.assert_allclose(err, [0, 0, (142 / 255) ** 2, 0, 0, 0])
    with pytest.raises(ValueError, match="no pixel is the same"):
        static_mask(rng.integers(0, 256, (30, 3, 8, 8), dtype=np.uint8))


def test_reference_frames_are_distinct_seeded_draws_of_the_episodes():
    episodes = synthetic_episodes()
    pool = np.concatenate([ep.obs for ep in episodes])
    ref = reference_frames(episodes, count=20, seed=3)
    assert ref.shape == (20, *pool.shape[1:])
    assert all(any(np.array_equal(r, p) for p in pool) for r in ref)
    np.testing.assert_array_equal(ref, reference_frames(episodes, count=20, seed=3))
    assert len(reference_frames(episodes, count=10_000)) == len(pool)  # capped, without repeats


def test_rollouts_carry_drift_columns_and_the_real_floor():
    """An exact model sits on the real floor; a model that drifts by 40 grey levels is far from every real frame."""
    episodes = synthetic_episodes()
    reference = reference_frames(episodes, count=10_000)  # every real frame: the real floor is 0 exactly
    exact, _ = rollout_vs_real(StubWM(), episodes, starts=3, horizon=15, num_steps_list=[1], drift_reference=reference)
    drifting, _ = rollout_vs_real(StubWM(bias=40.0), episodes, starts=3, horizon=15, num_steps_list=[1],
                                  drift_reference=reference)
    assert set(exact["setting"]) == {"n=1", COPY_SETTING, REAL_SETTING}
    real = exact[exact["setting"] == REAL_SETTING]
    np.testing.assert_allclose(real[["mse", "nn_mse"]].to_numpy(), 0.0, atol=1e-6)
    assert "static_mse" not in exact  # uniform grey frames: no pixel is the same in every real frame
    np.testing.assert_allclose(exact.loc[exact["setting"] == "n=1", "nn_mse"], 0.0, atol=1e-6)
    late = drifting[(drifting["setting"] == "n=1") & (drifting["step"] > 10)]
    assert (late["nn_mse"] > 1e-3).all() and (late["nn_mse_ci_low"] <= late["nn_mse"]).all()
    walled = _walled(np.random.default_rng(2), 8)
    per_step = drift_per_step(walled.reshape(2, 4, 3, 8, 8), walled)
    assert set(per_step) == {"nn_mse", "static_mse"} and per_step["static_mse"].shape == (2, 4)
    np.testing.assert_allclose(per_step["nn_mse"], 0.0, atol=1e-6)
