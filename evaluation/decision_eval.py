"""The decision metrics of evaluation/decision.py as one protocol: fixed real probes, their real counterfactual
futures and policy returns (computed once), then a score per world model, summarised with bootstrap CIs over
probes beside the emulator's ceiling and the action-blind floors. Only metrics whose ceiling beats every floor
by their margin are marked reported."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch

from evaluation.decision import (ActionMerge, PolicyFactory, action_following, bootstrap_ci, counterfactual_error,
                                 counterfactual_match, counterfactual_sequences, counterfactual_spread, imagined_returns,
                                 kendall_tau, merge_actions_by_effect, play_policies, real_returns, rollout, separated)
from evaluation.emulator_wm import ActionsWithheld, CopyLastFrame, EmulatorWorldModel, Policy, Probes, collect_probes

CEILING = "emulator (ceiling)"
FLOORS = ("copy last frame", "emulator, actions withheld")
MARGINS = {"action_accuracy": 0.2, "cf_gain": 0.2, "cf_spread_ratio": 0.5, "cf_match": 0.2, "policy_tau": 0.5}


@dataclass(frozen=True)
class DecisionSettings:
    """Sizes of the decision protocol (kwargs of a run, so plain JSON values); `probes` = 0 turns it off."""

    probes: int = 16  # real states every metric starts from
    probe_every: int = 20  # steps between two probes of the probe policy's games
    merge_threshold: float = 0.5  # actions merge when their next frames agree in this fraction of probes
    cf_horizon: int = 8  # steps of each counterfactual future
    policy_horizon: int = 30  # steps of each policy's rollout (real and imagined)
    idm_steps: int = 300  # inverse-dynamics updates (batch 64)
    idm_heldout: int = 2048  # held-out real transitions for its own ceiling
    reward_end_steps: int = 100  # R_ψ updates (the profile's batch and segment length)
    bootstrap: int = 1000
    seed: int = 0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> DecisionSettings:
        values = dict(values or {})
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown decision setting(s) {unknown}; valid: {', '.join(cls.__dataclass_fields__)}")
        s = cls(**values)
        if min(s.probe_every, s.cf_horizon, s.policy_horizon, s.bootstrap) < 1 or s.probes < 0 or s.probes == 1 \
                or not 0.0 < s.merge_threshold <= 1.0 or min(s.idm_steps, s.idm_heldout, s.reward_end_steps) < 0:
            raise ValueError(f"decision settings out of range (probes 0 or >= 2, horizons/bootstrap >= 1, "
                             f"0 < merge_threshold <= 1): {s}")
        return s


@dataclass
class DecisionSetup:
    """Everything fixed before any world model is scored."""

    probes: Probes
    merge: ActionMerge
    idm: torch.nn.Module
    policy_names: tuple[str, ...]
    sequences: np.ndarray  # [S, T] counterfactual action sequences
    real_futures: np.ndarray  # uint8 [K, S, T, 3, H, W]
    policy_actions: np.ndarray  # [K, P, T]
    real_returns: np.ndarray  # [K, P]
    emulator: EmulatorWorldModel
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scores:
    """Per-probe raw results of one model."""

    action: np.ndarray  # [K, C] correct
    cf_error: np.ndarray  # [K, S, T]
    cf_spread: np.ndarray  # [K, T]
    cf_match: np.ndarray  # [K, S]
    returns: np.ndarray  # [K, P]


def prepare(game: str, num_history: int, num_actions: int, probe_policy: Policy, policies: Mapping[str, PolicyFactory],
            train_idm: Callable[[ActionMerge], torch.nn.Module], settings: DecisionSettings) -> DecisionSetup:
    """Probes, action merge (measured on them), the inverse-dynamics model (`train_idm(merge)`), real
    counterfactual futures and the policies' real rollouts from every probe."""
    probes = collect_probes(game, settings.probes, num_history, probe_policy, seed=10_000 + settings.seed,
                            every=settings.probe_every)
    emulator = EmulatorWorldModel(probes)
    merge = merge_actions_by_effect(emulator, probes, num_actions, settings.merge_threshold)
    sequences = counterfactual_sequences(merge, settings.cf_horizon)
    real_futures = rollout(emulator, probes, np.broadcast_to(sequences, (len(probes), *sequences.shape)).copy())
    actions, rewards, losses = play_policies(probes, policies, settings.policy_horizon, settings.seed)
    return DecisionSetup(probes, merge, train_idm(merge), tuple(policies), sequences, real_futures,
                         actions.transpose(1, 0, 2).copy(), real_returns(rewards, losses).T.copy(), emulator)


def score(model: Any, reward_model: Any, setup: DecisionSetup) -> Scores:
    """Every decision metric's per-probe results for one world model (the same probes, actions and reward model)."""
    k = len(setup.probes)
    imagined = rollout(model, setup.probes, np.broadcast_to(setup.sequences, (k, *setup.sequences.shape)).copy())
    policy_frames = rollout(model, setup.probes, setup.policy_actions)
    return Scores(action=action_following(model, setup.idm, setup.probes, setup.merge),
                  cf_error=counterfactual_error(imagined, setup.real_futures),
                  cf_spread=counterfactual_spread(imagined),
                  cf_match=counterfactual_match(imagined, setup.real_futures),
                  returns=imagined_returns(policy_frames, setup.probes, setup.policy_actions, reward_model))


def references(setup: DecisionSetup, reward_model: Any) -> dict[str, Scores]:
    """The ceiling (the emulator as a world model) and the floors (copy-last-frame; the emulator fed NOOP)."""
    blind = EmulatorWorldModel(setup.probes)
    return {CEILING: score(setup.emulator, reward_model, setup),
            FLOORS[0]: score(CopyLastFrame(setup.probes.obs.shape[1]), reward_model, setup),
            FLOORS[1]: score(ActionsWithheld(blind), reward_model, setup)}


def _statistics(s: Scores, ceiling: Scores, copy: Scores, setup: DecisionSetup) -> dict[str, Callable[[np.ndarray], float]]:
    """Each summary metric as a function of resampled probe indices (paired with the references)."""
    real_spread = counterfactual_spread(setup.real_futures)
    return {
        "action_accuracy": lambda i: float(s.action[i].mean()),
        "action_ratio": lambda i: float(s.action[i].mean() / max(ceiling.action[i].mean(), 1e-9)),
        "cf_mse_final": lambda i: float(s.cf_error[i, :, -1].mean()),
        "cf_gain": lambda i: float(1.0 - s.cf_error[i].mean() / max(copy.cf_error[i].mean(), 1e-12)),
        "cf_spread_ratio": lambda i: float(s.cf_spread[i].mean() / max(real_spread[i].mean(), 1e-12)),
        "cf_match": lambda i: float(s.cf_match[i].mean()),
        "policy_tau": lambda i: kendall_tau(s.returns[i].mean(0), setup.real_returns[i].mean(0)),
    }


def summarise(scores: Mapping[str, Scores], setup: DecisionSetup, settings: DecisionSettings) -> dict[str, Any]:
    """JSON-ready summary: one row per setting with each metric and its 95 % bootstrap CI over probes, the
    counterfactual error per step, the policies' imagined and real mean returns, and which metrics separate the
    ceiling from the floors (only those are reported)."""
    k = len(setup.probes)
    everything = {CEILING: scores[CEILING], **{f: scores[f] for f in FLOORS}, **scores}
    rows, curves, returns = [], [], []
    for name, s in everything.items():
        row: dict[str, Any] = {"setting": name}
        for metric, stat in _statistics(s, scores[CEILING], scores[FLOORS[0]], setup).items():
            row[metric] = stat(np.arange(k))
            row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = bootstrap_ci(stat, k, settings.bootstrap, settings.seed)
        rows.append(row)
        curves += [{"setting": name, "step": t + 1, "cf_mse": float(v)} for t, v in enumerate(s.cf_error.mean((0, 1)))]
        returns += [{"setting": name, "policy": p, "imagined": float(v), "real": float(r)}
                    for p, v, r in zip(setup.policy_names, s.returns.mean(0), setup.real_returns.mean(0))]
    by = {r["setting"]: r for r in rows}
    reported = {m: separated(by[CEILING][m], max(by[f][m] for f in FLOORS), margin) for m, margin in MARGINS.items()}
    return {"settings": asdict(settings), "num_probes": k, "classes": [list(c) for c in setup.merge.classes],
            "merge_agreement": setup.merge.agreement.round(3).tolist(), "policies": list(setup.policy_names),
            "rows": rows, "cf_curves": curves, "policy_returns": returns, "reported": reported,
            "margins": dict(MARGINS), **setup.notes}
