"""The world-model evaluation protocol (oracle / drifting stubs on synthetic data) and the static-dataset run."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from ablations import static_wm
from diamond.loop.data import Episode, ReplayBuffer
from diamond.run.errors import RunIdentityError
from diamond.run.io import atomic_write_json, read_json, read_jsonl
from evaluation.wm_protocol import COPY_SETTING, REAL_SETTING, clip_metrics, join_life_losses, rollout_vs_real
from tests._fakes import TinyFeatures, TinyLPIPS

torch.set_num_threads(1)
SIZE = 16
TINY = ["denoiser.channels=[8,8]", "denoiser.depths=[1,1]", "denoiser.cond_dim=16", "training.batch_size=2",
        "denoiser_optim.warmup_steps=2"]


def make_episode(v0: int, actions: np.ndarray) -> Episode:
    """Uniform frames whose grey level obeys v[t+1] = v[t] + a[t]: an oracle can predict them exactly."""
    levels = v0 + np.concatenate([[0], np.cumsum(actions)])
    obs = np.broadcast_to(levels[:, None, None, None], (len(levels), 3, SIZE, SIZE)).astype(np.uint8)
    t = len(actions)
    end = np.zeros(t, bool)
    end[-1] = True
    return Episode.from_arrays(obs, actions.astype(np.int64), np.zeros(t, np.float32), end, np.zeros(t, bool))


def synthetic_episodes(seed: int = 0, lengths: tuple[int, ...] = (30, 25, 40)) -> list[Episode]:
    """The second episode continues the first (life loss: starts on its last frame); the third is a new game."""
    rng = np.random.default_rng(seed)
    first = make_episode(20, rng.integers(0, 4, lengths[0]))
    second = make_episode(int(first.obs[-1, 0, 0, 0]), rng.integers(0, 4, lengths[1]))
    third = make_episode(7, rng.integers(0, 4, lengths[2]))
    return [first, second, third]


class StubWM(nn.Module):
    """Predicts v + a (the true dynamics) plus `bias` grey levels and optional generator noise."""

    def __init__(self, bias: float = 0.0, noise: float = 0.0) -> None:
        super().__init__()
        self.num_history, self.sampler, self.num_steps = 4, "euler", 1
        self.bias, self.noise = bias, noise
        self.calls: list[int] = []

    def predict_next(self, obs_hist, act_hist, num_steps=None, generator=None):
        self.calls.append(num_steps)
        level = torch.round((obs_hist[:, -1] + 1) * 127.5) + act_hist[:, -1].view(-1, 1, 1, 1) + self.bias
        if self.noise:
            level = level + torch.round(self.noise * torch.randn(level.shape, generator=generator))
        return level / 127.5 - 1


def test_join_life_losses_joins_only_continuations():
    eps = synthetic_episodes()
    trajs = join_life_losses(eps)
    assert [t.num_steps for t in trajs] == [55, 40]
    np.testing.assert_array_equal(trajs[0].obs[30], eps[1].obs[0])
    np.testing.assert_array_equal(trajs[0].act[30:], eps[1].act)
    assert len(trajs[0].obs) == 56


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # CIs of an all-infinite PSNR
def test_oracle_rollout_has_zero_error_and_expected_shapes():
    wm = StubWM()
    errors, frames = rollout_vs_real(wm, synthetic_episodes(), starts=3, horizon=20, num_steps_list=[1, 3],
                                     keep_times=[0, 1, 5, 20])
    assert list(errors["setting"].unique()) == ["n=1", "n=3", COPY_SETTING]
    assert len(errors) == 3 * 20 and errors["step"].tolist()[:3] == [1, 2, 3]
    model = errors[errors["setting"] != COPY_SETTING]
    assert (model["mse"] == 0).all() and np.isinf(model["psnr"]).all()
    assert (errors["n_rollouts"] == 3).all() and model["nfe"].tolist()[0] == 1 and model["nfe"].tolist()[-1] == 3
    copy = errors[errors["setting"] == COPY_SETTING].set_index("step")
    real = frames["real"].astype(float) / 255
    for k, t in enumerate([1, 5, 20], start=1):  # the copy baseline: the last context frame, repeated
        assert copy.loc[t, "mse"] == pytest.approx(np.mean((real[:, k] - real[:, 0]) ** 2))
    assert copy.loc[20, "mse"] > 0 and (copy["num_steps"] == 0).all()
    assert frames["real"].shape == (3, 4, 3, SIZE, SIZE) and frames["n=3"].shape == (3, 4, 3, SIZE, SIZE)
    np.testing.assert_array_equal(frames["n=1"], frames["real"])
    assert frames["times"].tolist() == [0, 1, 5, 20] and frames["starts"].shape == (3, 2)
    assert sorted(set(wm.calls)) == [1, 3] and len(wm.calls) == 2 * 20


def test_drifting_rollout_error_grows_and_horizon_is_capped():
    with pytest.warns(UserWarning, match="capped to 52"):
        errors, _ = rollout_vs_real(StubWM(bias=2.0), synthetic_episodes(), starts=2, horizon=500,
                                    num_steps_list=[1], copy_baseline=False)
    assert errors["step"].max() == 52  # the 55-step joined trajectory minus L - 1 context steps
    mse = errors["mse"].to_numpy()
    assert np.all(np.diff(mse) > 0)
    np.testing.assert_allclose(mse[:5], [(2 * t / 255) ** 2 for t in range(1, 6)], rtol=1e-6)


def test_every_setting_sees_the_same_noise_stream():
    errors, frames = rollout_vs_real(StubWM(noise=3.0), synthetic_episodes(), starts=2, horizon=10,
                                     num_steps_list=[1, 2], seed=3)
    np.testing.assert_array_equal(frames["n=1"], frames["n=2"])
    assert (errors[errors.setting == "n=1"]["mse"].to_numpy() > 0).any()
    np.testing.assert_array_equal(errors[errors.setting == "n=1"]["mse"], errors[errors.setting == "n=2"]["mse"])


def test_clip_metrics_identical_clips_score_zero_and_drift_does_not():
    clip_len = 6
    extractors = {"inception": TinyFeatures(3 * SIZE * SIZE, 5), "i3d": TinyFeatures(clip_len * 3 * SIZE * SIZE, 5),
                  "lpips": TinyLPIPS()}
    same = clip_metrics(StubWM(), synthetic_episodes(), num_clips=8, context=6, clip_len=clip_len,
                        extractors=extractors)
    assert same["num_clips"] == 8 and same["unavailable"] == {}
    assert same["mse"] == 0 and same["ssim"] == pytest.approx(1.0, abs=1e-4) and math.isinf(same["psnr"])
    for key in ("fid", "fvd", "lpips"):
        assert abs(same[key]) < 1e-6, key
    assert same["sample_rate_hz"] > 0 and same["num_parameters"] == 0 and same["nfe"] == 1
    drift = clip_metrics(StubWM(bias=3.0), synthetic_episodes(), num_clips=8, context=6, clip_len=clip_len,
                         extractors=extractors)
    assert drift["mse"] > 1e-4 and drift["fid"] > 1e-3 and drift["fvd"] > 1e-3 and drift["lpips"] > 1e-4


def test_clip_metrics_records_unavailable_networks_and_rejects_short_context():
    out = clip_metrics(StubWM(), synthetic_episodes(), num_clips=4, context=4, clip_len=3,
                       extractors={"lpips": "FeatureNetworkUnavailable: offline"})
    assert out["fid"] is None and out["fvd"] is None and out["lpips"] is None
    assert out["unavailable"] == {"inception": "no extractor given", "i3d": "no extractor given",
                                  "lpips": "FeatureNetworkUnavailable: offline"}
    with pytest.raises(ValueError, match="at least the world model's L = 4"):
        clip_metrics(StubWM(), synthetic_episodes(), num_clips=4, context=3)


# ---------------------------------------------------------------------------------- the static run


def write_dataset(directory) -> None:
    buf = ReplayBuffer(directory)
    for ep in synthetic_episodes(lengths=(20, 20, 30)):
        buf.add_episode(ep)
    buf.save()
    atomic_write_json(directory / "summary.json", {"game": "Breakout", "expert_mean_return": 12.5,
                                                   "random_mean_return": 1.0})


PROTOCOL = {"horizon": 6, "num_steps": [1, 2], "rollouts": 2, "clips": 2, "clip_context": 4, "clip_len": 3,
            "feature_networks": False}


def _run(run_dir, data, hook=None):
    return static_wm.run(run_dir, data, profile="smoke", overrides=TINY, train_steps=6, protocol=PROTOCOL,
                         checkpoint_every=2, test_every=2, log_every=1, step_hook=hook)


def test_static_run_resumes_exactly_and_writes_result(tmp_path):
    data = tmp_path / "data"
    write_dataset(data)

    def interrupt(step):
        if step == 3:
            raise KeyboardInterrupt("simulated preemption")

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "a", data, interrupt)
    assert not (tmp_path / "a" / "result.json").exists()
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = _run(tmp_path / "a", data, seen.append)
        reference = _run(tmp_path / "b", data)
    assert seen == [3, 4, 5, 6]  # resumed from the step-2 checkpoint
    assert [r["step"] for r in read_jsonl(tmp_path / "a" / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["model"]
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert result["train_loss"] == reference["train_loss"] and result["test_loss"] == reference["test_loss"]
    assert result["train_steps"] == 6 and result["paradigm"] == "edm" and result["dataset"]["test_episodes"] == 1
    error_at = result["rollouts"]["error_at"]
    assert result["rollouts"]["horizon"] == 6 and set(error_at) == {"n=1", "n=2", COPY_SETTING, REAL_SETTING}
    assert error_at[REAL_SETTING]["6"]["nn_mse"] == 0.0  # drift floor: the train frames hold the real ones here
    assert result["clips"]["n=2"]["fid"] is None and result["clips"]["n=2"]["psnr"] > 0
    assert read_json(tmp_path / "a" / "result.json") == result
    with np.load(tmp_path / "a" / static_wm.FRAMES_FILE) as frames:
        assert frames["n=2"].shape[:2] == (2, len(frames["times"]))


def test_static_run_refuses_other_settings_naming_the_key(tmp_path):
    """A static run folder belongs to one run (diamond/run/rundir.py): resuming with another config names the key."""
    data = tmp_path / "data"
    write_dataset(data)

    def interrupt(step):
        if step == 2:
            raise KeyboardInterrupt("simulated preemption")

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "a", data, interrupt)
    with pytest.raises(RunIdentityError, match=r"config differs in denoiser_optim\.lr"):
        static_wm.run(tmp_path / "a", data, profile="smoke", overrides=(*TINY, "denoiser_optim.lr=0.5"),
                      train_steps=6, protocol=PROTOCOL)


def test_split_holds_out_the_last_tenth_of_the_steps():
    buf = ReplayBuffer()
    for length in (50, 40, 5):  # a short tail episode, as when the collection budget runs out
        buf.add_episode(make_episode(0, np.zeros(length, np.int64)))
    train, test = static_wm.split_episodes(buf, 0.1)
    assert [ep.num_steps for ep in train.episodes] == [50] and [ep.num_steps for ep in test] == [40, 5]
    train, test = static_wm.split_episodes(buf, 0.05)
    assert train.num_episodes == 2 and [ep.num_steps for ep in test] == [5]
    with pytest.raises(ValueError, match="at least 2 episodes"):
        static_wm.split_episodes(ReplayBuffer(), 0.1)


def test_static_run_rejects_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a complete static dataset"):
        _run(tmp_path / "r", tmp_path)
    data = tmp_path / "data"
    write_dataset(data)
    with pytest.raises(ValueError, match="unknown protocol setting"):
        static_wm.run(tmp_path / "r", data, profile="smoke", protocol={"horizonn": 3})
