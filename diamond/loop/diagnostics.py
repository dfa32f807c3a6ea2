"""Why an agent does or does not learn: per-epoch diagnostics of each stage of Algorithm 1, measured on real
transitions the learners have not trained on yet (the steps collected this epoch, read before the updates).

- world model: one-step error against the copy-last-frame baseline (a model that cannot beat copying the
  last frame has learnt no dynamics);
- reward/end model: precision and recall of non-zero rewards and of terminations (the rare events the
  actor-critic learns from; a model that never predicts them gives the actor nothing to learn), and the AUROC of
  its probability of any event (imagination samples that probability, so it must rank event steps above others);
- imagination: the same AUROC with R_ψ scoring the world model's open-loop imagination of the held-out steps
  (same context, same real actions): whether imagined rewards carry the game's events at all
  (docs/results/atari100k-cpu-budget: 0.45-0.61 at every budget, 0.73-1.00 on the real frames);
- the current policy's reward and termination rates in imagination against the real ones (written by the
  trainer from its learners' and collection's logs);
- TensorBoard curves while a run works, when the optional `tensorboard` package is installed.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from diamond.loop.data import ReplayBuffer, to_float
from diamond.models.world_model import open_loop


@dataclass
class Windows:
    """Every window of `length` frames ending in one of the newest real transitions (left-padded, masked)."""

    obs: Tensor  # [N, length, 3, h, w] in [-1, 1], padding 0
    act: Tensor  # [N, length]
    rew: Tensor  # [N, length]
    end: Tensor  # [N, length]
    mask: Tensor  # [N, length] bool: real frame


def newest_windows(replay: ReplayBuffer, num_steps: int, length: int, device: torch.device) -> Windows | None:
    """All windows whose last transition (frames length-2 -> length-1) is one of the newest `num_steps`
    transitions of the replay; None when the replay has none."""
    obs, act, rew, end, mask = [], [], [], [], []
    left = num_steps
    for ep in reversed(replay.episodes):
        if left <= 0:
            break
        take = min(left, ep.num_steps)
        left -= take
        for t in range(ep.num_steps - take, ep.num_steps):  # transition t: obs[t] --act[t]--> obs[t + 1]
            idx = np.arange(t + 2 - length, t + 2)
            real = idx >= 0
            o = np.zeros((length, *ep.obs.shape[1:]), np.uint8)
            o[real] = ep.obs[idx[real]]
            trans = real & (idx < ep.num_steps)
            a, r, e = np.zeros(length, np.int64), np.zeros(length, np.float32), np.zeros(length, bool)
            a[trans], r[trans], e[trans] = ep.act[idx[trans]], ep.rew[idx[trans]], ep.end[idx[trans]]
            obs.append(o), act.append(a), rew.append(r), end.append(e), mask.append(real)
    if not obs:
        return None
    as_t = lambda x: torch.from_numpy(np.stack(x)).to(device)  # noqa: E731
    real = as_t(mask)
    frames = to_float(as_t(obs)) * real[:, :, None, None, None]  # padding 0 in [-1, 1], as the learners see it
    return Windows(frames, as_t(act), as_t(rew), as_t(end), real)


@contextmanager
def evaluating(*modules: nn.Module) -> Iterator[None]:
    """The modules in eval mode for a measurement, each put back in the mode it had (a learner mid-run trains)."""
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


@torch.no_grad()
def one_step_error(world_model: nn.Module, w: Windows, batch: int = 64) -> dict[str, float]:
    """Mean squared error (pixels in [-1, 1]) of the world model's next frame given the L real frames and actions
    before it, and of copying the last frame, over the same held-out transitions."""
    L = world_model.num_history
    model_se, copy_se = [], []
    with evaluating(world_model):
        for i in range(0, len(w.obs), batch):
            obs, act = w.obs[i : i + batch], w.act[i : i + batch]
            pred = world_model.predict_next(obs[:, -L - 1 : -1], act[:, -L - 1 : -1])
            target = obs[:, -1]
            model_se.append((pred - target).pow(2).flatten(1).mean(1))
            copy_se.append((obs[:, -2] - target).pow(2).flatten(1).mean(1))
    model, copy = torch.cat(model_se).mean().item(), torch.cat(copy_se).mean().item()
    return {"diag/wm_mse": model, "diag/copy_last_mse": copy, "diag/wm_over_copy": model / max(copy, 1e-12),
            "diag/heldout_transitions": float(len(w.obs))}


def detection_counts(pred: Tensor, target: Tensor) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of an event; `pred`/`target` are class indices whose
    class 0 is "no event" (rewards: the sign class must match too; ends: 1 = terminated)."""
    hit = (pred != 0) & (pred == target)
    return int(hit.sum()), int(((pred != 0) & ~hit).sum()), int(((target != 0) & ~hit).sum())


def precision_recall(tp: int, fp: int, fn: int) -> tuple[float, float]:
    """NaN where undefined (no predicted / no true events), never a misleading 0 or 1."""
    return (tp / (tp + fp) if tp + fp else float("nan"), tp / (tp + fn) if tp + fn else float("nan"))


@torch.no_grad()
def reward_end_detection(reward_end: nn.Module, w: Windows, batch: int = 64) -> dict[str, float]:
    """Precision/recall of R_ψ's most likely class for non-zero rewards and for terminations, on the last
    transition of each held-out window (the LSTM burns in on the window's earlier transitions)."""
    rew_logits, end_logits = [], []
    with evaluating(reward_end):
        for i in range(0, len(w.obs), batch):
            obs, act = w.obs[i : i + batch], w.act[i : i + batch]
            rl, el, _ = reward_end(obs[:, :-1], act[:, :-1], obs[:, 1:])
            rew_logits.append(rl[:, -1].float())
            end_logits.append(el[:, -1].float())
    sign = torch.sign(w.rew[:, -2]).long()  # the window's last transition: frames -2 -> -1
    out: dict[str, float] = {}
    # reward classes 0, 1, 2 = sign -1, 0, +1: shift to "class 0 = no event" as for ends
    for name, logits, target, shift in (("reward", torch.cat(rew_logits), sign, 1),
                                        ("end", torch.cat(end_logits), w.end[:, -2].long(), 0)):
        tp, fp, fn = detection_counts(logits.argmax(-1) - shift, target)
        precision, recall = precision_recall(tp, fp, fn)
        out.update({f"diag/{name}_tp": float(tp), f"diag/{name}_fp": float(fp), f"diag/{name}_fn": float(fn),
                    f"diag/{name}_precision": precision, f"diag/{name}_recall": recall,
                    **event_probabilities(logits, target, shift, name)})
    return out


def auroc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve of `scores` for boolean `labels` (Mann-Whitney U / (n_pos n_neg), ties count a
    half): the probability that an event step scores above a non-event step, 0.5 for a model that cannot tell them
    apart whatever its calibration; NaN without both kinds of step."""
    scores, labels = scores.double().flatten(), labels.bool().flatten()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not n_pos or not n_neg:
        return float("nan")
    order = torch.argsort(scores)
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=scores.dtype)
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    first = torch.cumsum(counts, 0) - counts + 1  # average rank of each group of tied scores
    ranks[order] = (first + (counts - 1) / 2.0).to(scores.dtype)[inverse]
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def event_probabilities(logits: Tensor, target: Tensor, shift: int, name: str) -> dict[str, float]:
    """Imagination samples R_ψ's distribution rather than its argmax, so a model whose argmax never names a
    rare event can still drive learning if it is discriminative: the mean probability it gives the true event
    on event transitions, against the probability of any event on non-event transitions (NaN without them)."""
    probs = torch.softmax(logits, -1)
    event = target != 0
    p_true = probs.gather(1, (target + shift).clamp(min=0)[:, None])[:, 0]
    p_any = 1.0 - probs[:, shift]
    mean = lambda x: float(x.mean()) if len(x) else float("nan")  # noqa: E731
    return {f"diag/{name}_p_event": mean(p_true[event]), f"diag/{name}_p_nonevent": mean(p_any[~event]),
            f"diag/{name}_auroc": auroc(p_any, event)}


def p_event(rew_logits: Tensor) -> Tensor:
    """R_ψ's probability of any non-zero reward (classes -1, 0, +1: one minus the middle one)."""
    return 1.0 - rew_logits.float().softmax(-1)[..., 1]


Predict = Callable[[Tensor, Tensor, int], Tensor]  # (history frames, history actions, step t) -> next frame


@torch.no_grad()
def imagined_event_scores(reward_end: nn.Module, obs: Tensor, act: Tensor, context: int,
                          predict: Predict) -> dict[str, Tensor]:
    """p(event) of R_ψ on the real transitions after `context` frames of obs [B, L + H, ...] (in [-1, 1]) and on
    the frames `predict` imagines open-loop from the same context with the same real actions (act[:, i] taken at
    obs[:, i]); R_ψ is burned in on the context first, as in imagination (Alg. 1)."""
    _, _, state = reward_end(obs[:, : context - 1], act[:, : context - 1], obs[:, 1:context], None)
    real, _, _ = reward_end(obs[:, context - 1 : -1], act[:, context - 1 : -1], obs[:, context:], state)
    before, imagined = obs[:, context - 1 : context], []
    for t, nxt in enumerate(open_loop(predict, obs, act, context)):  # R_ψ steps from the frame before to `nxt`
        logits, _, state = reward_end(before, act[:, context - 1 + t : context + t], nxt[:, None], state)
        imagined.append(p_event(logits[:, 0]))
        before = nxt[:, None]
    return {"real": p_event(real), "imagined": torch.stack(imagined, dim=1)}


def imagined_reward_detection(world_model: nn.Module, reward_end: nn.Module, w: Windows, batch: int = 64,
                              max_windows: int = 64) -> dict[str, float]:
    """Does imagination contain the real game's rewards? R_ψ scored on the world model's open-loop imagination of
    held-out real windows (L context frames, then H steps with the real actions), against the real events: an
    AUROC near 0.5 means imagined rewards say nothing about the actions, however well R_ψ names real events.
    Sampling noise comes from a generator of its own, so the diagnostic leaves the run's random streams alone; a
    world model with memory is scored on its window alone. At most `max_windows`, evenly spaced (64 x 15 imagined
    steps: about 15 s per diagnostic epoch at the cpu profile on one core)."""
    context = world_model.num_history
    keep = torch.nonzero(w.mask.all(1)).flatten()
    if not len(keep):
        return {}
    keep = keep[torch.linspace(0, len(keep) - 1, min(max_windows, len(keep))).round().long()]
    obs, act, events = w.obs[keep], w.act[keep], w.rew[keep][:, context - 1 : -1] != 0
    generator = torch.Generator(device=obs.device).manual_seed(0)
    with evaluating(world_model, reward_end):
        scores = torch.cat([imagined_event_scores(reward_end, obs[i : i + batch], act[i : i + batch], context,
                                                  lambda o, a, t: world_model.predict_next(o, a, generator=generator)
                                                  )["imagined"] for i in range(0, len(obs), batch)])
    mean = lambda x: float(x.mean()) if len(x) else float("nan")  # noqa: E731
    return {"diag/imagined_reward_auroc": auroc(scores.flatten(), events.flatten()),
            "diag/imagined_reward_p_event": mean(scores[events]), "diag/imagined_reward_p_nonevent":
            mean(scores[~events])}


def heldout_diagnostics(world_model: nn.Module, reward_end: nn.Module, replay: ReplayBuffer, num_steps: int,
                        reward_end_len: int, device: torch.device, horizon: int = 0) -> dict[str, float]:
    """The held-out diagnostics on the newest `num_steps` transitions ({} when there are none); with `horizon`,
    also R_ψ on `horizon`-step open-loop imaginations of them."""
    out: dict[str, float] = {}
    w = newest_windows(replay, num_steps, world_model.num_history + 1, device)
    if w is not None:
        out.update(one_step_error(world_model, w))
    w = newest_windows(replay, num_steps, reward_end_len + 1, device)
    if w is not None:
        out.update(reward_end_detection(reward_end, w))
    w = newest_windows(replay, num_steps, world_model.num_history + horizon, device) if horizon else None
    if w is not None:
        out.update(imagined_reward_detection(world_model, reward_end, w))
    return out


class TensorBoard:
    """Scalars of every metrics.jsonl line, against env steps, in <run>/tensorboard; a no-op when the optional
    `tensorboard` package is absent (pip install 'diamond-suite[tensorboard]')."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.writer: Any = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                return
            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def write(self, metrics: dict[str, Any], step: int) -> None:
        if self.writer is None:
            return
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
