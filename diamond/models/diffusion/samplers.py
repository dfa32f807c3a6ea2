"""Samplers of the reverse diffusion process, all in sigma-space (paper App. A).

Every sampler works on the variance-exploding form x = x0 + sigma * n, so EDM and DDPM (wrapped
into sigma-space by its paradigm) share one signature, as in k-diffusion:

    sampler(denoise, x, sigmas, *, generator=None, **options) -> x0 sample

`denoise(x, sigma[B])` returns the denoised estimate D(x; sigma); `x` is the initial noisy sample
at `sigmas[0]`; `sigmas` is a decreasing grid ending in 0. The final step to sigma = 0 is always
x = D(x; sigma_last) exactly (the limit of every scheme below), so an 8-bit quantised denoiser
yields exactly quantised frames. Keyword `options` (churn, eta) have defaults; `sampler_kwargs` picks
a sampler's own options out of one config record.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

DenoiseFn = Callable[[Tensor, Tensor], Tensor]
Sampler = Callable[..., Tensor]


def karras_sigmas(n_steps: int, sigma_min: float, sigma_max: float, rho: float) -> Tensor:
    """Karras et al. (2022, Eq. 5) rho-schedule of n_steps levels, then a final 0.

    With one step the grid is [sigma_max, 0] (the released code's choice).
    """
    check_n_steps(n_steps)
    if not 0.0 < sigma_min < sigma_max:
        raise ValueError(f"Karras grid needs 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, "
                         f"sigma_max={sigma_max}.")
    if rho <= 0:
        raise ValueError(f"Karras grid needs rho > 0, got rho={rho}.")
    ramp = torch.linspace(0.0, 1.0, n_steps, dtype=torch.float64)
    inv_max, inv_min = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    sigmas = (inv_max + ramp * (inv_min - inv_max)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(torch.get_default_dtype())


def check_n_steps(n_steps: int) -> None:
    """Reject a number of denoising steps below 1 with one clear sentence."""
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be an integer >= 1, got {n_steps!r}.")


def check_sigmas(sigmas: Tensor) -> list[float]:
    """Validate a sampling grid (1-D, finite, strictly decreasing, positive, final 0); return it as floats."""
    if not isinstance(sigmas, Tensor) or sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError("sigmas must be a 1-D tensor of length n_steps + 1 >= 2, "
                         f"got {sigmas if not isinstance(sigmas, Tensor) else tuple(sigmas.shape)}.")
    values = [float(s) for s in sigmas.detach().cpu().tolist()]
    if not all(math.isfinite(s) for s in values):
        raise ValueError(f"sigmas must be finite, got {values}.")
    if values[-1] != 0.0 or min(values[:-1]) <= 0.0:
        raise ValueError(f"sigmas must be positive and end with exactly 0, got {values}.")
    if any(a <= b for a, b in zip(values[:-1], values[1:])):
        raise ValueError(f"sigmas must be strictly decreasing, got {values}.")
    return values


def _denoise_at(denoise: DenoiseFn, x: Tensor, sigma: float) -> Tensor:
    """Call the denoiser with a per-sample noise level tensor, as every paradigm expects."""
    return denoise(x, x.new_full((x.shape[0],), sigma))


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def sample_euler(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *,
                 generator: torch.Generator | None = None) -> Tensor:
    """Euler on the probability-flow ODE dx/dsigma = (x - D) / sigma (paper's default, 1 NFE/step).

    `generator` is unused (deterministic) and accepted for the shared signature.
    """
    grid = check_sigmas(sigmas)
    for sigma, sigma_next in zip(grid[:-1], grid[1:]):
        denoised = _denoise_at(denoise, x, sigma)
        if sigma_next == 0.0:
            return denoised
        x = x + (x - denoised) / sigma * (sigma_next - sigma)
    return x


def sample_heun(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *,
                generator: torch.Generator | None = None) -> Tensor:
    """Heun (2nd order, Karras et al. 2022 Alg. 1); the step to sigma = 0 is a plain Euler step.

    `generator` is unused (deterministic) and accepted for the shared signature.
    """
    grid = check_sigmas(sigmas)
    for sigma, sigma_next in zip(grid[:-1], grid[1:]):
        denoised = _denoise_at(denoise, x, sigma)
        if sigma_next == 0.0:
            return denoised
        x = _heun_step(denoise, x, denoised, sigma, sigma_next)
    return x


def _heun_step(denoise: DenoiseFn, x: Tensor, denoised: Tensor, sigma: float, sigma_next: float) -> Tensor:
    """One Heun step from sigma to sigma_next > 0 (Karras et al. 2022 Alg. 1, lines 5-8), given D(x; sigma):
    an Euler step, then the average of the slopes at both ends."""
    d = (x - denoised) / sigma
    x_euler = x + d * (sigma_next - sigma)
    d_next = (x_euler - _denoise_at(denoise, x_euler, sigma_next)) / sigma_next
    return x + (d + d_next) / 2 * (sigma_next - sigma)


def sample_euler_maruyama(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *,
                          generator: torch.Generator | None = None) -> Tensor:
    """Euler–Maruyama on the reverse SDE of EDM (f = 0, sigma(tau) = tau, g^2 = 2 sigma).

    Eq. 2 with score (D - x) / sigma^2 reads, running sigma downwards (dsigma = s' - s < 0),
        x' = x + 2 (x - D) / s * (s' - s) + sqrt(2 s (s - s')) * z,   z ~ N(0, I).
    One step keeps the variance of a point-mass marginal at s'^2 to first order. The last step
    (to sigma = 0, where the noise term would not vanish) returns D, as k-diffusion does.

    Literal EM converges as n grows (it is the SDE's first-order scheme), but it blows up at small n on
    the paper's grid (sigma 5 -> 2e-3, rho 7): at n = 3 the first step injects variance 2 s (s - s') ~ 47,
    and with the exact denoiser of Gaussian data the output variance is tens of times the data's
    (evaluation/exact_denoiser.py measures it). `euler_ancestral` stays below the data variance at every n;
    `heun_churn` is as stable as Heun on the grid (within 3x of the data from n = 5 on the paper grid).
    """
    grid = check_sigmas(sigmas)
    for sigma, sigma_next in zip(grid[:-1], grid[1:]):
        denoised = _denoise_at(denoise, x, sigma)
        if sigma_next == 0.0:
            return denoised
        drift = 2.0 * (x - denoised) / sigma * (sigma_next - sigma)
        x = x + drift + math.sqrt(2.0 * sigma * (sigma - sigma_next)) * _randn_like(x, generator)
    return x


# Karras et al. (2022) on ImageNet-64 (their released EDM model's sampling example): churn on sigma in [0.05, 50];
# S_churn / n reaches the sqrt(2) - 1 cap for every n <= 96
KARRAS_CHURN = {"s_churn": 40.0, "s_tmin": 0.05, "s_tmax": 50.0, "s_noise": 1.003}


def churn_gamma(sigma: float, n_steps: int, s_churn: float, s_tmin: float, s_tmax: float) -> float:
    """Karras et al. (2022) Alg. 2, line 4: gamma_i = min(S_churn / N, sqrt(2) - 1) inside [S_tmin, S_tmax]."""
    return min(s_churn / n_steps, math.sqrt(2.0) - 1.0) if s_tmin <= sigma <= s_tmax else 0.0


def sample_heun_churn(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
                      s_churn: float = KARRAS_CHURN["s_churn"], s_tmin: float = KARRAS_CHURN["s_tmin"],
                      s_tmax: float = KARRAS_CHURN["s_tmax"], s_noise: float = KARRAS_CHURN["s_noise"]) -> Tensor:
    """Karras et al. (2022) Alg. 2, the stochastic sampler (the released code's `s_churn` option, with Heun).

    Each step first raises the noise level to s_hat = s (1 + gamma) by adding fresh noise of variance
    s_hat^2 - s^2 (times s_noise^2), which keeps the marginal exact, then takes a Heun step from s_hat
    to s'. Unlike Euler–Maruyama its noise never exceeds what the marginal allows, but it inherits
    Heun's overshoot on a coarse grid: with the exact denoiser on the paper grid its variance is 10-20x
    the data's at n = 3 (Heun alone: 0.5-12x), 2-2.8x at n = 5, 1.3x at n = 10. The step to sigma = 0
    returns D(x_hat; s_hat). NFE 2n - 1, as Heun.
    """
    grid = check_sigmas(sigmas)
    n_steps = len(grid) - 1
    for sigma, sigma_next in zip(grid[:-1], grid[1:]):
        gamma = churn_gamma(sigma, n_steps, s_churn, s_tmin, s_tmax)
        sigma_hat = sigma * (1.0 + gamma)
        if gamma > 0.0:
            x = x + s_noise * math.sqrt(sigma_hat**2 - sigma**2) * _randn_like(x, generator)
        denoised = _denoise_at(denoise, x, sigma_hat)
        if sigma_next == 0.0:
            return denoised
        x = _heun_step(denoise, x, denoised, sigma_hat, sigma_next)
    return x


def ancestral_step(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """(sigma_down, sigma_up) of k-diffusion's `get_ancestral_step`: a deterministic step down to
    sigma_down, then fresh noise of std sigma_up, with sigma_down^2 + sigma_up^2 = sigma_next^2."""
    sigma_up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    return math.sqrt(sigma_next**2 - sigma_up**2), sigma_up


def sample_euler_ancestral(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *,
                           generator: torch.Generator | None = None, eta: float = 1.0) -> Tensor:
    """Euler-ancestral (k-diffusion's `sample_euler_ancestral`): an Euler step to sigma_down, then noise
    of std sigma_up (see `ancestral_step`). eta = 0 is Euler; eta = 1 is exactly DDPM's ancestral step
    in sigma-space (sigma_down = s'^2 / s). The step to sigma = 0 returns D. 1 NFE per step.
    """
    grid = check_sigmas(sigmas)
    for sigma, sigma_next in zip(grid[:-1], grid[1:]):
        denoised = _denoise_at(denoise, x, sigma)
        if sigma_next == 0.0:
            return denoised
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        x = x + (x - denoised) / sigma * (sigma_down - sigma)
        if sigma_up > 0.0:
            x = x + sigma_up * _randn_like(x, generator)
    return x


def sample_ddpm_ancestral(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *,
                          generator: torch.Generator | None = None) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, posterior q(x_s | x_t, x0) with variance beta~).

    In sigma-space the forward step from s' to s is x_s = x_s' + sqrt(s^2 - s'^2) n, so the
    posterior given x0 = D is N(D + (s'/s)^2 (x - D), s'^2 (s^2 - s'^2) / s^2): exactly the VP
    update divided by sqrt(alpha_bar_s'), i.e. the "fixed_small" DDPM step on a respaced grid.
    """
    grid = check_sigmas(sigmas)
    for sigma, sigma_next in zip(grid[:-1], grid[1:]):
        denoised = _denoise_at(denoise, x, sigma)
        if sigma_next == 0.0:
            return denoised
        ratio = (sigma_next / sigma) ** 2
        std = sigma_next * math.sqrt(1.0 - ratio)
        x = denoised + ratio * (x - denoised) + std * _randn_like(x, generator)
    return x


def sample_ddim(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *,
                generator: torch.Generator | None = None) -> Tensor:
    """Deterministic DDIM (eta = 0, Song et al. 2021): x_s = D + (s'/s)(x - D).

    This is x0 + sigma * eps_hat with eps_hat = (x - D)/sigma, i.e. DDIM's VP update divided by
    sqrt(alpha_bar); it coincides with Euler in sigma-space. `generator` is unused.
    """
    grid = check_sigmas(sigmas)
    for sigma, sigma_next in zip(grid[:-1], grid[1:]):
        denoised = _denoise_at(denoise, x, sigma)
        if sigma_next == 0.0:
            return denoised
        x = denoised + (sigma_next / sigma) * (x - denoised)
    return x


SAMPLERS: dict[str, Sampler] = {
    "euler": sample_euler,
    "heun": sample_heun,
    "euler_maruyama": sample_euler_maruyama,
    "heun_churn": sample_heun_churn,
    "euler_ancestral": sample_euler_ancestral,
    "ddpm_ancestral": sample_ddpm_ancestral,
    "ddim": sample_ddim,
}


def get_sampler(name: str) -> Sampler:
    """Look a sampler up by name; unknown names raise one sentence listing the valid ones."""
    if name not in SAMPLERS:
        raise ValueError(f"Unknown sampler {name!r}; valid samplers: {sorted(SAMPLERS)}.")
    return SAMPLERS[name]


def sampler_kwargs(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `options` that sampler `name` takes as keyword arguments (churn settings for
    heun_churn, eta for euler_ancestral, none for Euler): one options record serves every sampler."""
    params = inspect.signature(get_sampler(name)).parameters
    return {k: v for k, v in options.items() if k in params and params[k].kind is inspect.Parameter.KEYWORD_ONLY
            and k != "generator"}


def nfe(sampler: str, n_steps: int) -> int:
    """Exact number of network evaluations for n_steps on a grid ending in 0.

    Heun (with or without churn) evaluates twice per step except on the last step to sigma = 0: 2n - 1.
    """
    get_sampler(sampler)
    check_n_steps(n_steps)
    return 2 * n_steps - 1 if sampler in ("heun", "heun_churn") else n_steps
