"""The decision metrics of evaluation/decision.py as one protocol: fixed real probes, their real counterfactual
futures and policy returns (computed once), then a score per world model, summarised with bootstrap CIs over
probes beside the emulator's ceiling and the action-blind floors. Only metrics whose ceiling beats every floor
by their margin are marked reported."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

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
    policy_horizon: int = 150  # steps of each policy's rollout (real and imagined): ε = 0 and 0.1 tie below ~100
    idm_steps: int = 300  # inverse-dynamics updates (batch 64)
    idm_heldout: int = 2048  # held-out real transitions for its own ceiling
    reward_judge: str = "detector"  # "detector": EventDetector; "r_psi": the agent's R_ψ (evaluation/decision_models)
    reward_end_steps: int = 1000  # updates of the reward/end judge
    reward_end_prior: bool = True  # r_psi only: R_ψ starts at the base rate (JudgeRewardEnd)
    reward_end_blind: bool = True  # r_psi only: R_ψ reads rewards and ends from the frames only (actions set to 0)
    bootstrap: int = 1000
    seed: int = 0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> DecisionSettings:
        values = dict(values or {})
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown decision setting(s) {unknown}; valid: {', '.join(cls.__dataclass_fields__)}")
        s = cls(**values)
        rules = {  # each setting's range, so a bad one is named with its value
            "probes": (s.probes == 0 or s.probes >= 2, "0 (off) or >= 2"),
            "probe_every": (s.probe_every >= 1, ">= 1"), "cf_horizon": (s.cf_horizon >= 1, ">= 1"),
            "policy_horizon": (s.policy_horizon >= 1, ">= 1"), "bootstrap": (s.bootstrap >= 1, ">= 1"),
            "merge_threshold": (0.0 < s.merge_threshold <= 1.0, "in (0, 1]"),
            "idm_steps": (s.idm_steps >= 0, ">= 0"), "idm_heldout": (s.idm_heldout >= 0, ">= 0"),
            "reward_end_steps": (s.reward_end_steps >= 0, ">= 0"),
            "reward_end_prior": (isinstance(s.reward_end_prior, bool), "true or false"),
            "reward_end_blind": (isinstance(s.reward_end_blind, bool), "true or false"),
            "reward_judge": (s.reward_judge in ("detector", "r_psi"), "detector or r_psi"),
        }
        bad = [f"{name} {getattr(s, name)!r} (must be {rule})" for name, (ok, rule) in rules.items() if not ok]
        if bad:
            raise ValueError(f"decision setting(s) out of range: {'; '.join(bad)}")
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


def decision_probes(game: str, num_history: int, probe_policy: Policy, settings: DecisionSettings) -> Probes:
    """The protocol's real probe states (the same for every model and judge with the same settings)."""
    return collect_probes(game, settings.probes, num_history, probe_policy, seed=10_000 + settings.seed,
                          every=settings.probe_every)


def prepare(probes: Probes, num_actions: int, policies: Mapping[str, PolicyFactory],
            idm_for: Callable[[ActionMerge], torch.nn.Module], settings: DecisionSettings) -> DecisionSetup:
    """The action merge (measured on the probes), the inverse-dynamics model for it (`idm_for(merge)`), the real
    counterfactual futures and the policies' real rollouts from every probe."""
    emulator = EmulatorWorldModel(probes)
    merge = merge_actions_by_effect(emulator, probes, num_actions, settings.merge_threshold)
    sequences = counterfactual_sequences(merge, settings.cf_horizon)
    real_futures = rollout(emulator, probes, np.broadcast_to(sequences, (len(probes), *sequences.shape)).copy())
    actions, rewards, losses = play_policies(probes, policies, settings.policy_horizon, settings.seed)
    return DecisionSetup(probes, merge, idm_for(merge), tuple(policies), sequences, real_futures,
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


def per_probe(s: Scores) -> dict[str, np.ndarray]:
    """The per-probe numbers every summary metric is made of ([K] each, returns [K, P]): what a run stores so that
    runs on the same probes (seeds of one arm) can be pooled probe by probe."""
    return {"action": s.action.mean(1), "cf_error": s.cf_error.mean((1, 2)), "cf_final": s.cf_error[:, :, -1].mean(1),
            "cf_spread": s.cf_spread.mean(1), "cf_match": s.cf_match.mean(1), "returns": s.returns}


def _statistics(s: Mapping[str, np.ndarray], ceiling: Mapping[str, np.ndarray], copy: Mapping[str, np.ndarray],
                real_spread: np.ndarray, real: np.ndarray) -> dict[str, Callable[[np.ndarray], float]]:
    """Each summary metric as a function of resampled probe indices (paired with the references)."""
    return {
        "action_accuracy": lambda i: float(s["action"][i].mean()),
        "action_ratio": lambda i: float(s["action"][i].mean() / max(ceiling["action"][i].mean(), 1e-9)),
        "cf_mse_final": lambda i: float(s["cf_final"][i].mean()),
        "cf_gain": lambda i: float(1.0 - s["cf_error"][i].mean() / max(copy["cf_error"][i].mean(), 1e-12)),
        "cf_spread_ratio": lambda i: float(s["cf_spread"][i].mean() / max(real_spread[i].mean(), 1e-12)),
        "cf_match": lambda i: float(s["cf_match"][i].mean()),
        "policy_tau": lambda i: kendall_tau(s["returns"][i].mean(0), real[i].mean(0)),
    }


def metric_row(name: str, values: Mapping[str, Mapping[str, np.ndarray]], real_spread: np.ndarray, real: np.ndarray,
               bootstrap: int, seed: int) -> dict[str, Any]:
    """Setting `name`'s row (`values`: setting -> per_probe numbers, the ceiling and copy floor among them): each
    metric and its 95 % bootstrap CI over probes."""
    k = len(real)
    row: dict[str, Any] = {"setting": name}
    for metric, stat in _statistics(values[name], values[CEILING], values[FLOORS[0]], real_spread, real).items():
        row[metric] = stat(np.arange(k))
        row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = bootstrap_ci(stat, k, bootstrap, seed)
    return row


def pooled_rows(runs: Sequence[Mapping[str, Any]], setting: str) -> dict[str, Any]:
    """One setting (e.g. "n=3") of several runs on the same probes (an arm's seeds), pooled: each per-probe number
    averaged over the runs, then the metrics with 95 % bootstrap CIs over probes (references from the first run)."""
    first = runs[0]
    if any(r["probe_digest"] != first["probe_digest"] for r in runs):
        raise ValueError("runs measured on different probes cannot be pooled probe by probe.")
    arrays = [{k: np.asarray(v) for k, v in r["per_probe"][setting].items()} for r in runs]
    refs = {name: {k: np.asarray(v) for k, v in first["per_probe"][name].items()} for name in (CEILING, *FLOORS)}
    values = {**refs, setting: {k: np.mean([a[k] for a in arrays], axis=0) for k in arrays[0]}}
    return metric_row(setting, values, np.asarray(first["real_spread"]), np.asarray(first["real_returns_per_probe"]),
                      first["settings"]["bootstrap"], first["settings"]["seed"])


def summarise(scores: Mapping[str, Scores], setup: DecisionSetup, settings: DecisionSettings) -> dict[str, Any]:
    """JSON-ready summary: one row per setting with each metric and its 95 % bootstrap CI over probes, the
    counterfactual error per step, the policies' imagined and real mean returns, and which metrics separate the
    ceiling from the floors (only those are reported)."""
    k = len(setup.probes)
    everything = {CEILING: scores[CEILING], **{f: scores[f] for f in FLOORS}, **scores}
    values = {name: per_probe(s) for name, s in everything.items()}
    real_spread = counterfactual_spread(setup.real_futures).mean(1)
    rows = [metric_row(name, values, real_spread, setup.real_returns, settings.bootstrap, settings.seed)
            for name in values]
    curves, returns = [], []
    for name, s in everything.items():
        curves += [{"setting": name, "step": t + 1, "cf_mse": float(v)} for t, v in enumerate(s.cf_error.mean((0, 1)))]
        returns += [{"setting": name, "policy": p, "imagined": float(v), "real": float(r)}
                    for p, v, r in zip(setup.policy_names, s.returns.mean(0), setup.real_returns.mean(0))]
    by = {r["setting"]: r for r in rows}
    reported = {m: separated(by[CEILING][m], max(by[f][m] for f in FLOORS), margin) for m, margin in MARGINS.items()}
    return {"settings": asdict(settings), "num_probes": k, "classes": [list(c) for c in setup.merge.classes],
            "merge_agreement": setup.merge.agreement.round(3).tolist(), "policies": list(setup.policy_names),
            "rows": rows, "cf_curves": curves, "policy_returns": returns, "reported": reported,
            "margins": dict(MARGINS), "probe_digest": setup.probes.digest(),
            "per_probe": {name: {key: v.tolist() for key, v in vals.items()} for name, vals in values.items()},
            "real_spread": real_spread.tolist(), "real_returns_per_probe": setup.real_returns.tolist(), **setup.notes}
