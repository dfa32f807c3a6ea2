"""Memory probe: does a world model recall what has left its view?

The probe (`memory_probe`): real contexts of C frames from held-out play, whose last k frames are occluded
(blanked to the padding value 0, mid-grey, with their actions kept), and the real frame that follows. A model
predicts that frame from the occluded context; its error against the real frame, per k, says how much of the
scene it recovers from frames it no longer sees. With k >= L a frame-stack model of L frames sees nothing but
blanks and actions, so its prediction cannot depend on the scene (the floor: `tests/test_memory_probe.py`
checks it exactly); cross-attention over L' > L frames sees the scene until k >= L'; a model with a recurrent
memory (diamond/recurrent_wm.py) carries it through any k its memory holds. The emulator (whose recorded
frames the probe compares with: the Atari emulator without sticky actions is deterministic) is the ceiling,
error 0 at every k; the newest frame before the occlusion, copied, is what a memory without dynamics gives.

Models are trained with the same occlusions (`occlude`, drawn by `draw_occlusions`), so that a blank context
is not out of distribution: the probe measures memory, not robustness to grey frames.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from diamond.data import to_float, to_uint8
from evaluation.video import mean_and_ci
from evaluation.wm_protocol import _device, _windows, join_life_losses, pick_starts

BLANK = 0.0  # an occluded frame in [-1, 1]: the padding value of diamond.data (mid-grey)
EMULATOR = "emulator"  # the ceiling: the real next frame
LAST_VISIBLE = "last visible frame"  # the newest frame before the occlusion, copied


def occlude(obs: Tensor, k: Tensor | int, end: int) -> Tensor:
    """Frames [B, S, 3, H, W] with the k frames before index `end` blanked (k per row, or one k for all)."""
    k = torch.as_tensor(k, device=obs.device).expand(obs.shape[0])
    index = torch.arange(obs.shape[1], device=obs.device)
    hidden = (index[None] < end) & (index[None] >= end - k[:, None])  # [B, S]
    return torch.where(hidden[:, :, None, None, None], torch.full_like(obs, BLANK), obs)


def draw_occlusions(batch: int, max_k: int, probability: float, rng: np.random.Generator) -> np.ndarray:
    """Training occlusions: per row, k = 0 with probability 1 - p, else k uniform in 1..max_k."""
    k = rng.integers(1, max_k + 1, size=batch)
    return np.where(rng.random(batch) < probability, k, 0)


def _mse(real: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-row MSE on the [0, 1] pixel scale (the rollout MSE's)."""
    diff = real.astype(np.float64) / 255.0 - pred.astype(np.float64) / 255.0
    return (diff ** 2).reshape(len(real), -1).mean(axis=1)


@torch.no_grad()
def predict_occluded(world_model: Any, context: Tensor, act: Tensor, num_steps: int | None,
                     generator: torch.Generator | None) -> Tensor:
    """The model's next frame after a context [B, C, ...] in [-1, 1] with actions [B, C] (a_t last): the frames
    before its L-frame window go into its memory (diamond/registry.py), the window to predict_next."""
    L, C = world_model.num_history, context.shape[1]
    state = world_model.memory(context[:, : C - L], act[:, : C - L]) if C > L else None
    return world_model.predict_next(context[:, C - L :], act[:, C - L :], num_steps=num_steps, generator=generator,
                                    state=state)


def memory_probe(world_model: Any, episodes: Iterable[Any], *, occlusions: Sequence[int], context: int,
                 starts: int, num_steps: int | None = None, seed: int = 0) -> pd.DataFrame:
    """One-step error of the frame after `context` real frames whose last k are occluded, for each k.

    The same starts and the same noise for every k and setting. Returns one row per (setting, k): setting
    ('model', EMULATOR, LAST_VISIBLE), k, n_starts, mse and its Student-t 95 % CI over starts.
    LAST_VISIBLE at k = context has no visible frame: its row is left out."""
    L = world_model.num_history
    if context < L or not occlusions or min(occlusions) < 0 or max(occlusions) > context:
        raise ValueError(f"need context >= L = {L} and every k in 0..context ({context}); got {list(occlusions)}.")
    trajs = join_life_losses(episodes)
    chosen = pick_starts(trajs, starts, context, 1, seed)
    real, actions = _windows(trajs, chosen, context, 1)  # [N, C + 1] frames, [N, C] actions
    device = _device(world_model)
    ctx = to_float(torch.as_tensor(real[:, :context], device=device))
    act = torch.as_tensor(actions, device=device)
    target = real[:, context]
    generator = torch.Generator(device=device).manual_seed(seed)
    noise_state = generator.get_state()
    world_model.eval()
    per_k: dict[str, list[np.ndarray]] = {"model": [], EMULATOR: [], LAST_VISIBLE: []}
    for k in occlusions:
        generator.set_state(noise_state)
        pred = predict_occluded(world_model, occlude(ctx, k, context), act, num_steps, generator)
        per_k["model"].append(_mse(target, to_uint8(pred).cpu().numpy()))
        per_k[EMULATOR].append(_mse(target, target))
        per_k[LAST_VISIBLE].append(_mse(target, real[:, context - 1 - k]) if k < context else None)
    rows = []
    for setting, values in per_k.items():
        kept = [(k, v) for k, v in zip(occlusions, values) if v is not None]
        mean, low, high = mean_and_ci(np.stack([v for _, v in kept], axis=1))
        rows += [{"setting": setting, "k": int(k), "n_starts": len(real), "mse": m, "mse_ci_low": lo,
                  "mse_ci_high": hi} for (k, _), m, lo, hi in zip(kept, mean, low, high)]
    return pd.DataFrame(rows)
