"""The decision metrics (evaluation/decision.py) of a static world-model run: Breakout's scripted expert plays the
probes and the policy family, the inverse-dynamics model and R_ψ are trained on the run's own training episodes.

The family: the expert at ε ∈ POLICY_EPSILONS (ε = 1 is the uniform random policy), whose real returns from the
same states are measured, not assumed. Sizes per profile (`DECISION_PROFILES`, the `decision` entry of a static
run's protocol); costs are measured and stored in result.json under decision.cost_s.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from ablations.breakout_expert import BreakoutExpert
from diamond.data import ReplayBuffer
from diamond.envs import make_env
from evaluation.decision import PolicyFactory
from evaluation.decision_eval import DecisionSettings, prepare
from evaluation.decision_models import balanced_accuracy, train_inverse_dynamics, train_reward_end
from evaluation.emulator_wm import Policy
from evaluation.wm_protocol import decision_fidelity

GAME = "Breakout"  # the game with a scripted expert (ablations/breakout_expert.py)
POLICY_EPSILONS = (0.0, 0.1, 0.3, 0.6, 1.0)
PROBE_EPSILON = 0.03  # the dataset's own ε (collect_static_dataset), so the probes look like the data
DECISION_PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"probes": 4, "cf_horizon": 4, "policy_horizon": 8, "idm_steps": 30, "idm_heldout": 256,
              "reward_end_steps": 5, "bootstrap": 200},
    "cpu": {"probes": 8, "cf_horizon": 6, "policy_horizon": 20, "idm_steps": 300, "reward_end_steps": 60},
}


def decision_protocol(profile: str) -> dict[str, Any]:
    """The `decision` entry of a static study's protocol for `profile` (DecisionSettings' defaults elsewhere)."""
    return dict(DECISION_PROFILES.get(profile, {}))


def _expert(meanings: Sequence[str], epsilon: float, rng: np.random.Generator) -> Policy:
    expert = BreakoutExpert(meanings, epsilon=epsilon, rng=rng)
    return lambda env: expert(env.ale.getRAM())


def expert_family(meanings: Sequence[str], epsilons: Sequence[float] = POLICY_EPSILONS) -> dict[str, PolicyFactory]:
    """The scripted expert at each ε, one fresh controller (and ε stream) per rollout."""
    return {f"expert ε={e:g}": (lambda rng, e=e: _expert(meanings, e, rng)) for e in epsilons}


def decision_metrics(model: Any, cfg: Any, train: ReplayBuffer, test: list[Any], num_actions: int, game: str,
                     num_steps_list: Sequence[int], decision: dict[str, Any] | None) -> dict[str, Any]:
    """Train the judges, build the probes and score `model` at each n with the ceiling and floors beside it."""
    if decision is None:
        return {"skipped": "decision metrics not asked for (protocol.decision is unset)"}
    settings = DecisionSettings.from_dict(decision)
    if settings.probes == 0:
        return {"skipped": "decision metrics turned off (decision.probes = 0)"}
    if game != GAME:
        return {"skipped": f"decision metrics need a scripted policy family; only {GAME} has one"}
    cost: dict[str, float] = {}  # CPU seconds of this process per part (wall time is inflated on a shared machine)
    start = time.process_time()
    reward_model = train_reward_end(cfg, train, num_actions, settings.reward_end_steps, settings.seed)
    cost["reward_model_train"] = time.process_time() - start
    meanings = make_env(game, train=False, seed=0).unwrapped.get_action_meanings()
    probe_policy = _expert(meanings, PROBE_EPSILON, np.random.default_rng(settings.seed))
    held: dict[str, float] = {}

    def train_idm(merge: Any) -> Any:
        t0 = time.process_time()
        idm = train_inverse_dynamics(train.episodes, merge, settings.idm_steps, settings.seed)
        cost["idm_train"] = time.process_time() - t0
        held["idm_heldout_balanced_accuracy"] = balanced_accuracy(idm, test, merge, settings.idm_heldout, settings.seed)
        return idm

    start = time.process_time()
    setup = prepare(game, model.num_history, num_actions, probe_policy, expert_family(meanings), train_idm, settings)
    cost["setup"] = time.process_time() - start - cost["idm_train"]
    setup.notes.update(held)
    start = time.process_time()
    summary = decision_fidelity(model, setup, reward_model, num_steps_list, settings)
    cost["scoring"] = time.process_time() - start
    return {**summary, "action_meanings": list(meanings), "cost_cpu_s": cost}
