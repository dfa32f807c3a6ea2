"""World-model video metrics: FID, FVD, LPIPS, PSNR, SSIM and compounding error over the horizon.

Paper protocol (App. J.3, Table 6): generated clips of 16 frames, each conditioned on L = 6 real
frames and the real actions, compared with the matching real clips; FVD as in StyleGAN-V (I3D
logits, Fréchet distance), FID over all their frames (Inception pool features), LPIPS between each
*pair* of real/generated frames, averaged. Building the clips is the caller's job: pass the 16
generated frames (not the 6 real context frames) and the real frames they should match.

Conventions: images are [..., 3, H, W] and videos [N, T, 3, H, W], either uint8 in 0..255 or float in
[0, 1] (numpy or torch). Feature extractors (any nn.Module) always receive float32 in [0, 1] on their
own device, in chunks of `batch_size`, and return [n, D] features; see evaluation.features for the
standard networks and evaluation.i3d for the FVD network.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn
from tqdm.auto import tqdm

Array = np.ndarray | torch.Tensor


def to_unit_float(x: Array) -> torch.Tensor:
    """uint8 0..255 -> float32 [0,1]; floats are checked to already lie in [0,1]."""
    x = torch.as_tensor(x)
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if not torch.is_floating_point(x):
        raise ValueError(f"frames must be uint8 or float in [0,1], got dtype {x.dtype}")
    if x.numel() and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(f"float frames must lie in [0,1], got range [{x.min().item():.3g}, {x.max().item():.3g}]")
    return x.float()


def _device_of(net: nn.Module) -> torch.device:
    return next(net.parameters(), torch.empty(0)).device


def _chunks(n: int, batch_size: int, desc: str) -> tqdm:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return tqdm(range(0, n, batch_size), desc=desc, leave=False, disable=n <= batch_size)


@torch.no_grad()
def extract_features(data: Array, extractor: nn.Module, batch_size: int = 64, desc: str = "features") -> np.ndarray:
    """Run `extractor` over the first axis of `data` in chunks; returns float64 [N, D]."""
    data = torch.as_tensor(data)
    device = _device_of(extractor)
    out = []
    for i in _chunks(len(data), batch_size, desc):
        feats = extractor(to_unit_float(data[i : i + batch_size]).to(device))
        out.append(feats.reshape(feats.shape[0], -1).double().cpu())
    return torch.cat(out).numpy()


def _psd_eigh(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of a symmetric PSD matrix with round-off eigenvalues set to exactly 0.

    eigh is accurate to about eps * max|eigenvalue| per eigenvalue; anything below D times that (the
    numerical-rank threshold of np.linalg.matrix_rank) is noise, and its square root would not be.
    """
    w, v = np.linalg.eigh((m + m.T) / 2)
    tol = max(m.shape) * np.finfo(np.float64).eps * max(np.abs(w).max(initial=0.0), 0.0)
    return np.where(w > tol, w, 0.0), v


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017):

    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), covariances unbiased (np.cov), float64.
    Numerics: Tr (S_a S_b)^(1/2) is computed as the sum of square roots of the eigenvalues of the
    symmetric PSD matrix S_a^(1/2) S_b S_a^(1/2) (same spectrum as S_a S_b), so it stays real and
    finite even when the covariances are singular (fewer samples than dimensions), where
    scipy.linalg.sqrtm of the non-symmetric product can return complex or NaN entries; round-off
    eigenvalues are zeroed first (see `_psd_eigh`), so identical sets give 0 to ~1e-12.
    """
    feats_a, feats_b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if feats_a.ndim != 2 or feats_b.ndim != 2 or feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(f"features must be [N, D] with equal D, got {feats_a.shape} and {feats_b.shape}")
    if min(len(feats_a), len(feats_b)) < 2:
        raise ValueError(f"need at least 2 samples per set for a covariance, got {len(feats_a)} and {len(feats_b)}")
    mu_a, mu_b = feats_a.mean(0), feats_b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(feats_a, rowvar=False)), np.atleast_2d(np.cov(feats_b, rowvar=False))
    w_a, v_a = _psd_eigh(cov_a)
    root_a = (v_a * np.sqrt(w_a)) @ v_a.T
    trace_sqrt = np.sqrt(_psd_eigh(root_a @ cov_b @ root_a)[0]).sum()
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt)


def fid(real_images: Array, gen_images: Array, extractor: nn.Module, batch_size: int = 64) -> float:
    """FID: Fréchet distance of image features; any leading dims (e.g. [N,T]) are flattened into frames."""
    real, gen = _as_frames(real_images), _as_frames(gen_images)
    feats_real = extract_features(real, extractor, batch_size, "FID real")
    return frechet_distance(feats_real, extract_features(gen, extractor, batch_size, "FID gen"))


def fvd(real_videos: Array, gen_videos: Array, extractor: nn.Module, batch_size: int = 8) -> float:
    """FVD (Unterthiner et al. 2018): Fréchet distance of video features of [N,T,3,H,W] clips."""
    real, gen = torch.as_tensor(real_videos), torch.as_tensor(gen_videos)
    if real.ndim != 5 or gen.ndim != 5 or real.shape[1:] != gen.shape[1:]:
        raise ValueError(f"videos must be [N,T,3,H,W] with equal T,H,W, got {tuple(real.shape)} and {tuple(gen.shape)}")
    feats_real = extract_features(real, extractor, batch_size, "FVD real")
    return frechet_distance(feats_real, extract_features(gen, extractor, batch_size, "FVD gen"))


def _as_frames(x: Array) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim < 4 or x.shape[-3] != 3:
        raise ValueError(f"frames must be [..., 3, H, W] with a leading batch axis, got {tuple(x.shape)}")
    return x.reshape(-1, *x.shape[-3:])


def _paired_frames(real: Array, gen: Array) -> tuple[torch.Tensor, torch.Tensor]:
    real, gen = torch.as_tensor(real), torch.as_tensor(gen)
    if real.shape != gen.shape:
        raise ValueError(f"paired metrics need equal shapes, got {tuple(real.shape)} and {tuple(gen.shape)}")
    return _as_frames(real), _as_frames(gen)


@torch.no_grad()
def _per_pair(real: Array, gen: Array, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              device: torch.device, batch_size: int, desc: str) -> torch.Tensor:
    """fn over aligned chunks of frame pairs (floats in [0,1]); one value per pair, in input order."""
    real, gen = _paired_frames(real, gen)
    out = []
    for i in _chunks(len(real), batch_size, desc):
        a = to_unit_float(real[i : i + batch_size]).to(device)
        b = to_unit_float(gen[i : i + batch_size]).to(device)
        out.append(fn(a, b).reshape(-1).double().cpu())
    return torch.cat(out)


def lpips_per_pair(real: Array, gen: Array, net: nn.Module, batch_size: int = 64) -> torch.Tensor:
    """LPIPS of every real/generated frame pair (flattened leading dims); `net(x, y)` takes [-1,1] images."""
    return _per_pair(real, gen, lambda a, b: net(2 * a - 1, 2 * b - 1), _device_of(net), batch_size, "LPIPS")


def lpips_distance(real: Array, gen: Array, net: nn.Module | None = None, batch_size: int = 64) -> float:
    """Mean LPIPS over aligned pairs (Zhang et al. 2018; pairing as Yan et al. 2023); default net load_lpips('alex')."""
    if net is None:
        from evaluation.features import load_lpips

        net = load_lpips("alex")
    return lpips_per_pair(real, gen, net, batch_size).mean().item()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    from torchmetrics.functional.image import peak_signal_noise_ratio  # imported here: pulls in torchvision (slow)

    return peak_signal_noise_ratio(b, a, data_range=1.0, reduction="none", dim=(1, 2, 3))


def _ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(b, a, data_range=1.0, reduction="none")


def psnr_per_pair(real: Array, gen: Array, batch_size: int = 256) -> torch.Tensor:
    """PSNR (dB, data range 1) of each frame pair; identical frames give +inf."""
    return _per_pair(real, gen, _psnr, torch.device("cpu"), batch_size, "PSNR")


def psnr(real: Array, gen: Array, batch_size: int = 256) -> float:
    """Mean per-frame PSNR in dB (torchmetrics), data range 1."""
    return psnr_per_pair(real, gen, batch_size).mean().item()


def ssim(real: Array, gen: Array, batch_size: int = 256) -> float:
    """Mean per-frame SSIM (torchmetrics: 11x11 Gaussian window, sigma 1.5), data range 1."""
    return _per_pair(real, gen, _ssim, torch.device("cpu"), batch_size, "SSIM").mean().item()


def mean_and_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over axis 0 with a Student-t confidence interval (NaN when only one sample)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = values.shape[0]
    mean = values.mean(axis=0)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * values.std(axis=0, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half


def compounding_error(real: Array, gen: Array, lpips_net: nn.Module | None = None, confidence: float = 0.95,
                      batch_size: int = 256) -> pd.DataFrame:
    """Per-step error of generated rollouts vs the real continuation, averaged over rollouts.

    real, gen: [N, T, 3, H, W] (uint8 or [0,1] floats), step t+1 = the (t+1)-th generated frame.
    Returns one row per step: step, n_rollouts, and for each metric (mse, psnr, and lpips when a
    network is given) its mean over the N rollouts with a `confidence` Student-t interval
    (<metric>_ci_low, <metric>_ci_high). MSE is on the [0,1] scale; a rollout that is exactly right
    at a step has PSNR +inf there, which the mean then inherits (read that step's MSE instead).
    """
    real_t, gen_t = torch.as_tensor(real), torch.as_tensor(gen)
    if real_t.ndim != 5 or real_t.shape != gen_t.shape:
        shapes = f"{tuple(real_t.shape)} and {tuple(gen_t.shape)}"
        raise ValueError(f"rollouts must be [N,T,3,H,W] of equal shape, got {shapes}")
    n, t = real_t.shape[:2]
    cpu = torch.device("cpu")
    per_step = {
        "mse": _per_pair(real_t, gen_t, lambda a, b: ((a - b) ** 2).mean(dim=(1, 2, 3)), cpu, batch_size, "MSE"),
        "psnr": psnr_per_pair(real_t, gen_t, batch_size),
    }
    if lpips_net is not None:
        per_step["lpips"] = lpips_per_pair(real_t, gen_t, lpips_net, batch_size)
    table = {"step": np.arange(1, t + 1), "n_rollouts": np.full(t, n)}
    for name, values in per_step.items():
        mean, low, high = mean_and_ci(values.reshape(n, t).numpy(), confidence)
        table.update({name: mean, f"{name}_ci_low": low, f"{name}_ci_high": high})
    return pd.DataFrame(table)


def world_model_metrics(real: Array, gen: Array, inception: nn.Module | None = None, i3d: nn.Module | None = None,
                        lpips_net: nn.Module | None = None) -> dict[str, float]:
    """Table 6 metrics of paired clips [N,T,3,H,W]: FID/FVD/LPIPS for each network given, always PSNR/SSIM."""
    out = {"psnr": psnr(real, gen), "ssim": ssim(real, gen)}
    if inception is not None:
        out["fid"] = fid(real, gen, inception)
    if i3d is not None:
        out["fvd"] = fvd(real, gen, i3d)
    if lpips_net is not None:
        out["lpips"] = lpips_distance(real, gen, lpips_net)
    return out
