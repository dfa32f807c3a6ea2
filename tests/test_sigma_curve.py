"""The Figure 3 drift-cause measurements: per-n horizons, sampler variants of the same model, and the held-out
denoising error per noise level (evaluation/sigma_curve.py), against oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ablations.static_wm import ProtocolSettings
from diamond.models.diffusion.paradigms import build_paradigm
from diamond.models.world_model import WorldModel
from evaluation.sigma_curve import denoising_error_vs_sigma, sampler_sigmas, variant_rollouts
from evaluation.wm_protocol import rollout_vs_real
from tests.test_static_wm import StubWM, synthetic_episodes

torch.set_num_threads(1)


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # CIs of an all-infinite PSNR
def test_shorter_horizons_stop_early_on_the_same_contexts_and_noise():
    full, full_frames = rollout_vs_real(StubWM(noise=3.0), synthetic_episodes(), starts=2, horizon=20,
                                        num_steps_list=[1, 2], seed=3, keep_times=[0, 1, 5, 20])
    short, frames = rollout_vs_real(StubWM(noise=3.0), synthetic_episodes(), starts=2, horizon=20,
                                    num_steps_list=[1, 2], seed=3, keep_times=[0, 1, 5, 20], horizons={2: 5})
    assert short[short.setting == "n=2"]["step"].max() == 5 and short[short.setting == "n=1"]["step"].max() == 20
    np.testing.assert_array_equal(full[full.setting == "n=2"]["mse"].to_numpy()[:5],
                                  short[short.setting == "n=2"]["mse"].to_numpy())
    assert frames["n=2"].shape[1] == 3 and frames["n=1"].shape[1] == 4  # times 0, 1, 5 only
    np.testing.assert_array_equal(frames["n=2"], full_frames["n=2"][:, :3])
    np.testing.assert_array_equal(frames["starts"], full_frames["starts"])


def _edm_model(offset: float, seed: int = 0) -> WorldModel:
    """A tiny EDM world model whose network outputs a fixed random correction F (so D = c_skip x + c_out F)."""
    torch.manual_seed(seed)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(0.5))

        def forward(self, x_in, c_noise, obs_hist, act_hist):
            return self.scale * torch.tanh(x_in + obs_hist[:, -1])

    return WorldModel(Net(), build_paradigm("edm", sigma_offset_noise=offset, quantize=False), "euler", 1, 2)


def _batches(count: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.rand(4, 3, 3, 8, 8, generator=gen) * 2 - 1, torch.zeros(4, 3, dtype=torch.long))
            for _ in range(count)]


class Identity(torch.nn.Module):
    """denoise_at returns its noisy input: the error is the noise itself, sigma^2 E[eps^2] / 4 on the [0, 1] scale."""

    num_history = 2

    def __init__(self) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))

    def denoise_at(self, obs_hist, act_hist, x, sigma):
        return x


def test_sigma_curve_of_the_identity_is_the_noise_itself():
    batches = _batches()
    curve = denoising_error_vs_sigma(Identity(), batches, [2.0, 0.1], seed=5)
    gen = torch.Generator().manual_seed(5)
    eps = torch.cat([torch.randn(b[0][:, 2].shape, generator=gen) for b in batches])
    for row in curve.itertuples():
        assert row.mse == pytest.approx(float((row.sigma * eps / 2).pow(2).mean()), rel=1e-5)
        assert row.mean_shift == pytest.approx(float((row.sigma * eps / 2).mean()), rel=1e-4, abs=1e-7)


def test_offset_noise_makes_the_last_low_sigma_call_change_a_clean_frame():
    """The mechanism of the report's explanation, with the real preconditioning: at sigma_min = 2e-3 and no offset
    noise c_skip ~ 1 and c_out ~ sigma_min, so D is the identity to ~1e-6 whatever the network says; with the
    released 0.3 the preconditioners see sigma~ ~ 0.3 and D rescales the frame and adds 0.26 F."""
    batches, s_min = _batches(), 2e-3
    zero = denoising_error_vs_sigma(_edm_model(0.0), batches, [s_min]).iloc[0]
    released = denoising_error_vs_sigma(_edm_model(0.3), batches, [s_min]).iloc[0]
    assert zero.mse < 1e-5 and released.mse > 1e-3 and released.mse > 1000 * zero.mse


def test_sampler_sigmas_are_the_grids_without_zero():
    edm = build_paradigm("edm")
    levels = sampler_sigmas(edm, [1, 2, 3])
    assert levels[0] == pytest.approx(5.0) and levels[-1] == pytest.approx(2e-3) and len(levels) == 3
    ddpm = build_paradigm("ddpm")
    assert sampler_sigmas(ddpm, [1]) == [round(float(ddpm.sigmas(1)[0]), 8)]


def test_a_variant_with_the_models_own_settings_repeats_the_main_rollout():
    """Same contexts, same noise: a variant that changes nothing reproduces the main n = 3 rows exactly, one that
    raises sigma_min does not; a paradigm without the field is skipped with the reason."""
    model = _edm_model(0.3)
    model.paradigm.cfg.quantize = True
    episodes = [_uint8_episode(s) for s in range(2)]
    main, _ = rollout_vs_real(model, episodes, starts=2, horizon=6, num_steps_list=[3], seed=0, copy_baseline=False)
    same = {"label": "same", "num_steps": 3, "paradigm": {"sigma_min": model.paradigm.cfg.sigma_min}}
    raised = {"label": "raised", "num_steps": 3, "paradigm": {"sigma_min": 0.3}}
    table, skipped = variant_rollouts(model, episodes, [same, raised], starts=2, horizon=6, short_horizon=4, seed=0)
    assert skipped == [] and model.paradigm.cfg.sigma_min == 2e-3  # restored
    np.testing.assert_allclose(table[table.setting == "same"]["mse"].to_numpy(), main["mse"].to_numpy()[:4])
    assert not np.allclose(table[table.setting == "raised"]["mse"], main["mse"].to_numpy()[:4])
    ddpm = WorldModel(model.net, build_paradigm("ddpm"), "ddpm_ancestral", 1, 2)
    assert variant_rollouts(ddpm, episodes, [raised], starts=2, horizon=6, short_horizon=4, seed=0) == \
        (None, ["raised: this paradigm has no sigma_min"])


def _uint8_episode(seed: int):
    from diamond.loop.data import Episode

    rng = np.random.default_rng(seed)
    t = 12
    obs = rng.integers(0, 256, (t + 1, 3, 8, 8), dtype=np.uint8)
    end = np.zeros(t, bool)
    end[-1] = True
    return Episode.from_arrays(obs, rng.integers(0, 3, t).astype(np.int64), np.zeros(t, np.float32), end,
                               np.zeros(t, bool))


@pytest.mark.parametrize("bad, match", [
    ({"long_steps": [1]}, "needs short_horizon"),
    ({"long_steps": [7], "short_horizon": 5}, "must be among num_steps"),
    ({"short_horizon": 2000}, "short_horizon must be in"),
])
def test_protocol_settings_reject_inconsistent_horizons_and_variants(bad, match):
    with pytest.raises(ValueError, match=match):
        ProtocolSettings.from_dict({"horizon": 1000, "num_steps": [1, 3], **bad})
    ok = ProtocolSettings.from_dict({"horizon": 100, "num_steps": [1, 3], "long_steps": [1], "short_horizon": 20})
    assert ok.horizons() == {3: 20}


def test_sampler_variants_are_checked_before_any_model_is_loaded():
    from ablations.static_cause import check_variants

    with pytest.raises(ValueError, match="needs exactly label"):
        check_variants([{"label": "x", "num_steps": 3}])
    with pytest.raises(ValueError, match="must be distinct"):
        check_variants([{"label": "x", "num_steps": 3, "paradigm": {}}] * 2)
