"""The two learned judges of the decision metrics, trained on the study's own real data (never on a world model's):

- an inverse-dynamics model (a small conv net): frames t-1, t, t+1 -> the class of a_t (evaluation/decision.py
  merges actions that the game makes indistinguishable);
- R_ψ (diamond/nets/reward_end.py, the agent's reward/termination model) trained with the project's loss
  (diamond.agent.reward_end_loss) on the same static data, so imagined trajectories can be given returns.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from diamond.agent import make_optimizer, reward_end_loss, warmup_schedule
from diamond.data import ReplayBuffer, sample_segments, to_float
from evaluation.decision import ActionMerge, idm_inputs


class InverseDynamics(nn.Module):
    """Three stacked frames [B, 9, 64, 64] in [-1, 1] -> logits over the action classes."""

    def __init__(self, num_classes: int, img_size: int = 64, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(9, width, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(2 * width, 2 * width, 4, 2, 1), nn.SiLU(),
            nn.Flatten(), nn.Linear(2 * width * (img_size // 8) ** 2, 128), nn.SiLU(), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def transition_index(episodes: Sequence[Any]) -> np.ndarray:
    """(episode, t) of every transition with a frame before it: [N, 2], t in 1 .. T - 1."""
    rows = [(e, t) for e, ep in enumerate(episodes) for t in range(1, len(ep.act))]
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


def train_reward_end(cfg: Any, train: ReplayBuffer, num_actions: int, steps: int, seed: int) -> nn.Module:
    """R_ψ as the agent builds it (cfg.reward_end) and trains it (reward_end_loss, cfg.reward_end_optim, segments of
    training.reward_end_seq_len + 1 frames padded on both sides), on the static training episodes."""
    from diamond.nets.reward_end import RewardEndNet

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    re = cfg.reward_end
    model = RewardEndNet(num_actions, channels=tuple(re.channels), depths=tuple(re.depths), cond_dim=re.cond_dim,
                         lstm_dim=re.lstm_dim, bottleneck_attention=re.bottleneck_attention, img_size=cfg.env.size,
                         attention_residual=re.attention_residual)
    opt = make_optimizer(model, cfg.reward_end_optim)
    sched = warmup_schedule(opt, cfg.reward_end_optim.warmup_steps)
    for _ in range(steps):
        seg = sample_segments(train, cfg.training.batch_size, cfg.training.reward_end_seq_len + 1, rng, pad="both",
                              recency_weights=None).to_torch()
        obs = to_float(seg.obs) * seg.mask[:, :, None, None, None]
        ce_rew, ce_end = reward_end_loss(model, obs, seg.act, seg.rew, seg.end, seg.mask)
        opt.zero_grad(set_to_none=True)
        (ce_rew + ce_end).backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.reward_end_optim.max_grad_norm)
        opt.step()
        sched.step()
    return model.eval()
