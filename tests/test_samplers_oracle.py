"""Samplers driven by exact (closed-form) denoisers must reproduce the data distribution.

For Gaussian data N(mu, s^2) the posterior mean is D(x, sigma) = mu + s^2/(s^2+sigma^2)(x - mu)
and the probability-flow ODE is linear: x(sigma) - mu = sqrt(s^2+sigma^2)/sqrt(s^2+sigma_max^2)
* (x(sigma_max) - mu), so each ODE sampler's per-sample error is known exactly (no Monte Carlo).
"""

import math

import pytest
import torch

from diamond.models.diffusion import (
    EDM,
    SAMPLERS,
    EDMConfig,
    build_paradigm,
    karras_sigmas,
    sample_euler,
    sample_euler_maruyama,
    sample_heun,
)
from diamond.models.diffusion.paradigms import c_out, c_skip, per_sample

torch.set_num_threads(1)

MU, S = 0.2, 0.3
SIGMA_MAX = 80.0
N = 50_000
MIX_W, MIX_M, MIX_S = (0.3, 0.7), (-0.5, 0.5), 0.15
MIX_MEAN = sum(w * m for w, m in zip(MIX_W, MIX_M))
MIX_VAR = MIX_S**2 + sum(w * m**2 for w, m in zip(MIX_W, MIX_M)) - MIX_MEAN**2


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Exact E[x0 | x] for x0 ~ N(MU, S^2), x = x0 + sigma n."""
    sigma = per_sample(sigma, x)
    return MU + S**2 / (S**2 + sigma**2) * (x - MU)


def mixture_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Exact E[x0 | x] for a two-mode 1-D mixture: responsibility-weighted per-mode posterior means."""
    sigma = per_sample(sigma, x)
    means = torch.tensor(MIX_M, dtype=x.dtype)
    var = MIX_S**2 + sigma**2
    log_p = torch.log(torch.tensor(MIX_W, dtype=x.dtype)) - 0.5 * torch.log(var) - (x - means) ** 2 / (2 * var)
    resp = torch.softmax(log_p, dim=-1)
    post = means + MIX_S**2 / var * (x - means)
    return (resp * post).sum(dim=-1, keepdim=True)


def prior(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return SIGMA_MAX * torch.randn(n, 1, generator=g, dtype=torch.float64)


def exact_flow(x_t: torch.Tensor) -> torch.Tensor:
    return MU + S / math.sqrt(S**2 + SIGMA_MAX**2) * (x_t - MU)


def grid(n_steps: int) -> torch.Tensor:
    return karras_sigmas(n_steps, 2e-3, SIGMA_MAX, 7.0)


def assert_moments(x: torch.Tensor, mean: float, var: float, rel_var: float = 0.03) -> None:
    assert abs(x.mean().item() - mean) < 0.01, (x.mean().item(), mean)
    assert abs(x.var().item() / var - 1) < rel_var, (x.var().item(), var)


@pytest.mark.parametrize("sampler, n_steps", [(sample_euler, 200), (sample_heun, 100)])
def test_ode_samplers_reproduce_gaussian(sampler, n_steps):
    x_t = prior(N, seed=0)
    out = sampler(gaussian_denoiser, x_t, grid(n_steps))
    assert_moments(out, MU, S**2)
    assert (out - exact_flow(x_t)).abs().mean().item() < 0.005


@pytest.mark.parametrize("sampler, n_steps", [(sample_euler, 200), (sample_heun, 100),
                                              (sample_euler_maruyama, 400)])
def test_samplers_reproduce_two_mode_mixture(sampler, n_steps):
    out = sampler(mixture_denoiser, prior(20_000, seed=1), grid(n_steps), generator=torch.Generator().manual_seed(2))
    assert_moments(out, MIX_MEAN, MIX_VAR)
    assert abs((out > 0).double().mean().item() - MIX_W[1]) < 0.01  # mode weights kept


def test_heun_beats_euler_at_equal_nfe_and_has_second_order():
    """Per-sample errors against the exact flow are deterministic: Heun is 2nd order, Euler 1st."""
    x_t = prior(4_000, seed=3)
    exact = exact_flow(x_t)

    def err(sampler, n_steps):
        return (sampler(gaussian_denoiser, x_t, grid(n_steps)) - exact).abs().mean().item()

    euler_50, euler_100 = err(sample_euler, 50), err(sample_euler, 100)
    heun_25, heun_50 = err(sample_heun, 25), err(sample_heun, 50)
    assert heun_25 < 0.6 * euler_50  # NFE 49 vs 50
    assert heun_50 < 0.3 * euler_100  # NFE 99 vs 100
    assert 1.7 < euler_50 / euler_100 < 2.3  # halving the step halves Euler's error
    assert heun_25 / heun_50 > 3.5  # and quarters Heun's


def test_heun_beats_euler_on_mixture_against_fine_reference():
    x_t = prior(4_000, seed=4)
    reference = sample_heun(mixture_denoiser, x_t, grid(400))
    euler = (sample_euler(mixture_denoiser, x_t, grid(50)) - reference).abs().mean().item()
    heun = (sample_heun(mixture_denoiser, x_t, grid(25)) - reference).abs().mean().item()
    assert heun < 0.6 * euler


def test_euler_maruyama_converges_as_steps_grow():
    x_t = prior(N, seed=5)
    var_error = []
    for n_steps in (25, 100, 400):
        out = sample_euler_maruyama(gaussian_denoiser, x_t, grid(n_steps), generator=torch.Generator().manual_seed(6))
        var_error.append(abs(out.var().item() / S**2 - 1))
        assert abs(out.mean().item() - MU) < 0.01
    assert var_error[0] > var_error[1] > var_error[2]
    assert var_error[2] < 0.03


def test_edm_paradigm_end_to_end_with_oracle_network():
    """An inner network F that makes Eq. 6 the exact denoiser: sampling via EDM's own grid and noise."""
    edm = EDM(EDMConfig(sigma_offset_noise=0.0, quantize=False, sigma_max=SIGMA_MAX, init_noise_scale=SIGMA_MAX))
    seen = []

    def net(x_in, noise_in, cond):
        seen.append(cond)
        sigma = (4 * noise_in).exp()  # invert Eq. 11
        x = x_in * (sigma**2 + 0.25).sqrt().view(-1, 1, 1, 1)  # invert Eq. 9
        d = gaussian_denoiser(x.flatten(1), sigma).view_as(x)
        return (d - c_skip(sigma, 0.5).view(-1, 1, 1, 1) * x) / c_out(sigma, 0.5).view(-1, 1, 1, 1)

    x = edm.initial_noise((20_000, 1, 1, 1), n_steps=60, generator=torch.Generator().manual_seed(7))
    out = sample_heun(lambda x_, s_: edm.denoise(net, x_, s_, "history"), x, edm.sigmas(60))
    assert_moments(out, MU, S**2)
    assert set(seen) == {"history"}  # cond reaches the network untouched


def ddpm_eps_oracle(ddpm):
    """Exact E[eps | x_t] for x0 ~ N(MU, S^2), x_t = sqrt(ab) x0 + sqrt(1-ab) eps, in DDPM's own inputs."""
    steps = ddpm.cfg.num_train_timesteps

    def net(x_t, noise_in, cond):
        t = torch.round(noise_in * steps - 1).long()  # c_noise = (t + 1) / T
        ab = ddpm.alphas_cumprod[t].to(x_t.dtype).view(-1, 1, 1, 1)
        return (1 - ab).sqrt() * (x_t - ab.sqrt() * MU) / (ab * S**2 + 1 - ab)

    return net


@pytest.mark.parametrize("sampler", ["ddpm_ancestral", "ddim"])
def test_ddpm_samplers_reproduce_gaussian(sampler):
    """Full 1000-step grid. Fixed-variance (beta~) ancestral steps ignore Var(x0 | x_t), which makes
    DDPM under-disperse by ~2 % here even with an exact eps; coarse grids lose more (~9 % at 250)."""
    n_steps = 1000
    ddpm = build_paradigm("ddpm", offset_noise=0.0, quantize=False)
    ddpm.check_sampler(sampler)
    net = ddpm_eps_oracle(ddpm)
    gen = torch.Generator().manual_seed(8)
    x = ddpm.initial_noise((20_000, 1, 1, 1), n_steps=n_steps, generator=gen)
    out = SAMPLERS[sampler](lambda x_, s_: ddpm.denoise(net, x_, s_, None), x, ddpm.sigmas(n_steps), generator=gen)
    assert_moments(out, MU, S**2, rel_var=0.05)


def test_ddpm_sigma_space_steps_equal_vp_space_steps():
    """Ancestral and DDIM in sigma-space equal the textbook VP updates on a respaced grid."""
    ddpm = build_paradigm("ddpm", offset_noise=0.0, quantize=False)
    net = ddpm_eps_oracle(ddpm)
    ab = ddpm.alphas_cumprod
    steps = ddpm.timesteps(10)
    x_vp = torch.randn(500, 1, 1, 1, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    x_sigma = x_vp / ab[steps[0]].sqrt()
    for name, stochastic in (("ddpm_ancestral", True), ("ddim", False)):
        gen = torch.Generator().manual_seed(10)
        got = SAMPLERS[name](lambda x_, s_: ddpm.denoise(net, x_, s_, None), x_sigma, ddpm.sigmas(10), generator=gen)
        gen = torch.Generator().manual_seed(10)
        x = x_vp
        for t, t_prev in zip(steps, steps[1:] + [-1]):
            a_t = ab[t]
            a_prev = ab[t_prev] if t_prev >= 0 else torch.tensor(1.0, dtype=torch.float64)
            eps = net(x, torch.full((x.shape[0],), (t + 1) / 1000, dtype=x.dtype), None)
            x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
            if not stochastic:  # Song et al. DDIM, eta = 0
                x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
                continue
            # Ho et al. posterior mean and variance beta~ (diffusers "fixed_small"), none at t = 0
            beta = 1 - a_t / a_prev
            x = a_prev.sqrt() * beta / (1 - a_t) * x0 + (1 - beta).sqrt() * (1 - a_prev) / (1 - a_t) * x
            if t_prev >= 0:
                x = x + ((1 - a_prev) / (1 - a_t) * beta).sqrt() * torch.randn(x.shape, generator=gen, dtype=x.dtype)
        torch.testing.assert_close(got, x, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------- stochastic samplers that are stable at small n
# On the paper's grid (EDM.sigmas: sigma 5 -> 2e-3, rho 7) every sampler is an affine map of Gaussian inputs when
# D is exact, so the output moments have a closed form: the oracle below propagates (mean, variance) step by step,
# written from the papers' update rules (Karras et al. 2022 Alg. 2; k-diffusion's ancestral step), not from the code.

PAPER_EDM = EDM(EDMConfig())
STD_DATA = 0.5  # the test data N(MU, STD_DATA^2) at EDM's sigma_data


def _shrink(sigma: float) -> float:
    return STD_DATA**2 / (STD_DATA**2 + sigma**2)


def closed_form_moments(sampler: str, sigmas: list[float], mean: float, var: float,
                        **opt: float) -> tuple[float, float]:
    """(mean, variance) of the output for x ~ N(mean, var) at sigmas[0], exact denoiser of N(MU, STD_DATA^2)."""
    y, v, n = mean - MU, var, len(sigmas) - 1
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        if sampler == "heun_churn":
            gamma = min(opt["s_churn"] / n, math.sqrt(2) - 1) if opt["s_tmin"] <= s <= opt["s_tmax"] else 0.0
            s_hat = s * (1 + gamma)
            v += opt["s_noise"] ** 2 * (s_hat**2 - s**2)
            if s_next == 0.0:
                return MU + _shrink(s_hat) * y, _shrink(s_hat) ** 2 * v
            h, a1, a2 = s_next - s_hat, (1 - _shrink(s_hat)) / s_hat, (1 - _shrink(s_next)) / s_next
            gain, noise = 1 + h / 2 * (a1 + a2 * (1 + a1 * h)), 0.0
        else:  # euler_ancestral
            if s_next == 0.0:
                return MU + _shrink(s) * y, _shrink(s) ** 2 * v
            up = min(s_next, opt["eta"] * s_next * math.sqrt(1 - s_next**2 / s**2))
            down = math.sqrt(s_next**2 - up**2)
            gain, noise = 1 + (1 - _shrink(s)) / s * (down - s), up**2
        y, v = gain * y, gain**2 * v + noise
    raise AssertionError("grids end in 0")


def gaussian_oracle(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    sigma = per_sample(sigma, x)
    return MU + STD_DATA**2 / (STD_DATA**2 + sigma**2) * (x - MU)


STOCHASTIC = {"heun_churn": PAPER_EDM.sampler_kwargs("heun_churn"),
              "euler_ancestral": PAPER_EDM.sampler_kwargs("euler_ancestral")}


@pytest.mark.parametrize("sampler", sorted(STOCHASTIC))
@pytest.mark.parametrize("start", ["unit", "marginal"])
@pytest.mark.parametrize("n_steps", [3, 10])
def test_stochastic_samplers_match_closed_form_on_paper_grid(sampler, start, n_steps):
    """Mean within 0.01 and variance within 2 % (5 Monte Carlo standard errors at 2e5 draws) of the closed form,
    from the released code's unit noise and from the exact marginal at sigma_max."""
    sigmas = PAPER_EDM.sigmas(n_steps).double()
    std_in = 1.0 if start == "unit" else math.sqrt(STD_DATA**2 + float(sigmas[0]) ** 2)
    mean_in = 0.0 if start == "unit" else MU
    gen = torch.Generator().manual_seed(11)
    x = mean_in + std_in * torch.randn(200_000, 1, generator=gen, dtype=torch.float64)
    out = SAMPLERS[sampler](gaussian_oracle, x, sigmas, generator=gen, **STOCHASTIC[sampler])
    mean, var = closed_form_moments(sampler, sigmas.tolist(), mean_in, std_in**2, **STOCHASTIC[sampler])
    assert abs(out.mean().item() - mean) < 0.01, (out.mean().item(), mean)
    assert abs(out.var().item() / var - 1) < 0.02, (out.var().item(), var)


def test_stochastic_samplers_stated_accuracy_on_paper_grid():
    """What the closed form says on the paper grid from the exact marginal (data variance = 1):
    Euler-ancestral never over-disperses and under-disperses less as n grows (0.19 at n = 3, 0.51 at n = 10);
    Karras churn inherits Heun's overshoot at n = 3 (about 20x) and is within 35 % at n = 10."""
    def var_ratio(sampler, n):
        sigmas = PAPER_EDM.sigmas(n).double().tolist()
        _, var = closed_form_moments(sampler, sigmas, MU, STD_DATA**2 + sigmas[0] ** 2, **STOCHASTIC[sampler])
        return var / STD_DATA**2

    ancestral = [var_ratio("euler_ancestral", n) for n in (3, 10, 30)]
    assert 0.15 < ancestral[0] < 0.25 and 0.45 < ancestral[1] < 0.55 and ancestral[0] < ancestral[1] < ancestral[2] < 1
    assert 15 < var_ratio("heun_churn", 3) < 25 and abs(var_ratio("heun_churn", 10) - 1) < 0.35


@pytest.mark.parametrize("sampler, steps", [("heun_churn", (10, 40, 160)), ("euler_ancestral", (50, 200, 800))])
def test_stochastic_samplers_converge_as_steps_grow(sampler, steps):
    x_t = prior(N, seed=12)
    var_error = []
    for n_steps in steps:
        out = SAMPLERS[sampler](gaussian_denoiser, x_t, grid(n_steps), generator=torch.Generator().manual_seed(13),
                                **STOCHASTIC[sampler])
        var_error.append(abs(out.var().item() / S**2 - 1))
        assert abs(out.mean().item() - MU) < 0.01
    assert var_error[0] > var_error[1] > var_error[2]
    assert var_error[2] < 0.03


def test_stochastic_samplers_reduce_to_their_deterministic_twins():
    """heun_churn without churn is Heun; Euler-ancestral is Euler at eta = 0 and DDPM's ancestral step at eta = 1."""
    x, sigmas = prior(2_000, seed=14), grid(7)

    def run(name, **opt):
        return SAMPLERS[name](mixture_denoiser, x, sigmas, generator=torch.Generator().manual_seed(15), **opt)

    torch.testing.assert_close(run("heun_churn", s_churn=0.0), run("heun"))
    torch.testing.assert_close(run("euler_ancestral", eta=0.0), run("euler"))
    torch.testing.assert_close(run("euler_ancestral", eta=1.0), run("ddpm_ancestral"))
    assert not torch.equal(run("heun_churn"), run("heun"))


def test_euler_maruyama_blows_up_at_small_n_on_paper_grid():
    """The reason the sampler ablation no longer uses literal EM: from the exact marginal at n = 3 its output
    variance is tens of times the data's, where Euler-ancestral stays below it."""
    sigmas = PAPER_EDM.sigmas(3).double()
    gen = torch.Generator().manual_seed(16)
    x = MU + math.sqrt(STD_DATA**2 + 25.0) * torch.randn(100_000, 1, generator=gen, dtype=torch.float64)
    em = sample_euler_maruyama(gaussian_oracle, x, sigmas, generator=gen).var().item() / STD_DATA**2
    ancestral = SAMPLERS["euler_ancestral"](gaussian_oracle, x, sigmas, generator=gen).var().item() / STD_DATA**2
    assert em > 20 and ancestral < 1


def test_stochastic_samplers_are_chosen_and_tuned_by_config():
    """diffusion.sampler picks them; their settings are config fields of the EDM paradigm, checked at build time."""
    from dataclasses import asdict

    from diamond.loop.config import ConfigError, build_config
    from diamond.models.diffusion.samplers import nfe

    cfg = build_config("smoke", ["diffusion.sampler=heun_churn", "diffusion.edm.s_churn=10", "diffusion.edm.eta=0.5"])
    edm = build_paradigm("edm", **asdict(cfg.diffusion.edm))
    assert edm.sampler_kwargs("heun_churn") == {"s_churn": 10.0, "s_tmin": 0.05, "s_tmax": 50.0, "s_noise": 1.003}
    assert edm.sampler_kwargs("euler_ancestral") == {"eta": 0.5} and edm.sampler_kwargs("euler") == {}
    assert nfe("heun_churn", 3) == 5 and nfe("euler_ancestral", 3) == 3
    with pytest.raises(ConfigError, match=r"'diffusion.edm.s_churn' must be a number in \[0, "):
        build_config("smoke", ["diffusion.edm.s_churn=-1"])
    with pytest.raises(ConfigError, match="does not apply to paradigm 'ddpm'"):
        build_config("smoke", ["diffusion.paradigm=ddpm", "diffusion.sampler=euler_ancestral"])
