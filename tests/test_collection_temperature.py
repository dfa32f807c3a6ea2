"""Real-env collection samples the policy at training.collect_temperature (Freeway: IRIS App. H, T = 0.01): a
scripted actor with a slight preference becomes nearly greedy at T = 0.01 and stays nearly uniform at T = 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from diamond.loop.config import build_config
from diamond.loop.trainer import Trainer


class _SlightPreference(nn.Module):
    def __init__(self, num_actions: int) -> None:
        super().__init__()
        self.num_actions = num_actions

    def forward(self, x, state=None):
        logits = torch.zeros(x.shape[0], self.num_actions)
        logits[:, 1] = 0.1
        return logits, torch.zeros(x.shape[0]), state


def _share_of_preferred(tmp_path: Path, game: str) -> float:
    trainer = Trainer(build_config("smoke", {"env.game": game}), tmp_path / game)
    trainer.agent.actor_critic = _SlightPreference(trainer.num_actions)
    obs = np.zeros((3, 64, 64), np.uint8)
    picks = [trainer._policy_action(obs, epsilon=0.0) for _ in range(300)]
    return float(np.mean(np.array(picks) == 1))


def test_freeway_collects_near_greedily_and_other_games_sample_the_policy(tmp_path: Path) -> None:
    assert build_config("smoke", {"env.game": "Freeway"}).training.collect_temperature == 0.01
    assert _share_of_preferred(tmp_path, "Freeway") > 0.99
    assert _share_of_preferred(tmp_path, "Pong") < 0.4  # 6 actions: 1/6 + a little at T = 1
