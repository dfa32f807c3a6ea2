"""Run entry: the decision metrics (evaluation/decision.py) of a trained static world model, judged by the
dataset's shared judges (ablations/static_judges.py: the reward/end judge and the inverse-dynamics model).

Breakout's scripted expert plays the probes and the policy family: the expert at ε ∈ POLICY_EPSILONS (ε = 1 is
the uniform random policy), whose real returns from the same states are measured, not assumed. Sizes per profile
(`DECISION_PROFILES`); costs are measured and stored in result.json under decision.cost_cpu_s.

Reads a finished `ablations.static_wm` run (its checkpoint, that folder is only read) and a finished judges run;
a separate stage so that a new measurement never retrains a model. Run folder: config.yaml, result.json.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ablations.breakout_expert import BreakoutExpert
from ablations.static_wm import _resolved_config, load_trained_model
from diamond.loop.config import config_hash, from_dict
from diamond.loop.envs import make_env, num_actions
from diamond.loop.trainer import resolve_device
from diamond.run.io import atomic_write_json, read_json, read_yaml
from diamond.run.rundir import locked_run, read_result
from evaluation.decision import PolicyFactory
from evaluation.decision_eval import DecisionSettings, prepare
from evaluation.decision_eval import decision_probes as _probes
from evaluation.decision_models import load_judges
from evaluation.emulator_wm import Policy, Probes
from evaluation.wm_protocol import decision_fidelity

GAME = "Breakout"  # the game with a scripted expert (ablations/breakout_expert.py)
POLICY_EPSILONS = (0.0, 0.1, 0.3, 0.6, 1.0)
PROBE_EPSILON = 0.03  # the dataset's own ε (collect_static_dataset), so the probes look like the data
JUDGES_FILE = "checkpoints/judges.pt"
# cpu: 16 probes and 150-step policy rollouts separate the family's real returns (means 4.3, 4.1, 3.3, 1.4, 0.75 on
# the Figure 3 dataset); below ~100 steps the expert at ε 0 and 0.1 tie and no judge can rank them
DECISION_PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"probes": 4, "cf_horizon": 4, "policy_horizon": 8, "idm_steps": 30, "idm_heldout": 256,
              "reward_end_steps": 5, "bootstrap": 200},
    "cpu": {"probes": 16, "cf_horizon": 6, "policy_horizon": 150, "idm_steps": 300, "reward_end_steps": 1000},
}


def decision_protocol(profile: str) -> dict[str, Any]:
    """The decision settings of a static study for `profile` (DecisionSettings' defaults elsewhere), checked now: a
    suite builds its grid with them, so a bad one fails its --dry-run, not its last stage."""
    settings = dict(DECISION_PROFILES.get(profile, {}))
    try:
        DecisionSettings.from_dict(settings)
    except ValueError as e:
        raise ValueError(f"{__name__}.DECISION_PROFILES[{profile!r}]: {e}") from e
    return settings


def check_game(game: str, dataset_dir: str | Path) -> None:
    if game != GAME:
        raise ValueError(f"{dataset_dir} holds {game}; the decision metrics need a scripted policy family, which "
                         f"only {GAME} has.")


def _expert(meanings: Sequence[str], epsilon: float, rng: np.random.Generator) -> Policy:
    expert = BreakoutExpert(meanings, epsilon=epsilon, rng=rng)
    return lambda env: expert(env.ale.getRAM())


def expert_family(meanings: Sequence[str], epsilons: Sequence[float] = POLICY_EPSILONS) -> dict[str, PolicyFactory]:
    """The scripted expert at each ε, one fresh controller (and ε stream) per rollout."""
    return {f"expert ε={e:g}": (lambda rng, e=e: _expert(meanings, e, rng)) for e in epsilons}


@lru_cache(maxsize=1)
def action_meanings() -> tuple[str, ...]:
    """Breakout's action names (read from the emulator once per process: loading a ROM is the slow part)."""
    return tuple(make_env(GAME, train=False, seed=0).unwrapped.get_action_meanings())


def decision_probes(num_history: int, settings: DecisionSettings) -> Probes:
    """The probes of every decision measurement on Breakout: the dataset's own expert (ε = PROBE_EPSILON), held-out
    games."""
    policy = _expert(action_meanings(), PROBE_EPSILON, np.random.default_rng(settings.seed))
    return _probes(GAME, num_history, policy, settings)


def _judges(judges_dir: Path, settings: DecisionSettings) -> tuple[Any, Any, list[list[int]], dict[str, Any]]:
    """The finished judges run's networks and result, refused if it used other decision settings."""
    result = read_result(judges_dir)
    if result.get("settings") != asdict(settings):
        raise ValueError(f"{judges_dir} trained its judges with other decision settings ({result.get('settings')}); "
                         f"this measurement asks for {asdict(settings)}.")
    cfg = from_dict(read_yaml(judges_dir / "config.yaml"))
    idm, reward_model, classes = load_judges(judges_dir / JUDGES_FILE, cfg, num_actions(GAME))
    return idm, reward_model, classes, result


@locked_run
def run(run_dir: str | Path, model_dir: str | Path, judges_dir: str | Path, profile: str, overrides: Sequence[str],
        seed: int, num_steps: Sequence[int], decision: dict[str, Any]) -> dict[str, Any]:
    """Score the model run's weights at each n beside the ceiling and floors, write result.json; the launcher's
    entry (blocked by the suite until the model and judges runs have finished)."""
    run_dir, model_dir, judges_dir = Path(run_dir), Path(model_dir), Path(judges_dir)
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return read_json(result_path)
    settings = DecisionSettings.from_dict(decision)
    if settings.probes == 0 or not num_steps or min(num_steps) < 1:
        raise ValueError(f"a decision measurement needs probes >= 2 and num_steps >= 1, got {settings.probes} and "
                         f"{list(num_steps)}.")
    model_result = read_result(model_dir)  # finished, or one clear error naming its folder
    check_game(model_result["game"], model_dir)
    idm, reward_model, classes, judges = _judges(judges_dir, settings)
    cfg = _resolved_config(run_dir, profile, overrides, seed, GAME,
                           {"model_dir": str(model_dir), "judges_dir": str(judges_dir), "decision": asdict(settings)})
    model, step = load_trained_model(cfg, model_dir, num_actions(GAME), resolve_device(cfg.perf.device))
    cost: dict[str, float] = {}  # CPU seconds of this process per part (wall time is inflated on a shared machine)
    start = time.process_time()

    def trained_idm(merge: Any) -> Any:
        if [list(c) for c in merge.classes] != classes:
            raise ValueError(f"the probes' action classes {[list(c) for c in merge.classes]} differ from those "
                             f"{judges_dir} trained its inverse-dynamics model for ({classes}).")
        return idm

    setup = prepare(decision_probes(model.num_history, settings), num_actions(GAME), expert_family(action_meanings()),
                    trained_idm, settings)
    setup.notes["idm_heldout_balanced_accuracy"] = judges["idm_heldout_balanced_accuracy"]
    setup.notes["reward_end_heldout"] = judges["reward_end_heldout"]
    setup.notes["judges_cost_cpu_s"] = judges["cost_cpu_s"]
    cost["setup"] = time.process_time() - start
    start = time.process_time()
    summary = decision_fidelity(model, setup, reward_model, num_steps, settings)
    cost["scoring"] = time.process_time() - start
    result = {"model_dir": str(model_dir), "judges_dir": str(judges_dir), "seed": seed,
              "paradigm": cfg.diffusion.paradigm, "config_hash": config_hash(cfg), "train_steps": step,
              "decision": {**summary, "action_meanings": list(action_meanings()), "cost_cpu_s": cost}}
    atomic_write_json(result_path, result)
    return result
