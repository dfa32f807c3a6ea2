"""Evaluate a trained world model against a static dataset of real trajectories (§5.1, Figure 3; App. J.3, Table 6).

Two measurements, both open loop from real frames with the *real* action sequence, so that a
generated frame has a real frame to be compared with:

- `rollout_vs_real`: long autoregressive rollouts (Figure 3 goes to t = 1000) for several numbers
  of denoising steps n, per-step error against the real continuation (compounding error), and
  frames at chosen times for the image grid. Every n starts from the same real contexts and the
  same noise stream, so settings differ only by the sampler.
  Given real reference frames, each rollout step also gets the drift measures of evaluation/drift.py
  (distance to the nearest real frame, error on never-changing pixels), which need no real continuation.
- `clip_metrics`: the Table 6 protocol, 16-frame clips conditioned on `context` real frames; FID,
  FVD and LPIPS where the feature networks are available, always MSE/PSNR/SSIM, plus the sampling
  rate and the parameter count.

A world model is anything with `num_history` (L), `sampler`, `predict_next(obs_hist [B,L,3,H,W] in
[-1,1], act_hist [B,L], num_steps=n, generator=g) -> [B,3,H,W]` and (as an nn.Module) parameters; one with
a `memory` (the protocol of diamond/models/registry.py) gets each frame that leaves its window and passes its
state back to `predict_next`.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from diamond.loop.data import to_float, to_uint8
from diamond.models.diffusion.samplers import nfe
from diamond.models.registry import declarations
from evaluation.drift import drift_per_step
from evaluation.video import compounding_error, mean_and_ci, world_model_metrics

FEATURE_NETWORKS = ("inception", "i3d", "lpips")  # FID, FVD, LPIPS
GRID_TIMES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
TABLE_TIMES = (1, 10, 100, 1000)  # the error table of the Figure-3 study
COPY_SETTING = "copy last frame"  # baseline: repeat the last real context frame (what a model must beat)
REAL_SETTING = "real continuation"  # the drift measures' floor: real frames, unseen by the reference set


@dataclass(frozen=True)
class Trajectory:
    """One contiguous stretch of real play: obs[t] --act[t]--> obs[t+1]."""

    obs: np.ndarray  # uint8 [T + 1, 3, H, W]
    act: np.ndarray  # int64 [T]

    @property
    def num_steps(self) -> int:
        return len(self.act)


def join_life_losses(episodes: Iterable[Any]) -> list[Trajectory]:
    """Real trajectories from episodes, joining an episode to the previous one when it continues the same game.

    The training env ends an episode at every life loss and then continues the game from the very
    same frame (diamond.loop.envs), so an episode whose first frame equals the previous episode's last
    frame is its continuation. Joined, they give the long real references that t = 1000 rollouts need
    (a life-loss episode of the Breakout expert lasts 60-800 steps).
    """
    trajs: list[Trajectory] = []
    for ep in episodes:
        obs, act = np.asarray(ep.obs), np.asarray(ep.act)
        if trajs and np.array_equal(trajs[-1].obs[-1], obs[0]):
            prev = trajs.pop()
            obs, act = np.concatenate([prev.obs, obs[1:]]), np.concatenate([prev.act, act])
        trajs.append(Trajectory(obs, act))
    return trajs


def pick_starts(trajs: Sequence[Trajectory], count: int, before: int, after: int, seed: int) -> np.ndarray:
    """Up to `count` distinct (trajectory, s) pairs, uniform over all valid ones, sorted.

    s indexes the last real context frame: `before` frames obs[s-before+1 .. s] must exist, and
    `after` more steps obs[s+1 .. s+after] with their actions."""
    counts = np.array([max(0, t.num_steps - after - before + 2) for t in trajs], dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        longest = max((t.num_steps for t in trajs), default=0)
        raise ValueError(f"no real trajectory holds {before} context frames plus {after} steps "
                         f"(the longest has {longest} steps); use a shorter horizon/clip or more data.")
    flat = np.sort(np.random.default_rng(seed).choice(total, size=min(count, total), replace=False))
    traj_idx = np.searchsorted(np.cumsum(counts), flat, side="right")
    offsets = flat - np.concatenate([[0], np.cumsum(counts)])[traj_idx]
    return np.stack([traj_idx, offsets + before - 1], axis=1)


def _windows(trajs: Sequence[Trajectory], starts: np.ndarray, before: int, after: int) -> tuple[np.ndarray, np.ndarray]:
    """Real frames [N, before + after, 3, H, W] and actions [N, before - 1 + after] around each start."""
    obs = np.stack([trajs[i].obs[s - before + 1 : s + after + 1] for i, s in starts])
    act = np.stack([trajs[i].act[s - before + 1 : s + after] for i, s in starts])
    return obs, act


def _device(module: Any) -> torch.device:
    params = module.parameters() if isinstance(module, nn.Module) else iter(())
    return next(params, torch.empty(0)).device


def num_parameters(module: Any) -> int:
    return sum(p.numel() for p in module.parameters()) if isinstance(module, nn.Module) else 0


@contextlib.contextmanager
def using_sampler(world_model: Any, sampler: str | None) -> Iterator[str]:
    """Temporarily switch the world model's sampler (the NFE-driving choice varied at rollout time) to one it
    declares (diamond/models/registry.py's declarations)."""
    previous = world_model.sampler
    if sampler is not None:
        declared = declarations(world_model).samplers
        if sampler not in declared:
            raise ValueError(f"sampler {sampler!r} is not one {type(world_model).__name__} declares: "
                             f"{list(declared)} (docs/plugins.md)")
        world_model.sampler = sampler
    try:
        yield world_model.sampler
    finally:
        world_model.sampler = previous


def nfe_at(world_model: Any, sampler: str, n: int) -> int:
    """Network evaluations per frame at n steps: the model's own `nfe` (diamond/models/registry.py) read with num_steps
    = n; a reference model without one counts as its sampler does."""
    if not hasattr(world_model, "nfe"):
        return nfe(sampler, n)
    previous, world_model.num_steps = world_model.num_steps, n
    try:
        return int(world_model.nfe)
    finally:
        world_model.num_steps = previous


@torch.no_grad()
def generate(world_model: Any, context: np.ndarray, actions: np.ndarray, num_steps: int,
             generator: torch.Generator | None, desc: str = "rollout") -> np.ndarray:
    """Open-loop autoregressive generation: uint8 context [N, >=L, ...] (the model uses its last L) and
    actions [N, L - 1 + T] aligned with the last L context frames -> uint8 frames [N, T, 3, H, W]."""
    L = world_model.num_history
    if context.shape[1] < L:
        raise ValueError(f"the world model needs L = {L} context frames, got {context.shape[1]}.")
    device = _device(world_model)
    frames = to_float(torch.as_tensor(context[:, -L:], device=device))
    acts = torch.as_tensor(actions, device=device)
    horizon = acts.shape[1] - L + 1
    out = np.empty((len(context), horizon, *context.shape[2:]), np.uint8)
    memory = getattr(world_model, "memory", None)  # the reference models of evaluation/ have none
    state = None
    for t in tqdm(range(horizon), desc=desc, leave=False, disable=horizon < 50):
        kwargs = {} if state is None else {"state": state}
        nxt = world_model.predict_next(frames, acts[:, t : t + L], num_steps=num_steps, generator=generator, **kwargs)
        out[:, t] = to_uint8(nxt).cpu().numpy()
        if memory is not None:
            state = memory(frames[:, :1], acts[:, t : t + 1], state)  # the frame leaving the window
        frames = torch.cat([frames[:, 1:], nxt[:, None]], dim=1)
    return out


def default_grid_times(horizon: int) -> list[int]:
    """Columns of the Figure-3 grid: the common start t = 0, roughly log-spaced times, and the horizon."""
    return sorted({0, horizon, *(t for t in GRID_TIMES if t <= horizon)})


def error_table_times(horizon: int) -> list[int]:
    """Steps at which the error table reports: t = 1, 10, 100, 1000 where reached, and the horizon itself."""
    return sorted({horizon, *(t for t in TABLE_TIMES if t <= horizon)})


def _new_generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _with_drift(errors: pd.DataFrame, frames: np.ndarray, reference: np.ndarray | None) -> pd.DataFrame:
    """Add each drift measure's mean over rollouts per step and its Student-t 95 % CI (no-op without reference)."""
    if reference is None:
        return errors
    for name, values in drift_per_step(frames, reference).items():
        errors[name], errors[f"{name}_ci_low"], errors[f"{name}_ci_high"] = mean_and_ci(values)
    return errors


def rollout_vs_real(world_model: Any, episodes: Iterable[Any], *, starts: int, horizon: int,
                    num_steps_list: Sequence[int], sampler: str | None = None,
                    generator: torch.Generator | None = None, keep_times: Sequence[int] | None = None,
                    lpips_net: nn.Module | None = None, seed: int = 0, copy_baseline: bool = True,
                    drift_reference: np.ndarray | None = None,
                    horizons: Mapping[int, int] | None = None) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Compounding error of open-loop rollouts from `starts` common real contexts, for each n.

    With `copy_baseline`, the errors also hold the setting COPY_SETTING (num_steps = nfe = 0): the last
    real context frame repeated, the trivial prediction that a world model of slow-changing frames
    (Breakout) has to beat before its drift means anything. With `drift_reference` (uint8 real frames
    [M, 3, H, W] that the rollouts do not start from), every setting also gets the drift columns of
    evaluation.drift (nn_mse, static_mse and their CIs), and the setting REAL_SETTING (the real
    continuation itself, mse 0) gives their floor (both baselines come with `copy_baseline`).

    `horizons` caps some n to a shorter horizon (the long one costs n network calls per step): their rollouts
    start from the same contexts with the same noise, and their rows and kept frames stop there.

    The horizon is capped (with a warning) to the longest real trajectory; the effective horizon is
    the DataFrame's last step. Returns (errors: one row per setting and step 1..T with setting,
    num_steps, nfe, mse, psnr, (lpips) and their CIs; frames: 'times' [K], 'starts' [N, 2] (trajectory,
    s), 'real' and 'n=<n>' uint8 [N, K, 3, H, W] at those times, t = 0 being the last real context frame).
    """
    if starts < 1 or horizon < 1 or not num_steps_list:
        raise ValueError(f"need starts >= 1, horizon >= 1 and at least one n; got {starts}, {horizon}, "
                         f"{list(num_steps_list)}.")
    L = world_model.num_history
    trajs = join_life_losses(episodes)
    longest = max((t.num_steps - L + 1 for t in trajs), default=0)
    if longest < 1:
        raise ValueError(f"no real trajectory is long enough for L = {L} context frames and one step.")
    if horizon > longest:
        warnings.warn(f"horizon {horizon} capped to {longest}: the longest real trajectory allows no more.")
        horizon = longest
    chosen = pick_starts(trajs, starts, L, horizon, seed)
    real, actions = _windows(trajs, chosen, L, horizon)
    times = default_grid_times(horizon) if keep_times is None else sorted({int(t) for t in keep_times if t <= horizon})
    frames: dict[str, np.ndarray] = {"times": np.array(times), "starts": chosen,
                                     "real": real[:, [L - 1 + t for t in times]]}
    generator = generator if generator is not None else _new_generator(_device(world_model), seed)
    noise_state = generator.get_state()
    tables = []
    world_model.eval()
    with using_sampler(world_model, sampler) as name:
        for n in num_steps_list:
            generator.set_state(noise_state)
            h = min(horizon, int((horizons or {}).get(n, horizon)))
            gen = generate(world_model, real[:, :L], actions[:, : L - 1 + h], n, generator, desc=f"rollout n={n}")
            errors = _with_drift(compounding_error(real[:, L : L + h], gen, lpips_net), gen, drift_reference)
            errors.insert(0, "nfe", nfe_at(world_model, name, n))
            errors.insert(0, "num_steps", n)
            errors.insert(0, "setting", f"n={n}")
            tables.append(errors)
            with_start = np.concatenate([real[:, L - 1 : L], gen], axis=1)
            frames[f"n={n}"] = with_start[:, [t for t in times if t <= h]]  # the first times, up to h
    if copy_baseline:
        copies = np.repeat(real[:, L - 1 : L], horizon, axis=1)
        errors = _with_drift(compounding_error(real[:, L:], copies, lpips_net), copies, drift_reference)
        tables.append(errors.assign(setting=COPY_SETTING, num_steps=0, nfe=0))
    if copy_baseline and drift_reference is not None:
        errors = _with_drift(compounding_error(real[:, L:], real[:, L:]), real[:, L:], drift_reference)
        tables.append(errors.assign(setting=REAL_SETTING, num_steps=0, nfe=0))
    return pd.concat(tables, ignore_index=True), frames


def load_feature_networks(enabled: bool = True) -> dict[str, nn.Module | str]:
    """The standard FID/FVD/LPIPS networks, or for each one the reason it is unavailable (offline, disabled)."""
    from evaluation.features import FeatureNetworkUnavailable, load_i3d, load_inception, load_lpips

    loaders = {"inception": load_inception, "i3d": load_i3d, "lpips": load_lpips}
    out: dict[str, nn.Module | str] = {}
    for name, load in loaders.items():
        if not enabled:
            out[name] = "feature networks disabled for this run"
            continue
        try:
            out[name] = load()
        except (FeatureNetworkUnavailable, ImportError) as e:
            out[name] = f"{type(e).__name__}: {e}"
    return out


def _sample_rate(world_model: Any, context: np.ndarray, actions: np.ndarray, num_steps: int,
                 generator: torch.Generator) -> float:
    """Frames per second generated in sequence for one trajectory (batch 1), the paper's sampling rate."""
    device = _device(world_model)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    frames = generate(world_model, context[:1], actions[:1], num_steps, generator, desc="sampling rate")
    sync()
    return frames.shape[1] / max(time.perf_counter() - start, 1e-9)


def clip_metrics(world_model: Any, episodes: Iterable[Any], *, num_clips: int, context: int = 6,
                 clip_len: int = 16, num_steps: int | None = None, sampler: str | None = None,
                 extractors: Mapping[str, nn.Module | str] | None = None,
                 generator: torch.Generator | None = None, seed: int = 0) -> dict[str, Any]:
    """Table 6 protocol: `num_clips` generated clips of `clip_len` frames, each conditioned on `context` real
    frames (the model uses its last L) and the real actions, against the real clips.

    `extractors` maps 'inception' (FID), 'i3d' (FVD), 'lpips' to a network, or to the reason it is
    unavailable (see load_feature_networks); a missing or unavailable one is recorded under
    'unavailable' and its metric is None, never an error."""
    L = world_model.num_history
    if context < L:
        raise ValueError(f"context ({context}) must be at least the world model's L = {L}.")
    if num_clips < 2 or clip_len < 1:
        raise ValueError(f"need num_clips >= 2 (FID/FVD fit covariances) and clip_len >= 1, got {num_clips} and "
                         f"{clip_len}.")
    n = world_model.num_steps if num_steps is None else num_steps
    trajs = join_life_losses(episodes)
    chosen = pick_starts(trajs, num_clips, context, clip_len, seed)
    real, actions = _windows(trajs, chosen, context, clip_len)
    generator = generator if generator is not None else _new_generator(_device(world_model), seed)
    extractors = dict(extractors or {})
    nets = {k: v for k, v in extractors.items() if isinstance(v, nn.Module)}
    unavailable = {k: str(extractors.get(k, "no extractor given")) for k in FEATURE_NETWORKS if k not in nets}
    world_model.eval()
    with using_sampler(world_model, sampler) as name:
        acts = actions[:, context - L :]
        gen = generate(world_model, real[:, :context], acts, n, generator, desc=f"clips n={n}")
        rate = _sample_rate(world_model, real[:, :context], acts, n, generator)
    real_clips = real[:, context:]
    metrics = world_model_metrics(real_clips, gen, nets.get("inception"), nets.get("i3d"), nets.get("lpips"))
    mse = float(np.mean(((real_clips.astype(np.float64) - gen) / 255.0) ** 2))
    return {
        "num_clips": len(real), "context": context, "clip_len": clip_len, "num_steps": n, "sampler": name,
        "nfe": nfe_at(world_model, name, n), "mse": mse, "psnr": metrics["psnr"], "ssim": metrics["ssim"],
        "fid": metrics.get("fid"), "fvd": metrics.get("fvd"), "lpips": metrics.get("lpips"),
        "unavailable": unavailable, "sample_rate_hz": rate, "sample_rate_device": str(_device(world_model)),
        "num_parameters": num_parameters(world_model),
    }


class AtSteps:
    """A world model pinned to n denoising steps and one noise stream: the two-argument `predict_next` that the
    decision metrics (evaluation/decision.py) call."""

    def __init__(self, world_model: Any, num_steps: int, generator: torch.Generator) -> None:
        self.world_model, self.num_steps, self.generator = world_model, num_steps, generator
        self.num_history = world_model.num_history
        if getattr(world_model, "memory", None) is not None:
            self.memory = world_model.memory

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.world_model.parameters() if isinstance(self.world_model, nn.Module) else iter(())

    def predict_next(self, obs_hist: torch.Tensor, act_hist: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.world_model.predict_next(obs_hist, act_hist, num_steps=self.num_steps, generator=self.generator,
                                             **kwargs)


def decision_fidelity(world_model: Any, setup: Any, reward_model: Any, num_steps_list: Sequence[int],
                      settings: Any, sampler: str | None = None) -> dict[str, Any]:
    """Action following, counterfactual fidelity and policy evaluation (evaluation/decision_eval.py) of the model
    at each n, beside the emulator's ceiling and the action-blind floors, from the same real probes."""
    from evaluation.decision_eval import references, score, summarise

    bar = tqdm(total=1 + len(num_steps_list), desc="decision metrics (references, then each n)")
    scores = references(setup, reward_model)
    bar.update()
    world_model.eval()
    with using_sampler(world_model, sampler):
        for n in num_steps_list:
            model = AtSteps(world_model, n, _new_generator(_device(world_model), settings.seed))
            scores[f"n={n}"] = score(model, reward_model, setup)
            bar.update()
    bar.close()
    return summarise(scores, setup, settings)
