"""The two learned judges of the decision metrics, trained on the study's own real data (never on a world model's):

- an inverse-dynamics model (a small conv net): frames t-1, t, t+1 -> the class of a_t (evaluation/decision.py
  merges actions that the game makes indistinguishable);
- R_ψ (diamond/models/nets/reward_end.py, the agent's reward/termination model) trained with the project's loss
  (diamond.loop.agent.reward_end_loss) on the same static data, so imagined trajectories can be given returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from diamond.loop.agent import build_reward_end, make_optimizer, reward_end_loss, warmup_schedule
from diamond.loop.config import config_hash
from diamond.loop.data import ReplayBuffer, class_frequencies, sample_segments, to_float
from diamond.models.nets.reward_end import LogPriorOffset
from diamond.run.checkpoint import load_checkpoint, restore_rng, rng_state, save_checkpoint
from diamond.run.io import CorruptFileError
from evaluation.decision import ActionMerge, idm_inputs


def conv_classifier(in_channels: int, outputs: int, img_size: int, width: int = 16) -> nn.Sequential:
    """The judges' small conv net: three stride-2 convolutions, then a 128-unit hidden layer."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 4, 2, 1), nn.SiLU(),
        nn.Conv2d(width, 2 * width, 4, 2, 1), nn.SiLU(),
        nn.Conv2d(2 * width, 2 * width, 4, 2, 1), nn.SiLU(),
        nn.Flatten(), nn.Linear(2 * width * (img_size // 8) ** 2, 128), nn.SiLU(), nn.Linear(128, outputs))


class InverseDynamics(nn.Module):
    """Three stacked frames [B, 9, 64, 64] in [-1, 1] -> logits over the action classes."""

    def __init__(self, num_classes: int, img_size: int = 64, width: int = 16) -> None:
        super().__init__()
        self.net = conv_classifier(9, num_classes, img_size, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def transition_index(episodes: Sequence[Any], first: int = 1) -> np.ndarray:
    """(episode, t) of every transition from step `first` on: [N, 2], t in first .. T - 1 (first = 1: those with a
    frame before them, as the inverse-dynamics model needs)."""
    rows = [(e, t) for e, ep in enumerate(episodes) for t in range(first, len(ep.act))]
    return np.array(rows, np.int64).reshape(-1, 2)


def _batch(episodes: Sequence[Any], index: np.ndarray, merge: ActionMerge) -> tuple[torch.Tensor, torch.Tensor]:
    obs = [episodes[e].obs for e, _ in index]
    x = idm_inputs(np.stack([o[t - 1] for o, (_, t) in zip(obs, index)]), np.stack([o[t] for o, (_, t) in zip(obs, index)]),
                   np.stack([o[t + 1] for o, (_, t) in zip(obs, index)]))
    y = merge.labels(np.array([episodes[e].act[t] for e, t in index]))
    return x, torch.from_numpy(y)


def train_inverse_dynamics(episodes: Sequence[Any], merge: ActionMerge, steps: int, seed: int,
                           batch_size: int = 64, lr: float = 1e-3) -> InverseDynamics:
    """Class-balanced cross-entropy on real transitions (the expert's actions are far from uniform)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    index = transition_index(episodes)
    labels = merge.labels(np.array([episodes[e].act[t] for e, t in index]))
    counts = np.bincount(labels, minlength=len(merge.classes)).astype(np.float64)
    weights = torch.tensor(counts.sum() / np.maximum(counts, 1) / len(counts), dtype=torch.float32)
    idm = InverseDynamics(len(merge.classes), img_size=episodes[0].obs.shape[-1])
    opt = torch.optim.AdamW(idm.parameters(), lr=lr)
    for _ in range(steps):
        x, y = _batch(episodes, index[rng.integers(0, len(index), batch_size)], merge)
        loss = F.cross_entropy(idm(x), y, weight=weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return idm.eval()


@torch.no_grad()
def balanced_accuracy(idm: nn.Module, episodes: Sequence[Any], merge: ActionMerge, max_transitions: int,
                      seed: int) -> float:
    """Mean per-class recall on (up to `max_transitions` of) the real transitions of `episodes`: the held-out
    ceiling of the inverse-dynamics model, on the dataset's own action distribution."""
    index = transition_index(episodes)
    index = index[np.sort(np.random.default_rng(seed).permutation(len(index))[:max_transitions])]
    pred, true = [], []
    for chunk in np.array_split(index, max(1, len(index) // 256)):
        x, y = _batch(episodes, chunk, merge)
        pred.append(idm(x).argmax(-1).numpy())
        true.append(y.numpy())
    pred, true = np.concatenate(pred), np.concatenate(true)
    return float(np.mean([np.mean(pred[true == c] == c) for c in np.unique(true)]))


class JudgeRewardEnd(LogPriorOffset):
    """R_ψ as a judge of imagined frames: the agent's network, optionally action-blind and started at the base rate.

    `blind`: every action is replaced by action 0 (in training and scoring), so rewards and ends can only be read
    from the frames. Why: R_ψ given the actions learns which actions go with rewards (the expert's do), and then
    ranks a policy family from the actions alone; measured at 500 updates on the Figure 3 data, it gave the
    copy-last-frame floor the same ranking as the emulator (τ 0.53 both), so τ measured R_ψ, not the world model.
    `prior` (reward-sign and end frequencies): the logits are offset by their logs (LogPriorOffset says why)."""

    def __init__(self, net: nn.Module, prior: tuple[Sequence[float], Sequence[float]] | None, blind: bool) -> None:
        super().__init__(prior)
        self.net, self.blind = net, blind

    def forward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor, state: Any = None) -> tuple:
        rew, end, state = self.net(obs, torch.zeros_like(act) if self.blind else act, next_obs, state)
        return (*self.offset(rew, end), state)


class EventDetector(LogPriorOffset):
    """A reward/end judge that reads events from the frames of each transition: o_t in [-1, 1] and the amplified
    change o_{t+1} - o_t (what a reward or a life loss changes is a few pixels: a brick, the score, the ball), a
    small conv net, logits offset by the log class frequencies (so it starts at the base rate). Called like R_ψ;
    it has no memory and never sees the actions, so a policy's return inside a world model comes from the
    imagined frames alone."""

    def __init__(self, prior: tuple[Sequence[float], Sequence[float]] | None, img_size: int = 64, width: int = 16,
                 gain: float = 4.0) -> None:
        super().__init__(prior)
        self.gain = gain
        self.net = conv_classifier(6, 5, img_size, width)

    def forward(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor, state: Any = None) -> tuple:
        b, t = obs.shape[:2]
        x = torch.cat([obs, self.gain * (next_obs - obs)], dim=2).flatten(0, 1)
        logits = self.net(x).view(b, t, 5)
        return (*self.offset(logits[..., :3], logits[..., 3:]), None)


def train_event_detector(train: ReplayBuffer, steps: int, seed: int, batch_size: int = 64, lr: float = 1e-3,
                         progress: bool = False) -> EventDetector:
    """Cross-entropy on reward signs and end flags of uniformly drawn real transitions (both frames real)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    index = transition_index(train.episodes, first=0)
    model = EventDetector(class_frequencies(train), img_size=train.episodes[0].obs.shape[-1])
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in tqdm(range(steps), desc="event detector updates", disable=not progress):
        rows = index[rng.integers(0, len(index), batch_size)]
        eps = [train.episodes[e] for e, _ in rows]
        obs = to_float(torch.from_numpy(np.stack([ep.obs[t] for ep, (_, t) in zip(eps, rows)])))[:, None]
        nxt = to_float(torch.from_numpy(np.stack([ep.obs[t + 1] for ep, (_, t) in zip(eps, rows)])))[:, None]
        rew = torch.tensor([int(np.sign(ep.rew[t])) + 1 for ep, (_, t) in zip(eps, rows)], dtype=torch.long)
        end = torch.tensor([int(ep.end[t]) for ep, (_, t) in zip(eps, rows)], dtype=torch.long)
        rew_logits, end_logits, _ = model(obs, torch.zeros(batch_size, 1, dtype=torch.long), nxt)
        loss = F.cross_entropy(rew_logits[:, 0], rew) + F.cross_entropy(end_logits[:, 0], end)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


def build_judge_reward_end(cfg: Any, num_actions: int, prior: tuple[Sequence[float], Sequence[float]] | None,
                           blind: bool) -> JudgeRewardEnd:
    """The judges' R_ψ: the agent's network in JudgeRewardEnd."""
    return JudgeRewardEnd(build_reward_end(cfg, num_actions), prior, blind)


def _reward_end_batch(cfg: Any, buffer: ReplayBuffer, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    seg = sample_segments(buffer, cfg.training.batch_size, cfg.training.reward_end_seq_len + 1, rng, pad="both",
                          recency_weights=None).to_torch()
    return to_float(seg.obs) * seg.mask[:, :, None, None, None], seg.act, seg.rew, seg.end, seg.mask


def train_reward_end(cfg: Any, train: ReplayBuffer, num_actions: int, steps: int, seed: int,
                     resume: dict[str, Any] | None = None, save: Callable[[dict[str, Any]], None] | None = None,
                     save_every: int = 100, progress: bool = False, prior: bool = False, blind: bool = False
                     ) -> nn.Module:
    """R_ψ trained as the agent trains it (reward_end_loss, cfg.reward_end_optim, segments of
    training.reward_end_seq_len + 1 frames padded on both sides), on the static training episodes.

    `save(state)` receives a resumable state every `save_every` steps; `resume` is such a state (the run goes
    on where it stopped, with the same random streams). `prior`, `blind`: the judge's variants (JudgeRewardEnd)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_judge_reward_end(cfg, num_actions, class_frequencies(train) if prior else None, blind)
    opt = make_optimizer(model, cfg.reward_end_optim)
    sched = warmup_schedule(opt, cfg.reward_end_optim.warmup_steps)
    done = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        restore_rng(resume["rng"], rng)
        done = int(resume["step"])
    model.train()
    for step in tqdm(range(done + 1, steps + 1), desc="R_ψ updates", initial=done, total=steps, disable=not progress):
        ce_rew, ce_end = reward_end_loss(model, *_reward_end_batch(cfg, train, rng))
        opt.zero_grad(set_to_none=True)
        (ce_rew + ce_end).backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.reward_end_optim.max_grad_norm)
        opt.step()
        sched.step()
        if save is not None and (step % save_every == 0 or step == steps):
            save({"step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
                  "scheduler": sched.state_dict(), "rng": rng_state(rng)})
    return model.eval()


@torch.no_grad()
def reward_end_heldout(cfg: Any, model: nn.Module, test: Sequence[Any], batches: int, seed: int) -> dict[str, float]:
    """R_ψ's cross-entropies on held-out episodes beside those of the best constant guess (the held-out label
    frequencies): a judge that only learned the base rate scores the constant's value, and ranks no policy."""
    buffer = ReplayBuffer()
    for ep in test:
        buffer.add_episode(ep)
    rng = np.random.default_rng(seed)
    ce = np.zeros(2)
    labels: list[list[np.ndarray]] = [[], []]
    for _ in range(batches):
        obs, act, rew, end, mask = _reward_end_batch(cfg, buffer, rng)
        ce += np.array([v.item() for v in reward_end_loss(model, obs, act, rew, end, mask)]) / batches
        valid = (mask[:, :-1] & mask[:, 1:]).numpy()
        labels[0].append((np.sign(rew[:, :-1].numpy()) + 1)[valid].astype(np.int64))
        labels[1].append(end[:, :-1].numpy()[valid].astype(np.int64))

    def constant(y: np.ndarray, classes: int) -> float:
        freq = np.bincount(y, minlength=classes) / len(y)
        return float(-(freq[freq > 0] * np.log(freq[freq > 0])).sum())

    rew_y, end_y = np.concatenate(labels[0]), np.concatenate(labels[1])
    return {"reward_ce": float(ce[0]), "reward_ce_constant": constant(rew_y, 3), "end_ce": float(ce[1]),
            "end_ce_constant": constant(end_y, 2), "transitions": int(len(rew_y)), "rewarded": int((rew_y != 1).sum()),
            "ends": int(end_y.sum())}


def save_judges(path: Path, idm: InverseDynamics, reward_model: nn.Module, merge: ActionMerge, digest: str) -> None:
    """Both judges' weights, the reward judge's kind and the action classes, tagged with the judges' config hash."""
    kind = "detector" if isinstance(reward_model, EventDetector) else "r_psi"
    save_checkpoint(path, {"idm": idm.state_dict(), "reward_end": reward_model.state_dict(), "reward_judge": kind,
                           "reward_end_blind": getattr(reward_model, "blind", True),
                           "classes": [list(c) for c in merge.classes]}, digest)


def load_judges(path: Path, cfg: Any, num_actions: int) -> tuple[InverseDynamics, nn.Module, list[list[int]]]:
    """(IDM, reward/end judge, action classes) from save_judges' file, written under `cfg` (checked by its hash; weights_only)."""
    state = load_checkpoint(path, config_hash(cfg), torch.device("cpu"))
    if state is None:
        raise FileNotFoundError(f"{path} is missing: the judges run kept no weights.")
    try:
        classes = [[int(a) for a in c] for c in state["classes"]]
        idm = InverseDynamics(len(classes), img_size=cfg.env.size)
        reward_model = (EventDetector(None, img_size=cfg.env.size)  # its priors are loaded with the weights
                        if state["reward_judge"] == "detector"
                        else build_judge_reward_end(cfg, num_actions, None, bool(state["reward_end_blind"])))
        idm.load_state_dict(state["idm"])
        reward_model.load_state_dict(state["reward_end"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CorruptFileError(f"{path}: its weights do not fit the judges' networks ({type(e).__name__}); move the "
                               "judges run folder away to train them again") from e
    return idm.eval(), reward_model.eval(), classes
