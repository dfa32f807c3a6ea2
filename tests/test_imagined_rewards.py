"""diamond.loop.diagnostics.imagined_event_scores (tools/imagined_rewards.py and the per-epoch diagnostic) scores
R_ψ on real transitions and on imagined ones from the same context and actions.
Oracle: a world model that returns the real next frame makes both scores equal, step for step; one that copies
the last frame does not."""

from __future__ import annotations

import torch

from diamond.loop.agent import build_reward_end
from diamond.loop.config import build_config
from diamond.loop.diagnostics import imagined_event_scores


def test_a_world_model_that_returns_the_real_future_scores_like_the_real_future() -> None:
    torch.manual_seed(0)
    cfg = build_config("smoke", ["env.size=16"])
    reward_end = build_reward_end(cfg, num_actions=4).eval()
    for p in reward_end.parameters():  # a random R_ψ that depends on every input
        torch.nn.init.normal_(p, std=0.3)
    context, horizon = 4, 5
    obs = torch.rand(6, context + horizon, 3, 16, 16) * 2 - 1
    act = torch.randint(0, 4, (6, context + horizon))
    seen = []

    def oracle(hist_obs, hist_act, t):
        seen.append(hist_act[:, -1].clone())  # the action taken at the newest frame
        return obs[:, context + t]

    scores = imagined_event_scores(reward_end, obs, act, context, oracle)
    torch.testing.assert_close(scores["imagined"], scores["real"], rtol=1e-5, atol=1e-6)
    assert all(torch.equal(a, act[:, context - 1 + t]) for t, a in enumerate(seen))
    copy = imagined_event_scores(reward_end, obs, act, context, lambda o, a, t: o[:, -1])
    assert not torch.allclose(copy["imagined"], scores["real"], atol=1e-3)
