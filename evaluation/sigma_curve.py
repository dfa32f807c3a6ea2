"""Held-out denoising error as a function of the noise level: the EDM paper's loss-vs-sigma curve, read at the
noise levels the world model's sampler actually visits.

Why: a sampler with n steps calls D at n noise levels; the frame it emits is D's output at the last one
(Euler's last step to sigma = 0 is x <- D(x; sigma_min)). A denoiser that is wrong at a level the sampler
visits, in a way that does not average out (a mean shift of the pixels), adds that error to every
generated frame, and an autoregressive rollout compounds it. The curve shows where.

Inputs are made as the sampler meets them: x = x0 + sigma * eps, Gaussian noise only (no offset noise, which
training adds and sampling never does), with the real history of held-out frames. Errors are on the
[0, 1] pixel scale, like the rollout MSE; `mean_shift` is mean(D - x0), negative when D darkens the frame.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterable, Iterator, Mapping, Sequence

import pandas as pd
import torch

from evaluation.wm_protocol import rollout_vs_real


def sampler_sigmas(paradigm: Any, num_steps: Iterable[int]) -> list[float]:
    """Every noise level the paradigm's sampler visits at these n (the grids without their final 0), decreasing."""
    levels = {round(float(s), 8) for n in num_steps for s in paradigm.sigmas(int(n))[:-1].tolist()}
    return sorted(levels, reverse=True)


@torch.no_grad()
def denoising_error_vs_sigma(world_model: Any, batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
                             sigmas: Sequence[float], seed: int = 0) -> pd.DataFrame:
    """Per sigma: mean over held-out frames of mse = |D(x0 + sigma eps; sigma) - x0|^2 and mean_shift =
    mean(D - x0), both on the [0, 1] pixel scale.

    `batches`: (frames in [-1, 1] [B, >= L + 1, 3, H, W], act [B, >= L + 1]) segments as training sees them; the
    target is frame L, its history frames 0..L-1. Needs the world model's `denoise_at` (the built-in model's D as
    the sampler calls it). The same noise eps is used at every sigma, so the curve is smooth in sigma."""
    L = world_model.num_history
    device = next(world_model.parameters()).device
    world_model.eval()
    rows = []
    for sigma in sigmas:
        gen = torch.Generator(device=device).manual_seed(seed)
        sq, shift, count = 0.0, 0.0, 0
        for obs, act in batches:
            frames = torch.as_tensor(obs, device=device)
            hist, x0 = frames[:, :L], frames[:, L]
            eps = torch.randn(x0.shape, generator=gen, device=device)
            denoised = world_model.denoise_at(hist, torch.as_tensor(act, device=device)[:, :L], x0 + sigma * eps,
                                              float(sigma))
            diff = (denoised - x0) / 2.0  # [-1, 1] -> [0, 1] scale
            sq += float(diff.pow(2).sum())
            shift += float(diff.sum())
            count += diff.numel()
        rows.append({"sigma": float(sigma), "mse": sq / count, "mean_shift": shift / count})
    return pd.DataFrame(rows)


@contextlib.contextmanager
def paradigm_fields(world_model: Any, fields: Mapping[str, Any]) -> Iterator[None]:
    """Sample with some paradigm settings changed (e.g. sigma_min), the trained weights untouched; restored after."""
    original = world_model.paradigm.cfg
    world_model.paradigm.cfg = dataclasses.replace(original, **fields)  # validated by the config's own checks
    try:
        yield
    finally:
        world_model.paradigm.cfg = original


def missing_fields(world_model: Any, fields: Mapping[str, Any]) -> list[str]:
    """The fields a variant changes that this world model's paradigm does not have (DDPM has no sigma_min)."""
    cfg = getattr(getattr(world_model, "paradigm", None), "cfg", None)
    return [k for k in fields if cfg is None or not hasattr(cfg, k)]


def variant_rollouts(world_model: Any, episodes: Sequence[Any], variants: Sequence[Mapping[str, Any]], *,
                     starts: int, horizon: int, short_horizon: int, seed: int,
                     drift_reference: Any = None) -> tuple[pd.DataFrame | None, list[str]]:
    """Rollouts of the same model with sampler settings changed, one setting per variant, from the contexts and
    with the noise stream of the main rollouts at the same `horizon` and `seed` (so a variant of n = 3 differs
    from the main n = 3 only by its settings), stopped at `short_horizon`. Returns (errors with setting = the
    variant's label, or None; why variants were skipped)."""
    tables, skipped = [], []
    for variant in variants:
        n, fields = int(variant["num_steps"]), dict(variant["paradigm"])
        missing = missing_fields(world_model, fields)
        if missing:
            skipped.append(f"{variant['label']}: this paradigm has no {', '.join(missing)}")
            continue
        with paradigm_fields(world_model, fields):
            errors, _ = rollout_vs_real(world_model, episodes, starts=starts, horizon=horizon, num_steps_list=[n],
                                        keep_times=[], seed=seed, copy_baseline=False,
                                        drift_reference=drift_reference, horizons={n: short_horizon})
        tables.append(errors.assign(setting=str(variant["label"])))
    return (pd.concat(tables, ignore_index=True) if tables else None), skipped
