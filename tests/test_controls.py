"""The controls an agent must beat (diamond/loop/controls.py) and R_ψ's AUROC (diamond/loop/diagnostics.py), against
closed forms and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu

from diamond.loop.config import build_config
from diamond.loop.controls import ActionStats, MatchedPolicy, control_policies, shuffle_rewards, sticky_keep
from diamond.loop.diagnostics import auroc


def test_auroc_is_mann_whitney_u_over_the_pairs() -> None:
    """With ties (integer scores), AUROC = U / (n_pos n_neg), scipy's U of the event scores; 0.5 for a constant
    score, 1 and 0 for perfect and reversed rankings, NaN without one of the two kinds."""
    rng = np.random.default_rng(0)
    for _ in range(30):
        scores, labels = rng.integers(0, 6, 80).astype(float), rng.random(80) < 0.2
        if labels.all() or not labels.any():
            continue
        u = mannwhitneyu(scores[labels], scores[~labels]).statistic
        assert auroc(torch.tensor(scores), torch.tensor(labels)) == pytest.approx(u / (labels.sum() * (~labels).sum()))
    lab = torch.tensor([True, False, False, True])
    assert auroc(torch.full((4,), 0.3), lab) == 0.5
    assert auroc(torch.tensor([0.9, 0.1, 0.2, 0.8]), lab) == 1.0
    assert auroc(torch.tensor([0.1, 0.9, 0.8, 0.2]), lab) == 0.0
    assert np.isnan(auroc(torch.rand(4), torch.zeros(4, dtype=torch.bool)))


def test_action_stats_count_repeats_within_episodes_only() -> None:
    stats = ActionStats(3)
    stats.record(np.array([0, 1]))
    stats.record(np.array([0, 2]))  # env 0 repeats, env 1 does not
    stats.end_episode(0)
    stats.record(np.array([0, 2]))  # env 0 starts afresh (no pair), env 1 repeats
    assert stats.counts.tolist() == [3, 1, 2]
    assert stats.frequencies == pytest.approx([0.5, 1 / 6, 1 / 3])
    assert (stats.repeats, stats.pairs) == (2, 3)


@pytest.mark.parametrize("freqs,rate", [([0.7, 0.2, 0.1], 0.8), ([0.25] * 4, 0.5), ([0.5, 0.5], 0.9)])
def test_sticky_control_matches_the_agents_frequencies_and_repeat_rate(freqs: list[float], rate: float) -> None:
    """The sticky chain's empirical action frequencies and repeat rate equal the ones it was built from."""
    policy = MatchedPolicy(freqs, np.random.default_rng(1), keep=sticky_keep(freqs, rate))
    seen = ActionStats(len(freqs))
    obs = np.zeros((4, 1))
    for _ in range(20_000):
        seen.record(policy.act(obs))
    assert seen.frequencies == pytest.approx(freqs, abs=0.02)
    assert seen.repeat_rate == pytest.approx(rate, abs=0.01)


def test_sticky_keep_clips_an_agent_that_repeats_less_than_chance() -> None:
    assert sticky_keep([0.5, 0.5], 0.2) == 0.0
    assert sticky_keep([1.0, 0.0], 1.0) == 0.0  # a single action repeats anyway


def test_control_policies_are_uniform_matched_and_sticky() -> None:
    stats = ActionStats(3)
    for a in ([0, 0], [0, 0], [1, 0], [1, 2]):
        stats.record(np.array(a))
    pol = control_policies(stats, np.random.default_rng(0))
    assert sorted(pol) == ["matched", "sticky", "uniform"]
    assert pol["uniform"].p.tolist() == pytest.approx([1 / 3] * 3) and pol["uniform"].keep == 0
    assert pol["matched"].p.tolist() == pytest.approx([5 / 8, 2 / 8, 1 / 8]) and pol["matched"].keep == 0
    assert pol["sticky"].keep == pytest.approx(sticky_keep(stats.frequencies, stats.repeat_rate))
    assert pol["sticky"].keep > 0
    with pytest.raises(ValueError, match="frequencies"):
        MatchedPolicy([0.0, 0.0], np.random.default_rng(0))


def test_shuffled_rewards_keep_their_values_but_not_their_actions() -> None:
    """The reward-blind control: the valid rewards are a permutation of the originals (invalid entries untouched),
    and a reward that followed action 0 on every step no longer does."""
    g = torch.Generator().manual_seed(0)
    actions = torch.randint(0, 2, (64, 15), generator=g)
    rewards = (actions == 0).float()
    valid = torch.ones(64, 15, dtype=torch.bool)
    valid[:8, 10:] = False
    rewards[~valid] = 7.0
    out = shuffle_rewards(rewards, valid, generator=g)
    assert torch.equal(out[~valid], rewards[~valid])
    assert torch.equal(out[valid].sort().values, rewards[valid].sort().values)
    agree = (out[valid] == (actions[valid] == 0).float()).float().mean()
    assert 0.4 < agree < 0.6, agree


def test_the_learner_shuffles_imagined_rewards_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """training.shuffle_imagined_rewards routes the imagined rewards through shuffle_rewards before Eq. 14."""
    import diamond.loop.agent as agent_mod

    calls: list[int] = []
    monkeypatch.setattr(agent_mod, "shuffle_rewards", lambda r, v: calls.append(1) or r.flip(1))
    for flag in (False, True):
        cfg = build_config("smoke", {"env.size": 16, "training.shuffle_imagined_rewards": flag,
                                     "training.imagination_horizon": 3}, seed=0)
        learner = agent_mod.Learner(agent_mod.build_agent(cfg, 3), cfg)
        learner.update_actor_critic(torch.zeros(2, 4, 3, 16, 16), torch.zeros(2, 4, dtype=torch.long))
        assert len(calls) == int(flag)
