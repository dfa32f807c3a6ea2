"""Run entry: the two judges of the decision metrics, trained once per static dataset and shared by every world
model measured on it (ablations/static_decision.py), so that all models are judged by the same R_ψ and
inverse-dynamics model and a longer judge budget is paid once, not once per model.

- the action classes, measured with the emulator on the decision probes (evaluation/decision.py);
- the inverse-dynamics model on the dataset's real training transitions, with its held-out balanced accuracy;
- the reward/end judge, with its held-out cross-entropies beside the best constant guess's (a judge that learned
  only the base rate ranks no policy): by default the EventDetector (a small conv net on each transition's frame
  and amplified frame change, about a minute on one core), or with `reward_judge: r_psi` the agent's R_ψ as the
  profile builds it, trained with the agent's loss (JudgeRewardEnd: action-blind and started at the base rate
  unless the settings say otherwise; resumable, its state saved every 100 updates). Why the default is not R_ψ:
  at the cpu profile R_ψ learned nothing from the frames in 500 updates (held-out reward cross-entropy 0.1242
  against 0.1232 for the constant; the detector: 0.060 after 300 updates), docs/world-model-metrics.md.

Run folder: config.yaml, checkpoints/reward_end.pt (while training), checkpoints/judges.pt, result.json (last).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import torch

from ablations.static_decision import GAME, JUDGES_FILE, check_game, decision_probes
from ablations.static_wm import TEST_FRACTION, _resolved_config, load_dataset, split_episodes
from diamond.loop.config import config_hash
from diamond.loop.envs import num_actions
from diamond.run.checkpoint import load_checkpoint, save_checkpoint
from diamond.run.io import atomic_write_json, read_json
from diamond.run.rundir import locked_run
from evaluation.decision import merge_actions_by_effect
from evaluation.decision_eval import DecisionSettings
from evaluation.decision_models import (
    balanced_accuracy,
    reward_end_heldout,
    save_judges,
    train_event_detector,
    train_inverse_dynamics,
    train_reward_end,
)
from evaluation.emulator_wm import EmulatorWorldModel

REWARD_END_PROGRESS = "checkpoints/reward_end.pt"
HELDOUT_BATCHES = 16  # R_ψ's held-out cross-entropy: batches of the profile's size


def _train_r_psi(cfg: Any, train: Any, settings: DecisionSettings, progress: Path, digest: str) -> torch.nn.Module:
    """The agent's R_ψ as a judge, resuming from `progress` (written every 100 updates)."""
    resume = load_checkpoint(progress, digest, torch.device("cpu"))
    if resume is not None:
        print(f"{progress}: resuming R_ψ at update {resume['step']} of {settings.reward_end_steps}")
    return train_reward_end(cfg, train, num_actions(GAME), settings.reward_end_steps, settings.seed, resume=resume,
                            save=lambda state: save_checkpoint(progress, state, digest), progress=True,
                            prior=settings.reward_end_prior, blind=settings.reward_end_blind)


@locked_run
def run(run_dir: str | Path, dataset_dir: str | Path, profile: str, overrides: Sequence[str], decision: dict[str, Any],
        seed: int = 0) -> dict[str, Any]:
    """Measure the action classes, train both judges (resuming R_ψ), write judges.pt then result.json."""
    run_dir = Path(run_dir)
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return read_json(result_path)
    settings = DecisionSettings.from_dict(decision)
    buffer, summary = load_dataset(dataset_dir)
    check_game(summary["game"], dataset_dir)
    cfg = _resolved_config(run_dir, profile, overrides, seed, summary["game"], {"decision": asdict(settings)})
    digest, n_actions = config_hash(cfg), num_actions(GAME)
    train, test = split_episodes(buffer, TEST_FRACTION)
    cost: dict[str, float] = {}  # CPU seconds of this process per part

    start = time.process_time()
    probes = decision_probes(cfg.diffusion.num_history, settings)
    merge = merge_actions_by_effect(EmulatorWorldModel(probes), probes, n_actions, settings.merge_threshold)
    cost["action_merge"] = time.process_time() - start

    start = time.process_time()
    idm = train_inverse_dynamics(train.episodes, merge, settings.idm_steps, settings.seed)
    idm_accuracy = balanced_accuracy(idm, test, merge, settings.idm_heldout, settings.seed)
    cost["idm_train"] = time.process_time() - start

    start = time.process_time()
    if settings.reward_judge == "detector":
        reward_model = train_event_detector(train, settings.reward_end_steps, settings.seed, progress=True)
    else:
        reward_model = _train_r_psi(cfg, train, settings, run_dir / REWARD_END_PROGRESS, digest)
    cost["reward_model_train"] = time.process_time() - start  # this process's share if R_ψ was resumed
    heldout = reward_end_heldout(cfg, reward_model, test, HELDOUT_BATCHES, settings.seed)

    save_judges(run_dir / JUDGES_FILE, idm, reward_model, merge, digest)
    result = {"game": GAME, "seed": seed, "config_hash": digest, "settings": asdict(settings),
              "classes": [list(c) for c in merge.classes], "merge_agreement": merge.agreement.round(3).tolist(),
              "idm_heldout_balanced_accuracy": idm_accuracy, "reward_end_heldout": heldout,
              "judges_file": JUDGES_FILE, "cost_cpu_s": cost}
    atomic_write_json(result_path, result)
    (run_dir / REWARD_END_PROGRESS).unlink(missing_ok=True)
    return result
