"""Diffusion core: paradigms (EDM, DDPM) and sigma-space samplers."""

from diamond.models.diffusion.paradigms import (
    DDPM,
    EDM,
    PARADIGMS,
    DDPMConfig,
    EDMConfig,
    Paradigm,
    build_paradigm,
    quantize_8bit,
)
from diamond.models.diffusion.samplers import (
    SAMPLERS,
    DenoiseFn,
    get_sampler,
    karras_sigmas,
    nfe,
    sample_ddim,
    sample_ddpm_ancestral,
    sample_euler,
    sample_euler_maruyama,
    sample_heun,
)

__all__ = [
    "DDPM",
    "EDM",
    "PARADIGMS",
    "SAMPLERS",
    "DDPMConfig",
    "DenoiseFn",
    "EDMConfig",
    "Paradigm",
    "build_paradigm",
    "get_sampler",
    "karras_sigmas",
    "nfe",
    "quantize_8bit",
    "sample_ddim",
    "sample_ddpm_ancestral",
    "sample_euler",
    "sample_euler_maruyama",
    "sample_heun",
]
