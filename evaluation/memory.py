"""Memory probe on the delayed-cue game (diamond/loop/memory_game.py): what a world model keeps of a cue it no
longer sees.

Each start is a cue c; for each k, the model gets the C = cue_frames frames before the answer of the episode
(c, delay k): C - k frames showing the cue, then k frames where it is hidden. It predicts the next frame, the
answer, whose block takes the cue's colour. Error is measured on that block (`region_mse`), the only pixels that
need the past: the rest of the answer frame follows from the newest frame alone (`frame_mse` keeps the whole
frame for comparison). The same cues, actions and noise for every k.

References, per start:
- CEILING, the env (it knows the hidden cue): the real answer, error 0;
- FLOOR, a model structurally blind to the past (it sees only its newest frame and knows the rules): the cue
  at k = 0 (the newest frame shows it), from k >= 1 the cues' mean colour, the lowest error without the cue.
The floor's error at the largest probed k (C: no context frame shows the cue) is `blind`, and the fraction of
information kept at k is (blind - error at k) / (blind - error at 0): 1 for the ceiling, 0 for the floor at
every k >= 1 (tests/test_memory_probe.py holds both).

Context use: the same contexts rendered with another cue, (c + 1) mod A, scored against the true answer. A
model that reads its cue from its context moves its answer by the distance between the two cues' answers
(`swap_mse`); one that ignores its context does not: use = (error swapped - error intact) / that distance.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from diamond.loop.data import to_float, to_uint8
from diamond.loop.memory_game import DelayedCueEnv
from diamond.loop.toy_env import CUE_COLOURS
from evaluation.wm_protocol import _device

CEILING = "ceiling: env (knows the cue)"
FLOOR = "floor: newest frame only"
MODEL = "model"
INTACT, SWAPPED = "intact", "swapped"  # the context shows the start's cue, or the next cue


@torch.no_grad()
def predict_occluded(world_model: Any, context: Tensor, act: Tensor, num_steps: int | None,
                     generator: torch.Generator | None) -> Tensor:
    """The model's next frame after a context [B, C, ...] in [-1, 1] with actions [B, C] (a_t last): the frames
    before its L-frame window go into its memory (diamond/models/registry.py), the window to predict_next."""
    L, C = world_model.num_history, context.shape[1]
    state = world_model.memory(context[:, : C - L], act[:, : C - L]) if C > L else None
    return world_model.predict_next(context[:, C - L :], act[:, C - L :], num_steps=num_steps, generator=generator,
                                    state=state)


def _mse(real: np.ndarray, pred: np.ndarray, region: tuple[slice, ...] = ()) -> np.ndarray:
    """Per-row MSE on the [0, 1] pixel scale over `region` (rows, columns) of [N, 3, H, W] frames."""
    index = (slice(None), slice(None), *region)
    diff = (real.astype(np.float64)[index] - pred.astype(np.float64)[index]) / 255.0
    return (diff ** 2).reshape(len(real), -1).mean(axis=1)


def probe_windows(env: DelayedCueEnv, cues: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 contexts [N, C, 3, H, W] (the C frames before the answer of episode (cue, k)) and answers [N, 3, H, W]."""
    C = env.cue_frames
    episodes = np.stack([env.episode(int(c), k) for c in cues])
    return episodes[:, k : k + C], episodes[:, C + k]


def cue_probe(world_model: Any, env: DelayedCueEnv, *, occlusions: Sequence[int], starts: int,
              num_steps: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Per-start errors: one row per (setting, context, k, start) with cue, region_mse, frame_mse, swap_mse.

    Settings MODEL, CEILING and FLOOR; context INTACT, or SWAPPED (every context frame from the episode of the
    next cue, the answer still the start's) for the model and the floor."""
    C, A = env.cue_frames, env.num_actions
    if not occlusions or min(occlusions) < 0 or max(occlusions) > min(C, env.max_delay):
        raise ValueError(f"every probed k must be in 0..{min(C, env.max_delay)} (cue_frames, max_delay); "
                         f"got {list(occlusions)}.")
    rng = np.random.default_rng(seed)
    cues, actions = rng.integers(A, size=starts), rng.integers(A, size=(starts, C))
    region = env.answer_region
    device = _device(world_model)
    act = torch.as_tensor(actions, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    noise_state = generator.get_state()
    world_model.eval()
    answers = {c: env.answer(CUE_COLOURS[c]) for c in range(A)}
    swap_mse = _mse(np.stack([answers[int(c)] for c in cues]), np.stack([answers[(int(c) + 1) % A] for c in cues]),
                    region)
    rows = []
    for k in occlusions:
        context, target = probe_windows(env, cues, k)
        contexts = {INTACT: context, SWAPPED: probe_windows(env, (cues + 1) % A, k)[0]}
        for name, frames in contexts.items():
            generator.set_state(noise_state)
            pred = to_uint8(predict_occluded(world_model, to_float(torch.as_tensor(frames, device=device)), act,
                                             num_steps, generator)).cpu().numpy()
            seen = [env.read_cue(f) for f in frames[:, -1]]  # the floor's only input: the newest frame
            floor = np.stack([answers[c] if c is not None else env.answer(env.mean_colour) for c in seen])
            preds = {MODEL: pred, FLOOR: floor, **({CEILING: target} if name == INTACT else {})}
            for setting, p in preds.items():
                rows.append(pd.DataFrame({"setting": setting, "context": name, "k": int(k), "start": np.arange(starts),
                                          "cue": cues, "region_mse": _mse(target, p, region),
                                          "frame_mse": _mse(target, p), "swap_mse": swap_mse}))
    return pd.concat(rows, ignore_index=True)


def _per_seed_start(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """A probe column as [seed × start] rows and k columns (one seed when the table has no `seed`)."""
    table = table if "seed" in table else table.assign(seed=0)
    return table.pivot_table(index=["seed", "start"], columns="k", values=column, sort=True)


def ratio_ci(num: np.ndarray, den: np.ndarray, *, boot: int = 2000, seed: int = 0,
             confidence: float = 0.95) -> tuple[float, float, float]:
    """mean(num) / mean(den) over [seeds, starts] arrays, with a hierarchical bootstrap CI: seeds drawn with
    replacement, then starts within each drawn seed (one seed: starts only). NaN where mean(den) <= 0."""
    point = num.mean() / den.mean() if den.mean() > 0 else np.nan
    rng = np.random.default_rng(seed)
    s, n = num.shape
    pick_s = rng.integers(s, size=(boot, s))[:, :, None]
    pick_n = rng.integers(n, size=(boot, s, n))
    ratios = num[pick_s, pick_n].mean(axis=(1, 2)) / den[pick_s, pick_n].mean(axis=(1, 2))
    low, high = np.nanpercentile(ratios, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(point), (float(low) if np.isfinite(point) else np.nan), (float(high) if np.isfinite(point) else np.nan)


def _grid(table: pd.DataFrame, setting: str, column: str, context: str = INTACT) -> dict[int, np.ndarray]:
    """{k: [seeds, starts]} of one setting's column."""
    wide = _per_seed_start(table[(table["setting"] == setting) & (table["context"] == context)], column)
    seeds = wide.index.get_level_values("seed").nunique()
    return {int(k): wide[k].to_numpy().reshape(seeds, -1) for k in wide.columns}


def kept_fraction(table: pd.DataFrame, setting: str) -> pd.DataFrame:
    """Rows (k, value, ci_low, ci_high): (blind - region error at k) / (blind - region error at 0), blind the
    floor's error at the largest k; probe tables of several seeds (a `seed` column) are pooled."""
    err, floor = _grid(table, setting, "region_mse"), _grid(table, FLOOR, "region_mse")
    blind = floor[max(floor)]
    return pd.DataFrame([{"k": k, **dict(zip(("value", "ci_low", "ci_high"), ratio_ci(blind - e, blind - err[0])))}
                         for k, e in err.items()])


def context_use(table: pd.DataFrame, setting: str) -> pd.DataFrame:
    """Rows (k, value, ci_low, ci_high): (region error, context swapped - intact) / the two cues' answer distance."""
    intact, swapped = _grid(table, setting, "region_mse"), _grid(table, setting, "region_mse", SWAPPED)
    distance = _grid(table, setting, "swap_mse")
    return pd.DataFrame([{"k": k, **dict(zip(("value", "ci_low", "ci_high"),
                                             ratio_ci(swapped[k] - intact[k], distance[k])))} for k in intact])


def mean_error(table: pd.DataFrame, setting: str, column: str = "region_mse") -> pd.DataFrame:
    """Rows (k, value, ci_low, ci_high): a column's mean over seeds and starts (hierarchical bootstrap CI)."""
    err = _grid(table, setting, column)
    return pd.DataFrame([{"k": k, **dict(zip(("value", "ci_low", "ci_high"), ratio_ci(e, np.ones_like(e))))}
                         for k, e in err.items()])
