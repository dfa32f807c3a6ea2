"""Per-game settings as the authors ran them (diamond.loop.config.GAME_OVERRIDES), the collection temperature Freeway's
one sets, and the released learning-rate warm-up (optim.warmup_from_zero)."""

from __future__ import annotations

import pytest
import torch

from diamond.loop.agent import Learner, build_agent, policy_probs, warmup_schedule
from diamond.loop.config import GAME_OVERRIDES, PROFILES, build_config
from diamond.loop.games import GAMES


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_freeway_collects_at_the_iris_temperature_and_no_other_game_does(profile: str) -> None:
    assert build_config(profile, **{"env.game": "Freeway"}).training.collect_temperature == 0.01
    assert build_config(profile).training.collect_temperature == 1.0  # Breakout, the default game


def test_no_other_game_changes_the_paper_profile() -> None:
    paper = build_config("paper")
    for game in GAMES:
        cfg = build_config("paper", **{"env.game": game})
        cfg.env.game = paper.env.game
        assert (cfg == paper) != (game in GAME_OVERRIDES), game


def test_an_explicit_override_keeps_the_last_word_over_the_game_setting() -> None:
    freeway = {"env.game": "Freeway"}
    assert build_config("paper", ["training.collect_temperature=0.5"], **freeway).training.collect_temperature == 0.5
    assert build_config("paper", {"training.collect_temperature": 1.0, **freeway}).training.collect_temperature == 1.0
    assert build_config("paper", {"training": {"collect_temperature": 2.0}}, **freeway).training.collect_temperature == 2.0


def test_every_game_override_names_an_atari_100k_game() -> None:
    assert set(GAME_OVERRIDES) <= set(GAMES)


def test_a_low_collection_temperature_turns_a_slight_preference_into_a_persistent_move() -> None:
    """IRIS App. H: at T = 0.01 a barely trained policy (logits 0.05 apart) acts almost greedily, so the chicken
    keeps walking up; at T = 1 it is the policy itself (near uniform)."""
    logits = torch.tensor([[0.0, 0.05, -0.05]])
    torch.testing.assert_close(policy_probs(logits), torch.softmax(logits, -1), rtol=0, atol=0)
    cold = policy_probs(logits, 0.01)
    assert cold[0, 1] > 0.99 and torch.allclose(cold.sum(-1), torch.ones(1))
    torch.manual_seed(0)
    draws = torch.multinomial(cold[0], 1000, replacement=True)
    assert (draws == 1).sum() >= 990
    assert policy_probs(logits).max() < 0.36  # T = 1: no action above 36 %
    # the released heads start at zero: a uniform policy stays uniform at any temperature
    torch.testing.assert_close(policy_probs(torch.zeros(1, 3), 0.01), torch.full((1, 3), 1 / 3))


def released_warmup_factor(step: int, warmup: int) -> float:
    """The released get_lr_sched lambda, written out: 1 from `warmup` on, step / warmup before."""
    return 1.0 if step >= warmup else step / max(1, warmup)


def lrs(from_zero: bool, warmup: int = 100, steps: int = 103) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_schedule(opt, warmup, from_zero)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])  # the rate the next update uses
        opt.step()
        sched.step()
    return out


def test_warmup_from_zero_is_the_released_schedule_and_the_default_is_one_step_ahead() -> None:
    released = [released_warmup_factor(s, 100) for s in range(103)]
    assert lrs(from_zero=True) == pytest.approx(released, abs=0, rel=1e-12)
    assert lrs(from_zero=True)[0] == 0.0  # the released first update runs at lr 0
    assert lrs(from_zero=False) == pytest.approx([min(1.0, (s + 1) / 100) for s in range(103)], abs=0, rel=1e-12)
    assert lrs(from_zero=False)[:99] == pytest.approx(released[1:100], abs=0, rel=1e-12)


def test_learner_uses_each_optimizers_warmup_switch() -> None:
    cfg = build_config("smoke", {"denoiser_optim.warmup_from_zero": True})
    learner = Learner(build_agent(cfg, num_actions=3), cfg)
    assert learner.optimizers["denoiser"].param_groups[0]["lr"] == 0.0
    assert learner.optimizers["actor_critic"].param_groups[0]["lr"] == pytest.approx(
        cfg.actor_critic_optim.lr / cfg.actor_critic_optim.warmup_steps)
