"""A world model written only for the tests (the leaderboard's out-of-tree entrant): the last frame plus a learned
per-channel offset, declaring nothing, so every suite treats it as a plug-in with the protocol's defaults."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class Shift(nn.Module):
    def __init__(self, num_history: int) -> None:
        super().__init__()
        self.num_history, self.segment_length = num_history, num_history + 1
        self.num_steps, self.sampler, self.nfe = 1, "shift", 1
        self.offset = nn.Parameter(torch.zeros(3))

    def loss(self, obs: Tensor, act: Tensor, mask: Tensor) -> Tensor:
        L = self.num_history
        return ((obs[:, L - 1] + self.offset.view(1, 3, 1, 1) - obs[:, L]) ** 2).mean()

    def memory(self, obs: Tensor, act: Tensor, state: Any = None) -> None:
        return None

    def predict_next(self, obs_hist: Tensor, act_hist: Tensor, num_steps: int | None = None,
                     generator: torch.Generator | None = None, state: Any = None) -> Tensor:
        return (obs_hist[:, -1] + self.offset.view(1, 3, 1, 1)).clamp(-1, 1)


def build(cfg: Any, num_actions: int) -> Shift:
    if cfg.world_model.options:
        raise ValueError(f"tests._shift_wm takes no options, got {sorted(cfg.world_model.options)}")
    return Shift(cfg.diffusion.num_history)
