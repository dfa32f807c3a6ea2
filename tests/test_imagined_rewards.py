"""diamond.loop.diagnostics.imagined_event_scores (tools/imagined_rewards.py and the per-epoch diagnostic) scores
R_ψ on real transitions and on imagined ones from the same context and actions.
Oracle: a world model that returns the real next frame makes both scores equal, step for step; one that copies
the last frame does not."""

from __future__ import annotations

import json
import sys
from pathlib import Path

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


def test_frame_changes_tell_a_frozen_imagination_from_the_real_future() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from imagined_rewards import frame_changes

    torch.manual_seed(0)
    context, horizon = 4, 5
    obs = torch.rand(3, context + horizon, 3, 8, 8) * 2 - 1
    oracle = frame_changes(obs, obs[:, context:], context)
    assert oracle["imagined_change_per_step"] == oracle["real_change_per_step"]
    assert oracle["imagined_error_per_step"] == [0.0] * horizon and min(oracle["real_change_per_step"]) > 0.2
    frozen = frame_changes(obs, obs[:, context - 1 : context].expand(-1, horizon, -1, -1, -1), context)
    assert frozen["imagined_change_per_step"] == [0.0] * horizon and min(frozen["imagined_error_per_step"]) > 0.2


def test_the_tool_measures_a_finished_run_and_draws_its_segments(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import imagined_rewards

    from diamond.train import run
    from tests.test_trainer import TINY

    run(tmp_path / "run", "Breakout", seed=3, profile="smoke", overrides=TINY)
    out, png = tmp_path / "r.json", tmp_path / "frames.png"
    assert imagined_rewards.main([str(tmp_path / "run"), "--segments", "8", "--horizon", "3", "--out", str(out),
                                  "--frames", str(png)]) == 0
    result = json.loads(out.read_text())
    assert result["segments"] == 8 and len(result["imagined_change_per_step"]) == 3
    assert len(result["imagined_p_event_per_step"]) == 3 and png.stat().st_size > 1000
    assert len(result["raw"]["events"]) == len(result["raw"]["imagined"]) == 8 and len(result["raw"]["real"][0]) == 3


def test_the_auroc_ci_is_over_segments() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from imagined_rewards import auroc_ci

    events = torch.zeros(40, 5, dtype=torch.bool)
    events[:, 2] = True
    perfect, noise = events.float(), torch.rand(40, 5, generator=torch.Generator().manual_seed(0))
    assert auroc_ci(perfect, events, 0) == (1.0, 1.0)
    low, high = auroc_ci(noise, events, 0)
    assert low < 0.5 < high and high - low < 0.4
