"""R_ψ at the `cpu` budget, small scale: rare events (3 % of steps), the `cpu` head and learning rate, a game
whose reward shows in the frames. The released head (a bias-free last layer, the base rate carried by the LSTM)
learns nothing in the updates it gets; with the `cpu` cure (logits started at the collected base rate,
amplified frame difference as input) it ranks event steps above the others. Measured through the trainer's own
path: initial collection, Trainer.train_phase("reward_end"), the held-out diagnostics' AUROC."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from diamond.loop.config import build_config
from diamond.loop.diagnostics import newest_windows, reward_end_detection
from diamond.loop.trainer import Trainer

SIZE = 16
EVENT_RATE = 0.03


class RareEventEnv(gym.Env):
    """A dot random-walks over a black 16x16 screen (a change every step that means nothing); with probability
    3 % a step scores +1 and the score block in the top-left corner changes colour (what an Atari score does).
    An episode (a life) lasts 60 steps and its last step ends it."""

    def __init__(self, seed: int, size: int = SIZE) -> None:
        self.action_space = gym.spaces.Discrete(3)
        self.rng, self.size = np.random.default_rng(seed), size

    def _frame(self) -> np.ndarray:
        f = np.zeros((3, self.size, self.size), np.uint8)
        f[:, :3, :3] = np.array([60, 120, 200][self.score % 3], np.uint8)
        y, x = self.dot
        f[:, y:y + 2, x:x + 2] = 255
        return f

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        self.t, self.score = 0, 0
        self.dot = self.rng.integers(4, self.size - 2, 2)
        return self._frame(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        self.dot = np.clip(self.dot + self.rng.integers(-1, 2, 2), 4, self.size - 2)
        reward = float(self.rng.random() < EVENT_RATE)
        self.score += int(reward)
        return self._frame(), reward, self.t >= 60, False, {}


def make_rare_event_env(game: str, *, train: bool, seed: int | None, **kwargs: Any) -> RareEventEnv:
    return RareEventEnv(0 if seed is None else seed)


def heldout_auroc(tmp_path: Path, overrides: dict[str, Any], updates: int) -> dict[str, float]:
    cfg = build_config("cpu", {"env.size": SIZE, "training.initial_collect_steps": 3000,
                               "training.initial_collect_max_steps": 3000, "training.tensorboard": False, **overrides},
                       seed=0)
    trainer = Trainer(cfg, tmp_path, env_factory=make_rare_event_env)
    trainer.initial_collection()
    trainer.train_phase("reward_end", updates)
    heldout = trainer.collect_heldout(1500)  # later games, never trained on
    w = newest_windows(heldout, 1500, cfg.training.reward_end_seq_len + 1, trainer.device)
    return reward_end_detection(trainer.agent.reward_end, w)


RELEASED_HEAD = {"reward_end.prior_offset": False, "reward_end.frame_difference": 0.0}
UPDATES = 60


@pytest.mark.parametrize("head", ["released", "cpu"])
def test_reward_model_names_rare_events_only_with_the_cure(tmp_path: Path, head: str) -> None:
    scores = heldout_auroc(tmp_path, RELEASED_HEAD if head == "released" else {}, UPDATES)
    auc = scores["diag/reward_auroc"]
    print(head, {k: round(v, 4) for k, v in scores.items() if "reward" in k})
    if head == "released":
        assert auc < 0.7, scores  # the failure, reproduced
    else:
        assert auc > 0.9 and scores["diag/reward_p_event"] > 3 * scores["diag/reward_p_nonevent"], scores
