"""Decision metrics (evaluation/decision.py): oracles for each formula, and every metric's ceiling (the emulator as
a world model) separated from its floors (copy-last-frame; the emulator with its actions withheld) on real
Breakout states."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ablations.static_decision import PROBE_EPSILON, expert_family
from diamond.loop.data import ReplayBuffer, to_float
from diamond.loop.envs import make_env
from evaluation.decision import (
    ActionMerge,
    action_following,
    counterfactual_error,
    counterfactual_match,
    counterfactual_sequences,
    counterfactual_spread,
    imagined_returns,
    kendall_tau,
    merge_actions_by_effect,
    play_policies,
    real_returns,
    rollout,
    separated,
)
from evaluation.decision_eval import MARGINS, DecisionSettings
from evaluation.decision_models import balanced_accuracy, train_inverse_dynamics
from evaluation.emulator_wm import (
    ActionsWithheld,
    CopyLastFrame,
    EmulatorRewardEnd,
    EmulatorWorldModel,
    collect_probes,
    restore,
)

L = 4
MEANINGS = ("NOOP", "FIRE", "RIGHT", "LEFT")


def _expert_policy(epsilon: float, seed: int):
    return expert_family(MEANINGS, (epsilon,))[f"expert ε={epsilon:g}"](np.random.default_rng(seed))


@pytest.fixture(scope="module")
def probes():
    return collect_probes("Breakout", 8, L, _expert_policy(PROBE_EPSILON, 0), seed=7, every=15)


@pytest.fixture(scope="module")
def merge(probes):
    return merge_actions_by_effect(EmulatorWorldModel(probes), probes, 4)


def _floors(probes):
    return {"copy last frame": CopyLastFrame(L), "actions withheld": ActionsWithheld(EmulatorWorldModel(probes))}


def test_emulator_world_model_replays_the_real_game_and_refuses_strangers(probes):
    actions = np.random.default_rng(0).integers(0, 4, (len(probes), 1, 6))
    imagined = rollout(EmulatorWorldModel(probes), probes, actions)
    env = make_env("Breakout", train=False, seed=0)  # its own env: the emulator model's shared one is not touched
    env.reset()
    for k in (0, len(probes) - 1):
        restore(env, probes.states[k])
        real = np.stack([env.step(int(a))[0] for a in actions[k, 0]])
        np.testing.assert_array_equal(imagined[k, 0], real)
    stranger = to_float(torch.from_numpy(probes.obs[:1] // 2))
    with pytest.raises(ValueError, match="can only continue"):
        EmulatorWorldModel(probes).predict_next(stranger, torch.zeros(1, L, dtype=torch.int64))


def test_breakout_merges_fire_into_noop_and_keeps_the_moves(merge):
    assert merge.classes == ((0, 1), (2,), (3,))
    assert merge.agreement[0, 1] >= 0.5 and merge.agreement[2, 3] == 0.0
    np.testing.assert_array_equal(merge.labels(np.array([3, 1, 0, 2])), [2, 0, 0, 1])


def test_action_following_ceiling_and_floors_are_separated(probes, merge):
    buf = ReplayBuffer()
    env = make_env("Breakout", train=True, seed=3)
    policy = _expert_policy(0.5, 3)  # half random: every action class is seen often
    obs, _ = env.reset()
    buf.start_episode(obs)
    for _ in range(500):
        a = policy(env)
        obs, r, term, trunc, _ = env.step(a)
        buf.add_step(a, r, term, trunc, obs)
        if term or trunc:
            obs, _ = env.reset()
            buf.start_episode(obs)
    episodes = buf.episodes
    idm = train_inverse_dynamics(episodes, merge, steps=100, seed=0, batch_size=32)
    assert balanced_accuracy(idm, episodes, merge, 256, 0) > 0.6
    ceiling = action_following(EmulatorWorldModel(probes), idm, probes, merge).mean()
    for name, model in _floors(probes).items():
        floor = action_following(model, idm, probes, merge).mean()
        assert separated(ceiling, floor, MARGINS["action_accuracy"]), (name, ceiling, floor)


def test_counterfactual_ceiling_is_exact_and_floors_are_action_blind(probes, merge):
    seqs = counterfactual_sequences(merge, 4)
    acts = np.broadcast_to(seqs, (len(probes), *seqs.shape)).copy()
    real = rollout(EmulatorWorldModel(probes), probes, acts)
    again = rollout(EmulatorWorldModel(probes), probes, acts)
    assert counterfactual_error(again, real).max() == 0.0
    ceiling_match = counterfactual_match(again, real).mean()
    assert ceiling_match > 0.9  # < 1 only where two held actions really give the same future (paddle at a wall)
    real_spread = counterfactual_spread(real).mean()
    assert real_spread > 0
    for name, model in _floors(probes).items():
        imagined = rollout(model, probes, acts)
        assert counterfactual_spread(imagined).max() == 0.0, name  # every action gives the same future
        assert separated(ceiling_match, counterfactual_match(imagined, real).mean(), MARGINS["cf_match"]), name
        assert separated(1.0, counterfactual_spread(imagined).mean() / real_spread, MARGINS["cf_spread_ratio"])
        assert counterfactual_error(imagined, real).mean() > 0, name


def test_policy_evaluation_ceiling_ranks_as_the_game_and_floors_do_not(probes):
    actions, rewards, losses = play_policies(probes, expert_family(MEANINGS), 20, seed=0)
    real = real_returns(rewards, losses).T  # [K, P]
    assert np.ptp(real.mean(0)) > 0, "the family's real returns must differ for τ to mean anything"
    acts = actions.transpose(1, 0, 2).copy()
    emulator = EmulatorWorldModel(probes)
    imagined = imagined_returns(rollout(emulator, probes, acts), probes, acts, EmulatorRewardEnd(emulator))
    np.testing.assert_allclose(imagined, real, atol=1e-5)  # the emulator's frames and rewards: the real returns
    assert kendall_tau(imagined.mean(0), real.mean(0)) == pytest.approx(1.0)
    for name, model in _floors(probes).items():
        oracle = EmulatorRewardEnd(getattr(model, "model", emulator))  # withheld: the rewards of what it played
        blind = imagined_returns(rollout(model, probes, acts), probes, acts, oracle)
        tau = kendall_tau(blind.mean(0), real.mean(0))
        assert separated(1.0, tau, MARGINS["policy_tau"]), (name, tau)


# ------------------------------------------------------------------------------------------ formula oracles


def test_real_returns_stop_at_the_first_life_loss():
    rewards = np.array([[1.0, 4.0, 0.0, 1.0, 1.0], [0.0, 1.0, -2.0, 0.0, 1.0]])
    losses = np.array([[False, False, True, False, False], [False, False, False, False, False]])
    np.testing.assert_array_equal(real_returns(rewards, losses), [2.0, 1.0])


class ScriptedReward:
    """Reward logits making p(+1) = 0.5, p(0) = 0.5 and p(end) = 0.25 at every step."""

    def __call__(self, obs, act, next_obs, state=None):
        b, t = act.shape
        rew = torch.log(torch.tensor([1e-12, 0.5, 0.5])).expand(b, t, 3)
        end = torch.log(torch.tensor([0.75, 0.25])).expand(b, t, 2)
        return rew, end, state


def test_imagined_return_is_the_survival_weighted_expected_reward(probes):
    k = len(probes)
    frames = np.repeat(probes.obs[:, None, -1:], 3, axis=2)  # [K, 1, 3, ...]
    out = imagined_returns(frames, probes, np.zeros((k, 1, 3), np.int64), ScriptedReward())
    np.testing.assert_allclose(out, 0.5 * (1 + 0.75 + 0.75 ** 2), rtol=1e-5)


def test_kendall_tau_is_tau_b_with_near_equal_returns_tied():
    from scipy.stats import kendalltau

    rng = np.random.default_rng(0)
    for _ in range(50):  # integer returns: ties are exact, so τ-b as scipy computes it
        x, y = rng.integers(0, 4, 6).astype(float), rng.integers(0, 4, 6).astype(float)
        expected = kendalltau(x, y).statistic if np.ptp(x) and np.ptp(y) else 0.0
        assert kendall_tau(x, y) == pytest.approx(expected)
    real = np.array([4.3, 4.1, 3.3, 1.4, 0.75])
    assert kendall_tau(2.73 - 1e-7 * np.arange(5), real) == 0.0  # a base-rate judge's float noise ranks nothing
    assert kendall_tau(real + 0.004 * np.array([0, 1, 0, 1, 0]), real) == pytest.approx(1.0)


def test_kendall_tau_and_match_edge_cases():
    assert kendall_tau(np.ones(5), np.arange(5.0)) == 0.0
    assert kendall_tau(np.arange(5.0), -np.arange(5.0)) == pytest.approx(-1.0)
    same = np.zeros((1, 3, 2, 3, 4, 4), np.uint8)
    real = same.copy()
    real[0, 1] += 10
    real[0, 2] += 20
    np.testing.assert_allclose(counterfactual_match(same, real), [[1.0, 0.0, 0.0]])  # all nearest real[0]
    np.testing.assert_allclose(counterfactual_match(real, real), [[1.0, 1.0, 1.0]])
    tie = np.zeros_like(real)
    np.testing.assert_allclose(counterfactual_match(same, tie), [[1 / 3] * 3])
    assert not separated(0.5, 0.45, 0.1) and separated(0.9, 0.1, 0.5)


def test_decision_settings_reject_bad_values():
    with pytest.raises(ValueError, match="unknown decision setting"):
        DecisionSettings.from_dict({"probez": 3})
    for bad in ({"probes": 1}, {"cf_horizon": 0}, {"merge_threshold": 0.0}, {"probes": -2}):
        with pytest.raises(ValueError, match="out of range"):
            DecisionSettings.from_dict(bad)
    assert DecisionSettings.from_dict({"probes": 0}).probes == 0


def test_action_merge_labels_follow_the_classes():
    merge = ActionMerge(((0, 3), (1,), (2,)), np.eye(4))
    np.testing.assert_array_equal(merge.labels(np.array([0, 1, 2, 3])), [0, 1, 2, 0])
    np.testing.assert_array_equal(merge.representatives, [0, 1, 2])


# ------------------------------------------------------------------------------------------ summary and report


def _synthetic_summary(real_returns_per_policy: np.ndarray):
    """summarise() over hand-made scores: a perfect ceiling, blind floors, a half-way model; K=6, S=3, T=2."""
    from evaluation.decision_eval import CEILING, FLOORS, DecisionSetup, Scores, summarise
    from evaluation.emulator_wm import Probes

    k, s, t, p = 6, 3, 2, len(real_returns_per_policy)
    rng = np.random.default_rng(0)
    real = rng.integers(0, 255, (k, s, t, 3, 4, 4)).astype(np.uint8)
    setup = DecisionSetup(probes=Probes("Breakout", np.zeros((k, L, 3, 4, 4), np.uint8), np.zeros((k, L), np.int64),
                                        [None] * k),
                          merge=ActionMerge(((0, 1), (2,), (3,)), np.eye(4)), idm=None,
                          policy_names=tuple(f"p{i}" for i in range(p)), sequences=np.zeros((s, t), np.int64),
                          real_futures=real, policy_actions=np.zeros((k, p, 20), np.int64),
                          real_returns=np.tile(real_returns_per_policy, (k, 1)).astype(float), emulator=None)
    spread = counterfactual_spread(real)
    blind = Scores(action=np.tile([1.0, 0.0, 0.0], (k, 1)), cf_error=np.full((k, s, t), 0.1),
                   cf_spread=np.zeros((k, t)), cf_match=np.full((k, s), 1 / 3), returns=np.zeros((k, p)))
    scores = {CEILING: Scores(np.ones((k, 3)), np.zeros((k, s, t)), spread, np.ones((k, s)), setup.real_returns),
              FLOORS[0]: blind, FLOORS[1]: blind,
              "n=1": Scores(np.tile([1.0, 1.0, 0.0], (k, 1)), np.full((k, s, t), 0.05), spread / 2,
                            np.full((k, s), 2 / 3), setup.real_returns[:, ::-1].copy())}
    return summarise(scores, setup, DecisionSettings(bootstrap=50))


def test_summary_marks_what_separates_and_computes_each_number():
    out = _synthetic_summary(np.arange(5.0))
    by = {r["setting"]: r for r in out["rows"]}
    assert by["n=1"]["action_accuracy"] == pytest.approx(2 / 3) and by["n=1"]["action_ratio"] == pytest.approx(2 / 3)
    assert by["n=1"]["cf_gain"] == pytest.approx(0.5) and by["n=1"]["cf_spread_ratio"] == pytest.approx(0.5)
    assert by["n=1"]["policy_tau"] == pytest.approx(-1.0) and by["emulator (ceiling)"]["policy_tau"] == pytest.approx(1.0)
    assert by["n=1"]["cf_match_ci_low"] <= by["n=1"]["cf_match"] <= by["n=1"]["cf_match_ci_high"]
    assert all(out["reported"].values())
    flat = _synthetic_summary(np.ones(5))  # every policy really returns the same: τ has no ceiling
    assert flat["reported"]["policy_tau"] is False and flat["reported"]["action_accuracy"] is True


def test_report_section_leaves_out_metrics_that_do_not_separate(tmp_path):
    from reports.builder import Report
    from reports.decision import decision_section

    result = {"seed": 0, "decision": {**_synthetic_summary(np.ones(5)), "action_meanings": list(MEANINGS),
                                      "idm_heldout_balanced_accuracy": 0.9, "cost_cpu_s": {"scoring": 12.0}}}
    report = Report("t", tmp_path)
    decision_section(report, [("EDM s0", result), ("DDPM s0", {"decision": {"skipped": "not asked"}})])
    md, _ = report.write()
    text = md.read_text()
    table = (tmp_path / "tables" / "decision_metrics.csv").read_text()
    assert "action accuracy" in table and "Kendall" not in table
    assert "Not reported" in text and "policy Kendall τ (ceiling 0" in text
    assert "DDPM s0: not asked" in text and "NOOP/FIRE, RIGHT, LEFT" in text


def test_arm_findings_put_each_setting_above_within_or_below_the_best_floor():
    from reports.decision import arm_findings

    def row(setting, value, low, high, arm="EDM"):
        return {"arm": arm, "setting": setting, "policy_tau": value, "policy_tau_ci_low": low,
                "policy_tau_ci_high": high}

    references = [row("emulator (ceiling)", 1.0, 0.8, 1.0), row("copy last frame", 0.0, 0.0, 0.0),
                  row("emulator, actions withheld", 0.1, 0.0, 0.2)]
    pooled = [row("n=1", 0.8, 0.4, 1.0), row("n=3", 0.0, -0.4, 0.5), row("n=10", -0.9, -1.0, -0.6)]
    text = arm_findings(pooled, references, ["policy_tau"])
    assert "best floor 0.1): above the floor EDM n=1; not told apart from it EDM n=3; below it EDM n=10" in text
