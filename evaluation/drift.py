"""Drift of imagined frames that needs no real continuation (§5.1, Figure 3).

Once an imagined ball takes another path than the real one, the error against the real continuation
measures the game's chaos, not the model's drift out of distribution. Two measures compare each
imagined frame with real frames of the game instead:

- `nearest_real_distance`: the MSE to the nearest of a set of real reference frames. A frame that
  looks like a Breakout screen (walls, bricks, paddle, ball) is close to some real one; a blurred,
  saturated or smeared frame is far from all of them. A real frame not in the reference set gives the
  floor a perfect model would reach.
- `static_pixel_error`: the MSE on the pixels that are identical in every reference frame (walls,
  frame borders: what never changes in Breakout), against those pixels' constant values.

Frames are uint8 [..., 3, H, W]; distances are on the [0, 1] pixel scale, like the rollout MSE.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

REFERENCE_FRAMES = 2048  # enough to cover Breakout's screens at 64x64; the cost is linear in it


def reference_frames(episodes: Iterable[object], count: int = REFERENCE_FRAMES, seed: int = 0) -> np.ndarray:
    """Up to `count` distinct real frames drawn uniformly (seeded) from the episodes' observations, uint8 [M,3,H,W]."""
    obs = [np.asarray(ep.obs) for ep in episodes]
    total = sum(len(o) for o in obs)
    if total == 0:
        raise ValueError("drift reference frames need at least one episode with frames.")
    flat = np.sort(np.random.default_rng(seed).choice(total, size=min(count, total), replace=False))
    bounds = np.cumsum([len(o) for o in obs])
    which = np.searchsorted(bounds, flat, side="right")
    starts = np.concatenate([[0], bounds[:-1]])
    return np.stack([obs[i][j - starts[i]] for i, j in zip(which, flat)])


def _flat01(frames: np.ndarray) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> float32 [N, 3*H*W] on the [0, 1] scale."""
    arr = np.asarray(frames)
    if arr.dtype != np.uint8 or arr.ndim < 4:
        raise ValueError(f"frames must be uint8 [..., 3, H, W], got {arr.dtype} {arr.shape}.")
    return torch.from_numpy(arr.reshape(-1, int(np.prod(arr.shape[-3:])))).float().div_(255.0)


def nearest_real_distance(frames: np.ndarray, reference: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """min over reference frames r of mean((frame - r)^2), for every frame; shape frames.shape[:-3].

    The nearest frame is found with |a - b|^2 = |a|^2 + |b|^2 - 2 a.b (one matrix product), and its distance is
    then recomputed directly, so that a frame equal to a reference frame scores exactly 0."""
    ref = _flat01(reference)
    if ref.shape[1] != int(np.prod(np.asarray(frames).shape[-3:])):
        raise ValueError(f"frames {np.asarray(frames).shape[-3:]} and reference {np.asarray(reference).shape[-3:]} "
                         "differ in size.")
    x = _flat01(frames)
    ref_sq = ref.pow(2).sum(1)
    out = torch.empty(x.shape[0])
    for i in range(0, x.shape[0], chunk):
        part = x[i : i + chunk]
        nearest = (ref_sq[None] - 2.0 * part @ ref.T).argmin(dim=1)  # |a|^2 is the same for every candidate
        out[i : i + chunk] = (part - ref[nearest]).pow(2).mean(dim=1)
    return out.numpy().astype(np.float64).reshape(np.asarray(frames).shape[:-3])


def static_mask(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask [3,H,W] of the values identical in every reference frame, those values as [0, 1] floats)."""
    ref = np.asarray(reference)
    if ref.dtype != np.uint8 or ref.ndim != 4 or len(ref) < 2:
        raise ValueError(f"a static mask needs >= 2 uint8 reference frames [M,3,H,W], got {ref.dtype} {ref.shape}.")
    mask = (ref == ref[0]).all(axis=0)
    if not mask.any():
        raise ValueError("no pixel is the same in every reference frame: the static-pixel error is undefined.")
    return mask, ref[0].astype(np.float64) / 255.0


def static_pixel_error(frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mean squared error on the never-changing pixels of `reference`, for every frame; shape frames.shape[:-3]."""
    mask, values = static_mask(reference)
    arr = np.asarray(frames)
    if arr.shape[-3:] != mask.shape:
        raise ValueError(f"frames {arr.shape[-3:]} and reference {mask.shape} differ in size.")
    diff = arr[..., mask].astype(np.float64) / 255.0 - values[mask]
    return (diff**2).mean(axis=-1)


def drift_per_step(frames: np.ndarray, reference: np.ndarray) -> dict[str, np.ndarray]:
    """The drift measures of rollouts [N, T, 3, H, W]: name -> [N, T] per rollout and step. 'static_mse' only
    when some pixel is the same in every reference frame (always in Breakout: its walls)."""
    out = {"nn_mse": nearest_real_distance(frames, reference)}
    if (np.asarray(reference) == np.asarray(reference)[0]).all(axis=0).any():
        out["static_mse"] = static_pixel_error(frames, reference)
    return out
