"""training.reward_end_imagined: R_ψ trained partly on what imagination draws (issue 27: imagination that shows no
events gives the actor-critic no reward to learn from, however well R_ψ names real events).
Oracle: a scripted world model that records what it is asked and returns a known frame."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diamond.loop import agent as agent_module
from diamond.loop.agent import Learner, build_agent, imagined_segments
from diamond.loop.config import ConfigError, build_config


class Scripted(nn.Module):
    """Returns frames of value 0.5 + 0.01 k at its k-th call and records the actions it was given."""

    def __init__(self, num_history: int) -> None:
        super().__init__()
        self.num_history, self.calls, self.actions = num_history, 0, []

    def predict_next(self, obs_hist: torch.Tensor, act_hist: torch.Tensor, **_: object) -> torch.Tensor:
        assert obs_hist.shape[1] == self.num_history == act_hist.shape[1]
        self.actions.append(act_hist[:, -1].clone())
        self.calls += 1
        return torch.full_like(obs_hist[:, -1], 0.5 + 0.01 * self.calls)


def test_imagined_segments_replace_the_frames_after_L_with_open_loop_imagination() -> None:
    torch.manual_seed(0)
    L, T = 3, 7
    obs = torch.rand(5, T, 3, 4, 4) * 2 - 1
    act = torch.randint(0, 4, (5, T))
    mask = torch.ones(5, T, dtype=torch.bool)
    mask[1, 0] = False  # a left-padded context: stays real
    mask[2, 5:] = False  # the episode ends: padded frames stay zero
    obs = obs * mask[:, :, None, None, None]
    wm = Scripted(L)
    out = imagined_segments(wm, obs, act, mask, rows=3)
    assert wm.calls == T - L
    torch.testing.assert_close(out[:, :L], obs[:, :L])  # the context is real
    torch.testing.assert_close(out[1], obs[1])  # padded context: not imagined
    torch.testing.assert_close(out[3:], obs[3:])  # past `rows`: real
    for k, t in enumerate(range(L, T)):  # step t shows the k-th imagined frame, drawn after the real action a_{t-1}
        assert torch.all(out[0, t] == 0.5 + 0.01 * (k + 1))
        assert torch.equal(wm.actions[k], act[[0, 2], t - 1])
    assert torch.all(out[2, 5:] == 0) and torch.all(out[2, L:5] > 0.5)


@pytest.mark.parametrize("fraction, imagined_rows", [(0.0, 0), (0.5, 2), (1.0, 4)])
def test_the_learner_shows_r_psi_imagined_frames_only_when_asked(monkeypatch: pytest.MonkeyPatch, fraction: float,
                                                                 imagined_rows: int) -> None:
    cfg = build_config("smoke", {"env.size": 16, "training.reward_end_imagined": fraction})
    agent = build_agent(cfg, num_actions=4)
    learner = Learner(agent, cfg)
    seen = {}

    def spy(model, obs, act, rew, end, mask):  # the loss's own signature
        seen["obs"] = obs
        return torch.zeros((), requires_grad=True), torch.zeros((), requires_grad=True)

    monkeypatch.setattr(agent_module, "reward_end_loss", spy)
    monkeypatch.setattr(agent.world_model, "predict_next", lambda o, a, **_: torch.full_like(o[:, -1], 0.25))
    B, T, L = 4, cfg.training.reward_end_seq_len + 1, cfg.diffusion.num_history
    obs = torch.rand(B, T, 3, 16, 16) * 2 - 1
    mask = torch.ones(B, T, dtype=torch.bool)
    learner.update_reward_end(obs, torch.zeros(B, T, dtype=torch.long), torch.zeros(B, T), torch.zeros(B, T,
                              dtype=torch.bool), mask)
    changed = (seen["obs"] != obs).flatten(1).any(1)
    assert changed.sum() == imagined_rows and torch.all(seen["obs"][changed][:, L:] == 0.25)


def test_the_fraction_is_range_checked() -> None:
    with pytest.raises(ConfigError, match="reward_end_imagined"):
        build_config("smoke", {"training.reward_end_imagined": 1.5})
