"""EDM / DDPM paradigms: preconditioners, Eq. 7 target, grids, losses, NFE, quantisation, errors."""

import math

import pytest
import torch
from torch import nn

from diamond.models.diffusion import (
    DDPM,
    EDM,
    PARADIGMS,
    SAMPLERS,
    DDPMConfig,
    EDMConfig,
    build_paradigm,
    get_sampler,
    karras_sigmas,
    nfe,
    quantize_8bit,
    sample_ddim,
    sample_euler,
)
from diamond.models.diffusion.paradigms import (
    c_in,
    c_noise,
    c_out,
    c_skip,
    edm_target,
    effective_sigma,
    sample_training_sigma,
)

torch.set_num_threads(1)


def on_8bit_grid(x: torch.Tensor) -> bool:
    levels = (x + 1) * 127.5
    return bool(torch.allclose(levels, levels.round(), atol=1e-4))


# ------------------------------------------------------------------------------ preconditioners


@pytest.mark.parametrize("offset, expected", [
    # sigma = 1, sigma_data = 0.5: c_in = 2/sqrt(5), c_out = 1/sqrt(5), c_noise = 0, c_skip = 1/5
    (0.0, (0.894427, 0.447214, 0.0, 0.2, 0.447214)),
    # sigma~ = sqrt(1.09): c_in = 1/sqrt(1.34), c_out = sqrt(1.09)/2/sqrt(1.34), ln(1.09)/8, 0.25/1.34
    (0.3, (0.863868, 0.450953, 0.010772, 0.186567, 0.488187)),
])
def test_preconditioners_and_target_match_hand_values(offset, expected):
    s = effective_sigma(torch.tensor(1.0, dtype=torch.float64), offset)
    got = (c_in(s, 0.5), c_out(s, 0.5), c_noise(s), c_skip(s, 0.5))
    target = edm_target(torch.tensor(0.5), torch.tensor(1.5), got[3], got[1])  # x0 = 0.5, x = 1.5
    for value, want in zip((*got, target), expected):
        assert float(value) == pytest.approx(want, abs=1e-6)


def test_preconditioners_at_sigma_two():
    s = torch.tensor(2.0)
    assert float(c_in(s, 0.5)) == pytest.approx(1 / math.sqrt(4.25), abs=1e-6)
    assert float(c_out(s, 0.5)) == pytest.approx(1 / math.sqrt(4.25), abs=1e-6)
    assert float(c_noise(s)) == pytest.approx(0.173287, abs=1e-6)
    assert float(c_skip(s, 0.5)) == pytest.approx(1 / 17, abs=1e-6)


def test_eq7_target_limits_follow_section_3_1():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4096, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(4096, generator=g, dtype=torch.float64)

    def target(sigma: float) -> torch.Tensor:
        s = torch.tensor(sigma, dtype=torch.float64)
        return edm_target(x0, x0 + s * noise, c_skip(s, 0.5), c_out(s, 0.5))

    high = target(1e4)  # c_skip -> 0: the target is the clean signal, x0 / sigma_data
    assert float(c_skip(torch.tensor(1e4), 0.5)) < 1e-8
    assert torch.allclose(high, x0 / 0.5, atol=1e-3)
    low = target(1e-4)  # c_skip -> 1: the target is the added noise (with the sign of x0 - x)
    assert 1 - float(c_skip(torch.tensor(1e-4), 0.5)) < 1e-7
    assert torch.allclose(low, -noise, atol=1e-3)
    mid = target(0.5)  # in between, both contribute
    assert torch.corrcoef(torch.stack([mid, x0]))[0, 1] > 0.3
    assert torch.corrcoef(torch.stack([mid, -noise]))[0, 1] > 0.3


def test_training_sigma_is_lognormal_and_clipped():
    sigma = sample_training_sigma(100_000, -0.4, 1.2, 2e-3, 20.0, generator=torch.Generator().manual_seed(1))
    assert float(sigma.min()) >= 2e-3 and float(sigma.max()) == pytest.approx(20.0)
    assert float(sigma.log().mean()) == pytest.approx(-0.4, abs=0.02)
    assert float(sigma.log().std()) == pytest.approx(1.2, abs=0.03)
    assert torch.all(sample_training_sigma(8, 10.0, 1.0, 2e-3, 20.0) == 20.0)


# ------------------------------------------------------------------------------------- grids


def test_grids_and_nfe():
    edm = EDM()
    assert torch.allclose(edm.sigmas(3), torch.tensor([5.0, 0.283, 0.002, 0.0]), atol=5e-4)
    assert edm.sigmas(1).tolist() == [5.0, 0.0]
    assert torch.equal(edm.sigmas(10), karras_sigmas(10, 2e-3, 5.0, 7.0))
    ddpm = DDPM()
    assert ddpm.timesteps(1) == [500] and ddpm.timesteps(3) == [666, 333, 0]
    assert ddpm.timesteps(1000) == list(range(999, -1, -1))
    assert ddpm.sigmas(1)[0].item() == pytest.approx(float(ddpm.train_sigmas[500]), rel=1e-6)
    assert ddpm.sigmas(1)[-1].item() == 0.0 and len(ddpm.sigmas(7)) == 8
    assert float(ddpm.train_sigmas[500]) == pytest.approx(3.4430, abs=1e-3)
    assert [nfe("euler", 3), nfe("heun", 3), nfe("heun", 1), nfe("euler_maruyama", 4),
            nfe("ddpm_ancestral", 10), nfe("ddim", 2)] == [3, 5, 1, 4, 10, 2]


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_nfe_counts_real_denoiser_calls(name):
    calls = []

    def denoise(x, sigma):
        calls.append(sigma)
        assert sigma.shape == (x.shape[0],)
        return torch.zeros_like(x)

    for n_steps in (1, 2, 5):
        calls.clear()
        out = SAMPLERS[name](denoise, torch.randn(3, 2), karras_sigmas(n_steps, 2e-3, 5.0, 7.0),
                             generator=torch.Generator().manual_seed(0))
        assert len(calls) == nfe(name, n_steps)
        assert torch.equal(out, torch.zeros(3, 2))  # the step to sigma = 0 returns D exactly


def test_ddim_is_euler_in_sigma_space():
    def denoise(x, sigma):
        return torch.tanh(x) * 0.5 / (1 + sigma[:, None])

    x, sigmas = torch.randn(64, 3), karras_sigmas(6, 2e-3, 5.0, 7.0)
    torch.testing.assert_close(sample_ddim(denoise, x, sigmas), sample_euler(denoise, x, sigmas))


def test_stochastic_samplers_are_seeded():
    def denoise(x, sigma):
        return 0.5 * x / (1 + sigma[:, None] ** 2)

    for name in ("euler_maruyama", "ddpm_ancestral"):
        x, sigmas = torch.randn(16, 3), karras_sigmas(8, 2e-3, 5.0, 7.0)
        a = SAMPLERS[name](denoise, x, sigmas, generator=torch.Generator().manual_seed(3))
        b = SAMPLERS[name](denoise, x, sigmas, generator=torch.Generator().manual_seed(3))
        c = SAMPLERS[name](denoise, x, sigmas, generator=torch.Generator().manual_seed(4))
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_initial_noise_scales():
    edm = EDM()
    x = edm.initial_noise((50_000,), n_steps=3, generator=torch.Generator().manual_seed(0))
    assert float(x.std()) == pytest.approx(1.0, abs=0.02)
    x = EDM(EDMConfig(init_noise_scale=5.0)).initial_noise((50_000,), n_steps=3)
    assert float(x.std()) == pytest.approx(5.0, rel=0.02)
    ddpm = DDPM()
    for n_steps, t in ((1, 500), (3, 666)):  # x_T = x~ sqrt(alpha_bar_T) is unit-variance noise
        x = ddpm.initial_noise((50_000,), n_steps=n_steps, generator=torch.Generator().manual_seed(1))
        assert float(x.std() * ddpm.alphas_cumprod[t].sqrt()) == pytest.approx(1.0, abs=0.02)


# ------------------------------------------------------------------------------ quantisation


def test_quantize_8bit_floors_like_byte_and_is_idempotent():
    levels = torch.arange(256, dtype=torch.float32) / 127.5 - 1
    assert torch.equal(quantize_8bit(levels), levels)
    assert torch.equal(quantize_8bit(quantize_8bit(levels)), levels)
    x = torch.tensor([-3.0, -1.0, (10.7 / 255) * 2 - 1, 0.0, 0.999, 2.0])
    want = torch.tensor([0.0, 0.0, 10.0, 127.0, 254.0, 255.0]) / 127.5 - 1  # floor, like .byte()
    torch.testing.assert_close(quantize_8bit(x), want)


# ----------------------------------------------------------------------------------- losses


class TinyNet(nn.Module):
    """1x1 conv plus a noise-level bias: enough to check shapes and gradient flow."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)
        self.noise = nn.Linear(1, channels)

    def forward(self, x_in, noise_in, cond):
        return self.conv(x_in + cond) + self.noise(noise_in[:, None])[:, :, None, None]


@pytest.mark.parametrize("name", sorted(PARADIGMS))
@pytest.mark.parametrize("quantize", [True, False])
def test_training_loss_shapes_gradients_and_estimate(name, quantize):
    torch.manual_seed(0)
    net = TinyNet()
    paradigm = build_paradigm(name, quantize=quantize)
    x0 = torch.rand(6, 3, 8, 8) * 2 - 1
    cond = torch.zeros(6, 3, 8, 8)
    loss, denoised = paradigm.training_loss(net, x0, cond, generator=torch.Generator().manual_seed(1))
    assert loss.shape == (6,) and torch.isfinite(loss).all()
    loss.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert denoised.shape == x0.shape and not denoised.requires_grad
    assert denoised.min() >= -1 and denoised.max() <= 1
    assert on_8bit_grid(denoised) == quantize


class Recorder:
    """Returns zeros and records what the paradigm fed the network."""

    def __init__(self):
        self.calls = []

    def __call__(self, x_in, noise_in, cond):
        self.calls.append((x_in, noise_in, cond))
        return torch.zeros_like(x_in)


def test_edm_loss_matches_eq7_with_offset_noise():
    cfg = EDMConfig()
    x0 = torch.rand(5, 3, 4, 4) * 2 - 1
    net = Recorder()
    loss, denoised = EDM(cfg).training_loss(net, x0, "ctx", generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)  # same draws, same order: sigma, offset [B,C,1,1], noise
    sigma = (-0.4 + 1.2 * torch.randn(5, generator=g)).exp().clamp(2e-3, 20.0)
    offset = 0.3 * torch.randn(5, 3, 1, 1, generator=g)
    x_noisy = x0 + offset + sigma.view(-1, 1, 1, 1) * torch.randn(5, 3, 4, 4, generator=g)
    s = (sigma**2 + 0.09).sqrt().view(-1, 1, 1, 1)
    x_in, noise_in, cond = net.calls[0]
    assert cond == "ctx"
    torch.testing.assert_close(x_in, x_noisy / (s**2 + 0.25).sqrt())
    torch.testing.assert_close(noise_in, s.flatten().log() / 4)
    skip, out = 0.25 / (0.25 + s**2), s * 0.5 / (s**2 + 0.25).sqrt()
    torch.testing.assert_close(loss, ((x0 - skip * x_noisy) / out).pow(2).mean(dim=(1, 2, 3)))
    torch.testing.assert_close(denoised, quantize_8bit(skip * x_noisy))


def test_ddpm_loss_is_eps_prediction_with_offset_noise():
    ddpm = DDPM()
    x0 = torch.rand(5, 3, 4, 4) * 2 - 1
    net = Recorder()
    loss, denoised = ddpm.training_loss(net, x0, None, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)  # same draws, same order: t, noise, offset
    t = torch.randint(0, 1000, (5,), generator=g)
    noise = torch.randn(5, 3, 4, 4, generator=g) + 0.3 * torch.randn(5, 3, 1, 1, generator=g)
    ab = ddpm.alphas_cumprod[t].float().view(-1, 1, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    x_in, noise_in, _ = net.calls[0]
    torch.testing.assert_close(x_in, x_t)
    torch.testing.assert_close(noise_in, (t + 1).float() / 1000)
    torch.testing.assert_close(loss, noise.pow(2).mean(dim=(1, 2, 3)))
    torch.testing.assert_close(denoised, quantize_8bit(x_t / ab.sqrt()))


def test_denoise_quantises_and_passes_ddpm_inputs():
    x = torch.randn(4, 3, 8, 8) * 3
    edm_out = EDM().denoise(Recorder(), x, torch.full((4,), 2.0), None)
    assert on_8bit_grid(edm_out) and edm_out.abs().max() <= 1
    ddpm, net = DDPM(DDPMConfig(quantize_each_step=True)), Recorder()  # default: clipped (tests/test_ddpm_vs_edm_suite.py)
    sigma = ddpm.sigmas(3)[0]
    ddpm_out = ddpm.denoise(net, x, sigma.expand(4), None)
    torch.testing.assert_close(net.calls[0][0], x * ddpm.alphas_cumprod[666].sqrt().float())
    torch.testing.assert_close(net.calls[0][1], torch.full((4,), 667 / 1000))
    torch.testing.assert_close(ddpm_out, quantize_8bit(x))  # eps = 0 -> D = x~


# ------------------------------------------------------------------------------------ errors


def test_clear_errors():
    with pytest.raises(ValueError, match="valid paradigms: \\['ddpm', 'edm'\\]"):
        build_paradigm("ddim")
    with pytest.raises(ValueError, match="Unknown EDMConfig field"):
        build_paradigm("edm", num_train_timesteps=10)
    with pytest.raises(ValueError, match="valid samplers"):
        get_sampler("dpm++")
    with pytest.raises(ValueError, match="valid samplers"):
        nfe("dpm++", 3)
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="n_steps must be an integer >= 1"):
            nfe("euler", bad)
        with pytest.raises(ValueError, match="n_steps must be an integer >= 1"):
            EDM().sigmas(bad)
        with pytest.raises(ValueError, match="n_steps must be an integer >= 1"):
            DDPM().sigmas(bad)
    with pytest.raises(ValueError, match="n_steps must be <= num_train_timesteps"):
        DDPM().sigmas(1001)
    with pytest.raises(ValueError, match="not available with paradigm 'edm'"):
        EDM().check_sampler("ddim")
    with pytest.raises(ValueError, match="not available with paradigm 'ddpm'"):
        DDPM().check_sampler("heun")
    EDM().check_sampler("euler_maruyama")
    with pytest.raises(ValueError, match="not train timestep sigmas"):
        DDPM().denoise(Recorder(), torch.zeros(2, 3, 4, 4), torch.full((2,), 1.2345), None)
    with pytest.raises(ValueError, match="sigma must have shape"):
        EDM().denoise(Recorder(), torch.zeros(2, 3, 4, 4), torch.ones(3), None)
    with pytest.raises(ValueError, match="0 < sigma_min < sigma_max"):
        EDMConfig(sigma_min=10.0)
    with pytest.raises(ValueError, match="single_step_start_t"):
        DDPMConfig(single_step_start_t=1000)


@pytest.mark.parametrize("sigmas, fragment", [
    (torch.tensor([5.0, 1.0]), "end with exactly 0"),
    (torch.tensor([1.0, 5.0, 0.0]), "strictly decreasing"),
    (torch.tensor([5.0, float("nan"), 0.0]), "finite"),
    (torch.tensor([[5.0, 0.0]]), "1-D tensor"),
    (torch.tensor([0.0]), "1-D tensor"),
])
def test_malformed_sigmas_are_rejected(sigmas, fragment):
    with pytest.raises(ValueError, match=fragment):
        sample_euler(lambda x, s: x, torch.zeros(2, 1), sigmas)
