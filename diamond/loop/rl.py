"""RL objectives of Appendix F: λ-returns (Eq. 14), value loss (Eq. 15), REINFORCE with baseline (Eq. 16).

Tensors are time-major over an imagined trajectory of horizon H: rewards/ends/valid are [B, H],
values are [B, H + 1] (the last one bootstraps at the horizon)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Categorical


def lambda_returns(rewards: Tensor, ends: Tensor, values: Tensor, gamma: float, lambda_: float) -> Tensor:
    """Eq. 14: Λ_t = r_t + γ(1 − d_t)[(1 − λ)V(x_{t+1}) + λΛ_{t+1}], Λ_H = V(x_H). Returns [B, H]."""
    horizon = rewards.shape[1]
    if values.shape[1] != horizon + 1:
        raise ValueError(f"values must have H + 1 = {horizon + 1} steps, got {values.shape[1]}")
    not_end = 1.0 - ends.float()
    out = torch.empty_like(rewards)
    next_return = values[:, horizon]
    for t in reversed(range(horizon)):
        next_return = rewards[:, t] + gamma * not_end[:, t] * ((1 - lambda_) * values[:, t + 1] + lambda_ * next_return)
        out[:, t] = next_return
    return out


def value_loss(values: Tensor, returns: Tensor, valid: Tensor) -> Tensor:
    """Eq. 15: squared error to stop-gradient λ-returns, averaged over valid (b, t)."""
    err = (values[:, : returns.shape[1]] - returns.detach()) ** 2
    return _masked_mean(err, valid)


def policy_loss(logits: Tensor, actions: Tensor, returns: Tensor, values: Tensor, valid: Tensor, entropy_weight: float) -> tuple[Tensor, Tensor]:
    """Eq. 16: −[log π(a_t) · sg(Λ_t − V_t) + η H(π)], averaged over valid (b, t). Returns (loss, mean entropy)."""
    dist = Categorical(logits=logits)
    advantage = (returns - values[:, : returns.shape[1]]).detach()
    entropy = dist.entropy()
    loss = -(dist.log_prob(actions) * advantage + entropy_weight * entropy)
    return _masked_mean(loss, valid), _masked_mean(entropy.detach(), valid)


def _masked_mean(x: Tensor, valid: Tensor) -> Tensor:
    valid = valid.to(x.dtype)
    return (x * valid).sum() / valid.sum().clamp(min=1.0)
