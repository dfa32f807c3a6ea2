"""Diffusion paradigms: EDM (paper §3.1, App. C) and DDPM (App. B, §5.1), one small interface.

Both expose the denoiser D(x; sigma, cond) in sigma-space (x = x0 + sigma * n) so that every
sampler in `samplers.py` runs on either. The inner network F_theta is any callable
`net(x_in [B,C,H,W], c_noise [B], cond) -> [B,C,H,W]`; `cond` is passed through untouched.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor

from diamond.models.diffusion.samplers import KARRAS_CHURN, check_n_steps, get_sampler, karras_sigmas, sampler_kwargs

Net = Callable[[Tensor, Tensor, Any], Tensor]

# Added before flooring so that re-quantising an already 8-bit frame is the identity: with
# `.byte()` alone float rounding moves 63 of the 256 levels k/255*2-1 down by one.
QUANT_GUARD = 1e-3


def quantize_8bit(x: Tensor) -> Tensor:
    """Clamp to [-1, 1], floor to one of 256 levels like `.add(1).div(2).mul(255).byte()`, map back."""
    levels = torch.floor(x.clamp(-1.0, 1.0).add(1.0).div(2.0).mul(255.0).add(QUANT_GUARD))
    return levels.div(255.0).mul(2.0).sub(1.0)


def postprocess(x: Tensor, quantize: bool) -> Tensor:
    """Denoised frames are images: clamp to [-1, 1], and to 8 bits when configured."""
    return quantize_8bit(x) if quantize else x.clamp(-1.0, 1.0)


def per_sample(v: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-sample vector [B] to broadcast against `like` [B, ...]."""
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def _batch_sigma(sigma: Tensor | float, x: Tensor) -> Tensor:
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])
    if sigma.shape != (x.shape[0],):
        raise ValueError(f"sigma must have shape [B]=[{x.shape[0]}], got {tuple(sigma.shape)}.")
    return sigma


def _channel_offset(x0: Tensor, std: float, generator: torch.Generator | None) -> Tensor:
    """Offset noise: one Gaussian constant per sample and channel, shape [B, C, 1, 1]."""
    shape = tuple(x0.shape[:2]) + (1,) * (x0.ndim - 2)
    return std * torch.randn(shape, generator=generator, device=x0.device, dtype=x0.dtype)


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


# ----------------------------------------------------------------------------------------- EDM


def effective_sigma(sigma: Tensor, sigma_offset_noise: float) -> Tensor:
    """sigma~ = sqrt(sigma^2 + sigma_offset^2): offset noise adds variance the preconditioners see."""
    return (sigma**2 + sigma_offset_noise**2).sqrt()


def c_in(sigma: Tensor, sigma_data: float) -> Tensor:  # Eq. 9
    """Input scale giving the network unit-variance input."""
    return 1.0 / (sigma**2 + sigma_data**2).sqrt()


def c_out(sigma: Tensor, sigma_data: float) -> Tensor:  # Eq. 10
    """Output scale giving the network a unit-variance target."""
    return sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt()


def c_noise(sigma: Tensor) -> Tensor:  # Eq. 11
    """Noise-level input to the network."""
    return sigma.log() / 4.0


def c_skip(sigma: Tensor, sigma_data: float) -> Tensor:  # Eq. 12
    """Skip weight: -> 1 at low noise (predict the noise), -> 0 at high noise (predict the signal)."""
    return sigma_data**2 / (sigma_data**2 + sigma**2)


def sample_training_sigma(batch_size: int, p_mean: float, p_std: float, sigma_min: float,
                          sigma_max: float, *, generator: torch.Generator | None = None,
                          device: torch.device | str | None = None) -> Tensor:  # Eq. 13
    """log sigma ~ N(P_mean, P_std^2), clipped to [sigma_min, sigma_max] as in the released code."""
    log_sigma = p_mean + p_std * torch.randn(batch_size, generator=generator, device=device)
    return log_sigma.exp().clamp(sigma_min, sigma_max)


def edm_denoised(x_noisy: Tensor, net_out: Tensor, skip: Tensor, out: Tensor) -> Tensor:  # Eq. 6
    """D = c_skip x + c_out F."""
    return skip * x_noisy + out * net_out


def edm_target(x0: Tensor, x_noisy: Tensor, skip: Tensor, out: Tensor) -> Tensor:  # Eq. 7
    """Network training target (x0 - c_skip x) / c_out."""
    return (x0 - skip * x_noisy) / out


@dataclass
class EDMConfig:
    """EDM settings; defaults are the released code's (`paper` profile)."""

    sigma_data: float = 0.5
    p_mean: float = -0.4
    p_std: float = 1.2
    train_sigma_min: float = 2e-3
    train_sigma_max: float = 20.0
    sigma_offset_noise: float = 0.3
    sigma_min: float = 2e-3
    sigma_max: float = 5.0
    rho: float = 7.0
    init_noise_scale: float = 1.0
    quantize: bool = True
    # stochastic samplers only (heun_churn: Karras et al. 2022 Alg. 2, their ImageNet-64 values; euler_ancestral: eta)
    s_churn: float = KARRAS_CHURN["s_churn"]
    s_tmin: float = KARRAS_CHURN["s_tmin"]
    s_tmax: float = KARRAS_CHURN["s_tmax"]
    s_noise: float = KARRAS_CHURN["s_noise"]
    eta: float = 1.0

    def __post_init__(self) -> None:
        positive = {"sigma_data": self.sigma_data, "p_std": self.p_std, "rho": self.rho,
                    "init_noise_scale": self.init_noise_scale, "s_noise": self.s_noise}
        for key, value in positive.items():
            if value <= 0:
                raise ValueError(f"EDMConfig.{key} must be > 0, got {value}.")
        if not 0 < self.train_sigma_min < self.train_sigma_max:
            raise ValueError("EDMConfig needs 0 < train_sigma_min < train_sigma_max, got "
                             f"{self.train_sigma_min} and {self.train_sigma_max}.")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"EDMConfig needs 0 < sigma_min < sigma_max, got {self.sigma_min} "
                             f"and {self.sigma_max}.")
        if self.sigma_offset_noise < 0:
            raise ValueError(f"EDMConfig.sigma_offset_noise must be >= 0, got {self.sigma_offset_noise}.")
        if self.s_churn < 0 or self.eta < 0 or not 0 <= self.s_tmin <= self.s_tmax:
            raise ValueError("EDMConfig needs s_churn >= 0, eta >= 0 and 0 <= s_tmin <= s_tmax, got "
                             f"{self.s_churn}, {self.eta}, {self.s_tmin} and {self.s_tmax}.")


@dataclass
class DDPMConfig:
    """DDPM settings of the §5.1 comparison (released `ddpm` branch)."""

    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    single_step_start_t: int = 500
    offset_noise: float = 0.3
    sigma_data: float = 0.5  # not used by the loss; kept for the network's history scaling
    quantize: bool = True  # 8-bit sampled frames; False: raw D everywhere (oracle tests)
    # released ddpm branch: x0 clipped to [-1, 1] at each step (diffusers' clip_sample), only the final frame
    # quantised; True quantises x0 at every sampling step instead (this project's earlier DDPM path)
    quantize_each_step: bool = False

    def __post_init__(self) -> None:
        if self.num_train_timesteps < 2:
            raise ValueError(f"DDPMConfig.num_train_timesteps must be >= 2, got {self.num_train_timesteps}.")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError("DDPMConfig needs 0 < beta_start < beta_end < 1, got "
                             f"{self.beta_start} and {self.beta_end}.")
        if not 0 <= self.single_step_start_t < self.num_train_timesteps:
            raise ValueError(f"DDPMConfig.single_step_start_t must be in [0, {self.num_train_timesteps}), "
                             f"got {self.single_step_start_t}.")
        if self.offset_noise < 0 or self.sigma_data <= 0:
            raise ValueError(f"DDPMConfig needs offset_noise >= 0 and sigma_data > 0, got "
                             f"{self.offset_noise} and {self.sigma_data}.")


class Paradigm(ABC):
    """What the world model needs from a diffusion paradigm."""

    name: ClassVar[str]
    supported_samplers: ClassVar[tuple[str, ...]]
    config_class: ClassVar[type]
    cfg: Any  # an instance of config_class

    @abstractmethod
    def training_loss(self, net: Net, x0: Tensor, cond: Any, *,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(per-sample loss [B], detached denoised estimate [B,C,H,W] in [-1, 1])."""

    @abstractmethod
    def denoise(self, net: Net, x: Tensor, sigma: Tensor, cond: Any) -> Tensor:
        """D(x; sigma, cond) in sigma-space, post-processed for sampling."""

    @abstractmethod
    def sigmas(self, n_steps: int) -> Tensor:
        """Sampling grid of n_steps noise levels then 0 (length n_steps + 1)."""

    @abstractmethod
    def initial_noise(self, shape: tuple[int, ...], *, n_steps: int,
                      generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> Tensor:
        """The sampler's starting point at `sigmas(n_steps)[0]`."""

    def finish(self, sample: Tensor) -> Tensor:
        """The sampler's output as the frame the world model emits: 8-bit when cfg.quantize (a no-op on
        frames already quantised by every denoising step)."""
        return quantize_8bit(sample) if self.cfg.quantize else sample

    def sampler_kwargs(self, sampler: str) -> dict[str, Any]:
        """Keyword options of `sampler` set by this paradigm's config (none unless a subclass has some)."""
        return {}

    def check_sampler(self, sampler: str) -> None:
        """Fail early, in one sentence, on a sampler this paradigm cannot drive."""
        get_sampler(sampler)
        if sampler not in self.supported_samplers:
            raise ValueError(f"Sampler {sampler!r} is not available with paradigm {self.name!r}; "
                             f"choose one of {list(self.supported_samplers)}.")


class EDM(Paradigm):
    """EDM preconditioned denoiser (Eq. 6, 9-12), loss (Eq. 7), sigma sampling (Eq. 13).

    With sigma_offset_noise > 0 (released code) every preconditioner uses sigma~ instead of sigma.
    """

    name = "edm"
    supported_samplers = ("euler", "heun", "euler_maruyama", "heun_churn", "euler_ancestral")
    config_class = EDMConfig

    def __init__(self, cfg: EDMConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else EDMConfig()

    def _forward(self, net: Net, x_noisy: Tensor, sigma: Tensor, cond: Any) -> tuple[Tensor, Tensor, Tensor]:
        """Run F on the preconditioned input; return (F output, c_skip, c_out) shaped like x."""
        s = effective_sigma(sigma, self.cfg.sigma_offset_noise)
        sd = self.cfg.sigma_data
        net_out = net(per_sample(c_in(s, sd), x_noisy) * x_noisy, c_noise(s), cond)
        return net_out, per_sample(c_skip(s, sd), x_noisy), per_sample(c_out(s, sd), x_noisy)

    def training_loss(self, net: Net, x0: Tensor, cond: Any, *,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Eq. 7 squared error averaged over C,H,W per sample, and the detached estimate D."""
        cfg = self.cfg
        sigma = sample_training_sigma(x0.shape[0], cfg.p_mean, cfg.p_std, cfg.train_sigma_min,
                                      cfg.train_sigma_max, generator=generator, device=x0.device).to(x0.dtype)
        offset = _channel_offset(x0, cfg.sigma_offset_noise, generator)
        x_noisy = x0 + offset + per_sample(sigma, x0) * _randn_like(x0, generator)
        net_out, skip, out = self._forward(net, x_noisy, sigma, cond)
        target = edm_target(x0, x_noisy, skip, out)
        loss = (net_out - target).pow(2).flatten(1).mean(dim=1)
        denoised = postprocess(edm_denoised(x_noisy, net_out.detach(), skip, out), cfg.quantize)
        return loss, denoised

    @torch.no_grad()
    def denoise(self, net: Net, x: Tensor, sigma: Tensor, cond: Any) -> Tensor:
        """Eq. 6; clamped and 8-bit quantised when cfg.quantize (raw D otherwise)."""
        net_out, skip, out = self._forward(net, x, _batch_sigma(sigma, x), cond)
        denoised = edm_denoised(x, net_out, skip, out)
        return quantize_8bit(denoised) if self.cfg.quantize else denoised

    def sampler_kwargs(self, sampler: str) -> dict[str, Any]:
        """Churn settings for heun_churn, eta for euler_ancestral, from the config."""
        c = self.cfg
        return sampler_kwargs(sampler, {"s_churn": c.s_churn, "s_tmin": c.s_tmin, "s_tmax": c.s_tmax,
                                        "s_noise": c.s_noise, "eta": c.eta})

    def sigmas(self, n_steps: int) -> Tensor:
        """Karras rho grid from sigma_max to sigma_min, then 0."""
        return karras_sigmas(n_steps, self.cfg.sigma_min, self.cfg.sigma_max, self.cfg.rho)

    def initial_noise(self, shape: tuple[int, ...], *, n_steps: int,
                      generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> Tensor:
        """init_noise_scale * N(0, I): 1 in the released code, sigma_max for the paper-literal prior."""
        check_n_steps(n_steps)
        return self.cfg.init_noise_scale * torch.randn(shape, generator=generator, device=device)


# ---------------------------------------------------------------------------------------- DDPM


def linear_alphas_cumprod(num_timesteps: int, beta_start: float, beta_end: float) -> Tensor:  # Eq. 8
    """alpha_bar_t = prod_{i<=t} (1 - beta_i) for the linear beta schedule (float64)."""
    betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def vp_to_sigma(alphas_cumprod: Tensor) -> Tensor:
    """sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t): x_t / sqrt(alpha_bar_t) = x0 + sigma_t eps."""
    return ((1.0 - alphas_cumprod) / alphas_cumprod).sqrt()


class DDPM(Paradigm):
    """DDPM with eps-prediction, wrapped into sigma-space like k-diffusion's DiscreteEpsDDPMDenoiser.

    Sampler state x~ = x_t / sqrt(alpha_bar_t); the network sees c_in x~ = x_t and
    c_noise = (t + 1) / T, predicts eps, and D = x~ - sigma_t eps.
    """

    name = "ddpm"
    supported_samplers = ("ddpm_ancestral", "ddim")
    config_class = DDPMConfig

    def __init__(self, cfg: DDPMConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else DDPMConfig()
        self.alphas_cumprod = linear_alphas_cumprod(
            self.cfg.num_train_timesteps, self.cfg.beta_start, self.cfg.beta_end)
        self.train_sigmas = vp_to_sigma(self.alphas_cumprod)

    def timesteps(self, n_steps: int) -> list[int]:
        """Respaced train timesteps, highest first.

        "Leading" spacing t_i = i * (T // n), i = n-1..0, as diffusers' DDPMScheduler (the
        released code); one step starts at single_step_start_t, where eps-prediction is not yet
        the identity (§5.1).
        """
        check_n_steps(n_steps)
        total = self.cfg.num_train_timesteps
        if n_steps > total:
            raise ValueError(f"n_steps must be <= num_train_timesteps={total}, got {n_steps}.")
        if n_steps == 1:
            return [self.cfg.single_step_start_t]
        return [i * (total // n_steps) for i in range(n_steps - 1, -1, -1)]

    def sigmas(self, n_steps: int) -> Tensor:
        """sigma_t at the respaced timesteps, then 0."""
        grid = self.train_sigmas[self.timesteps(n_steps)]
        return torch.cat([grid, grid.new_zeros(1)]).to(torch.get_default_dtype())

    def sigma_to_timestep(self, sigma: Tensor) -> Tensor:
        """Map grid noise levels back to their exact train timestep (nearest in log sigma)."""
        table = self.train_sigmas.to(sigma.device).log()  # increasing in t
        log_sigma = sigma.to(torch.float64).log()
        upper = torch.searchsorted(table, log_sigma).clamp(1, table.numel() - 1)
        lower = upper - 1
        t = torch.where((log_sigma - table[lower]).abs() <= (table[upper] - log_sigma).abs(), lower, upper)
        if bool(((log_sigma - table[t]).abs() > 1e-4).any()):
            raise ValueError(f"DDPM denoise got noise levels {sorted(set(sigma.tolist()))} that are not train "
                             "timestep sigmas; use grids from DDPM.sigmas().")
        return t

    def _alpha_bar(self, t: Tensor, like: Tensor) -> Tensor:
        """alpha_bar_t per sample, shaped to broadcast against `like`."""
        return per_sample(self.alphas_cumprod.to(like.device)[t].to(like.dtype), like)

    def _eps(self, net: Net, x_t: Tensor, t: Tensor, cond: Any) -> Tensor:
        """Noise prediction with the released code's noise input c_noise = (t + 1) / T."""
        return net(x_t, (t + 1).to(x_t.dtype) / self.cfg.num_train_timesteps, cond)

    def training_loss(self, net: Net, x0: Tensor, cond: Any, *,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """eps-prediction MSE per sample (target = Gaussian + offset noise), and the estimate of x0."""
        cfg = self.cfg
        t = torch.randint(0, cfg.num_train_timesteps, (x0.shape[0],), generator=generator, device=x0.device)
        noise = _randn_like(x0, generator) + _channel_offset(x0, cfg.offset_noise, generator)
        alpha_bar = self._alpha_bar(t, x0)
        x_t = alpha_bar.sqrt() * x0 + (1.0 - alpha_bar).sqrt() * noise
        eps = self._eps(net, x_t, t, cond)
        loss = (eps - noise).pow(2).flatten(1).mean(dim=1)
        denoised = (x_t - (1.0 - alpha_bar).sqrt() * eps.detach()) / alpha_bar.sqrt()
        return loss, postprocess(denoised, cfg.quantize)

    @torch.no_grad()
    def denoise(self, net: Net, x: Tensor, sigma: Tensor, cond: Any) -> Tensor:
        """D(x~; sigma) = x~ - sigma eps(x_t, t); with cfg.quantize clipped to [-1, 1] (the released branch),
        or 8-bit quantised with cfg.quantize_each_step; the final frame is quantised by `finish`."""
        sigma = _batch_sigma(sigma, x)
        t = self.sigma_to_timestep(sigma)
        x_t = x * self._alpha_bar(t, x).sqrt()  # c_in x~ with c_in = 1 / sqrt(1 + sigma^2)
        denoised = x - per_sample(sigma, x) * self._eps(net, x_t, t, cond)
        if not self.cfg.quantize:
            return denoised
        return quantize_8bit(denoised) if self.cfg.quantize_each_step else denoised.clamp(-1.0, 1.0)

    def initial_noise(self, shape: tuple[int, ...], *, n_steps: int,
                      generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> Tensor:
        """x_T ~ N(0, I) (released code) expressed in sigma-space: std sqrt(1 + sigma_start^2)."""
        sigma_start = float(self.sigmas(n_steps)[0])
        return (1.0 + sigma_start**2) ** 0.5 * torch.randn(shape, generator=generator, device=device)


PARADIGMS: dict[str, type[Paradigm]] = {"edm": EDM, "ddpm": DDPM}


def build_paradigm(name: str, **overrides: Any) -> Paradigm:
    """Build a paradigm by name with config overrides; bad names or keys raise one clear sentence."""
    if name not in PARADIGMS:
        raise ValueError(f"Unknown diffusion paradigm {name!r}; valid paradigms: {sorted(PARADIGMS)}.")
    cls = PARADIGMS[name]
    valid = [f.name for f in fields(cls.config_class)]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(f"Unknown {cls.config_class.__name__} field(s) {unknown}; valid fields: {valid}.")
    return cls(cls.config_class(**overrides))
