"""Samplers of the reverse diffusion process, all in sigma-space (paper App. A).

Every sampler works on the variance-exploding form x = x0 + sigma * n, so EDM and DDPM (wrapped
into sigma-space by its paradigm) share one signature, as in k-diffusion:

    sampler(denoise, x, sigmas, *, generator=None) -> x0 sample

`denoise(x, sigma[B])` returns the denoised estimate D(x; sigma); `x` is the initial noisy sample
at `sigmas[0]`; `sigmas` is a decreasing grid ending in 0. The final step to sigma = 0 is always
x = D(x; sigma_last) exactly (the limit of every scheme below), so an 8-bit quantised denoiser
yields exactly quantised frames.
"""

from __future__ import annotations

import math
from typing import Callable

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
        d = (x - denoised) / sigma
        x_euler = x + d * (sigma_next - sigma)
        d_next = (x_euler - _denoise_at(denoise, x_euler, sigma_next)) / sigma_next
        x = x + (d + d_next) / 2 * (sigma_next - sigma)
    return x


def sample_euler_maruyama(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *,
                          generator: torch.Generator | None = None) -> Tensor:
    """Euler–Maruyama on the reverse SDE of EDM (f = 0, sigma(tau) = tau, g^2 = 2 sigma).

    Eq. 2 with score (D - x) / sigma^2 reads, running sigma downwards (dsigma = s' - s < 0),
        x' = x + 2 (x - D) / s * (s' - s) + sqrt(2 s (s - s')) * z,   z ~ N(0, I).
    One step keeps the variance of a point-mass marginal at s'^2 to first order. The last step
    (to sigma = 0, where the noise term would not vanish) returns D, as k-diffusion does.
    """
    grid = check_sigmas(sigmas)
    for sigma, sigma_next in zip(grid[:-1], grid[1:]):
        denoised = _denoise_at(denoise, x, sigma)
        if sigma_next == 0.0:
            return denoised
        drift = 2.0 * (x - denoised) / sigma * (sigma_next - sigma)
        x = x + drift + math.sqrt(2.0 * sigma * (sigma - sigma_next)) * _randn_like(x, generator)
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
    "ddpm_ancestral": sample_ddpm_ancestral,
    "ddim": sample_ddim,
}


def get_sampler(name: str) -> Sampler:
    """Look a sampler up by name; unknown names raise one sentence listing the valid ones."""
    if name not in SAMPLERS:
        raise ValueError(f"Unknown sampler {name!r}; valid samplers: {sorted(SAMPLERS)}.")
    return SAMPLERS[name]


def nfe(sampler: str, n_steps: int) -> int:
    """Exact number of network evaluations for n_steps on a grid ending in 0.

    Heun evaluates twice per step except on the last step to sigma = 0: 2n - 1.
    """
    get_sampler(sampler)
    check_n_steps(n_steps)
    return 2 * n_steps - 1 if sampler == "heun" else n_steps
