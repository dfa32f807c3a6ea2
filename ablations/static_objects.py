"""Run entry: the object-level fidelity (evaluation/object_metrics.py) of a trained static world model on Breakout.

From the decision metrics' probe states (the dataset's own expert, held-out games), the expert keeps playing the
real game for `horizon` steps; its actions are replayed open loop in the model at each n, and the state read from
the imagined frames is compared with the real future's RAM state, beside the emulator, repeat-last-frame and
empty-playfield rows. Sizes per profile (`OBJECT_PROFILES`).

Reads a finished `ablations.static_wm` run (its checkpoint, that folder is only read); a separate stage so that a
new measurement never retrains a model. Run folder: config.yaml, result.json.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ablations.static_decision import GAME, PROBE_EPSILON, _expert, action_meanings, check_game, decision_probes
from ablations.static_wm import _resolved_config, load_trained_model
from diamond.loop.config import config_hash
from diamond.loop.envs import num_actions
from diamond.loop.trainer import resolve_device
from diamond.run.io import atomic_write_json, read_json
from diamond.run.rundir import locked_run, read_result
from evaluation.decision_eval import DecisionSettings
from evaluation.emulator_wm import Policy
from evaluation.object_metrics import object_fidelity, prepare_objects
from evaluation.wm_protocol import AtSteps

# cpu: t = 1000, the horizon of Figure 3's headline (16 probes; n = 3 costs 3,000 denoiser calls at batch 16)
OBJECT_PROFILES: dict[str, dict[str, int]] = {
    "smoke": {"probes": 4, "horizon": 10, "bootstrap": 200},
    "cpu": {"probes": 16, "horizon": 1000, "bootstrap": 1000},
}
DEFAULTS = {"probes": 16, "horizon": 1000, "bootstrap": 1000}


def object_protocol(profile: str) -> dict[str, int]:
    """The object-metric sizes of a static study for `profile` (DEFAULTS elsewhere)."""
    return dict(OBJECT_PROFILES.get(profile, DEFAULTS))


def _probe_expert(rng: np.random.Generator) -> Policy:
    """The dataset's own expert (what played the probes), keeping on playing from each of them."""
    return _expert(action_meanings(), PROBE_EPSILON, rng)


@locked_run
def run(run_dir: str | Path, model_dir: str | Path, profile: str, overrides: Sequence[str], seed: int,
        num_steps: Sequence[int], objects: dict[str, int]) -> dict[str, Any]:
    """Score the model run's weights at each n beside the reference rows, write result.json; the launcher's entry
    (blocked by the suite until the model run has finished)."""
    run_dir, model_dir = Path(run_dir), Path(model_dir)
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return read_json(result_path)
    if objects["probes"] < 2 or objects["horizon"] < 1 or not num_steps or min(num_steps) < 1:
        raise ValueError(f"the object metrics need probes >= 2, horizon >= 1 and num_steps >= 1, got {objects} and "
                         f"{list(num_steps)}.")
    check_game(read_result(model_dir)["game"], model_dir)
    cfg = _resolved_config(run_dir, profile, overrides, seed, GAME, {"model_dir": str(model_dir), "objects": objects})
    device = resolve_device(cfg.perf.device)
    model, step = load_trained_model(cfg, model_dir, num_actions(GAME), device)
    start = time.process_time()
    probes = decision_probes(model.num_history, DecisionSettings(probes=objects["probes"]))  # the decision probes
    setup = prepare_objects(probes, _probe_expert, objects["horizon"], seed=0)
    models = {f"n={n}": AtSteps(model, n, torch.Generator(device=device).manual_seed(0)) for n in num_steps}
    with torch.no_grad():
        summary = object_fidelity(models, setup, objects["bootstrap"], seed=0)
    result = {"model_dir": str(model_dir), "seed": seed, "paradigm": cfg.diffusion.paradigm,
              "config_hash": config_hash(cfg), "train_steps": step,
              "objects": {**summary, "settings": dict(objects), "num_steps": list(num_steps),
                          "cost_cpu_s": time.process_time() - start}}
    atomic_write_json(result_path, result)
    return result
