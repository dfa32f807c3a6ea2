"""Run entry: what the sampler's noise levels do to a trained static world model (the Figure 3 report's
measured explanation of the EDM n >= 2 drift).

Reads a finished `ablations.static_wm` run (its checkpoint, under the config the same arguments resolve to; that
folder is only read) and measures, in its own run folder:
- the held-out denoising error at every noise level its sampler visits, at each n of the study and of the
  variants (evaluation/sigma_curve.py);
- open-loop rollouts of the same weights with sampler settings changed (`variants`: e.g. a raised sigma_min, or
  the paper's N(0, sigma_max^2) starting noise instead of the released unit noise), from the contexts and with
  the noise stream of the model run's own rollouts (same `horizon`, `rollouts` and protocol seed), to
  `short_horizon`, with the drift measures against the same real reference frames.

Separate from the model run so that a new measurement never retrains a model. Run folder: config.yaml,
variant_errors.csv, result.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from ablations.static_wm import (
    TEST_FRACTION,
    _resolved_config,
    held_out_segments,
    load_dataset,
    load_trained_model,
    masked_frames,
    split_episodes,
)
from diamond.loop.config import config_hash
from diamond.loop.envs import num_actions
from diamond.loop.trainer import resolve_device
from diamond.run.io import atomic_write_json, atomic_write_text, read_json
from diamond.run.rundir import locked_run, read_result
from evaluation.drift import reference_frames
from evaluation.sigma_curve import (
    denoising_error_vs_sigma,
    missing_fields,
    paradigm_fields,
    sampler_sigmas,
    variant_rollouts,
)

VARIANTS_FILE = "variant_errors.csv"


def check_variants(variants: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each variant is {label, num_steps >= 1, paradigm: {field: value}}, labels distinct."""
    out = [dict(v) for v in variants]
    for v in out:
        if (set(v) != {"label", "num_steps", "paradigm"} or int(v["num_steps"]) < 1
                or not isinstance(v["paradigm"], dict)):
            raise ValueError(f"sampler variant {v} needs exactly label, num_steps >= 1 and paradigm (a mapping).")
    labels = [v["label"] for v in out]
    if len(set(labels)) != len(labels):
        raise ValueError(f"sampler variant labels must be distinct, got {labels}.")
    return out


def noise_levels(model: Any, num_steps: Sequence[int], variants: Sequence[dict[str, Any]]) -> list[float]:
    """Every noise level the sampler visits at the study's n and in each applicable variant, decreasing."""
    levels = set(sampler_sigmas(model.paradigm, num_steps))
    for v in variants:
        if not missing_fields(model, v["paradigm"]):
            with paradigm_fields(model, v["paradigm"]):
                levels |= set(sampler_sigmas(model.paradigm, [v["num_steps"]]))
    return sorted(levels, reverse=True)


@locked_run
def run(run_dir: str | Path, model_dir: str | Path, dataset_dir: str | Path, profile: str, overrides: Sequence[str],
        seed: int, num_steps: Sequence[int], variants: Sequence[dict[str, Any]], horizon: int, short_horizon: int,
        rollouts: int, drift_frames: int = 2048, protocol_seed: int = 0) -> dict[str, Any]:
    """Load the model run's weights, measure, write result.json; the launcher's entry (blocked by the suite until
    the model run has finished)."""
    run_dir, model_dir = Path(run_dir), Path(model_dir)
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return read_json(result_path)
    variants = check_variants(variants)
    if not 1 <= short_horizon <= horizon or rollouts < 1:
        raise ValueError(f"need 1 <= short_horizon <= horizon and rollouts >= 1, got {short_horizon}, {horizon}, "
                         f"{rollouts}.")
    read_result(model_dir)  # the model run must be finished: one clear error naming its folder otherwise
    buffer, summary = load_dataset(dataset_dir)
    cfg = _resolved_config(run_dir, profile, overrides, seed, summary["game"], {"model_dir": str(model_dir)})
    device = resolve_device(cfg.perf.device)
    model, step = load_trained_model(cfg, model_dir, num_actions(summary["game"]), device)
    train, test = split_episodes(buffer, TEST_FRACTION)

    result: dict[str, Any] = {"model_dir": str(model_dir), "seed": seed, "paradigm": cfg.diffusion.paradigm,
                              "config_hash": config_hash(cfg), "train_steps": step}
    if hasattr(model, "denoise_at"):
        segments = [seg.to_torch(device) for seg in held_out_segments(test, cfg.training.batch_size,
                                                                      model.segment_length)]
        batches = [(masked_frames(seg), seg.act) for seg in segments]  # as training sees them
        curve = denoising_error_vs_sigma(model, batches, noise_levels(model, num_steps, variants), seed=protocol_seed)
        result["sigma_curve"] = {"rows": curve.to_dict("records"), "frames": sum(len(b[0]) for b in batches)}
    else:
        result["sigma_curve"] = {"skipped": "this world model has no denoise_at"}
    reference = reference_frames(train.episodes, drift_frames, protocol_seed) if drift_frames > 0 else None
    with torch.no_grad():
        table, skipped = variant_rollouts(model, test, variants, starts=rollouts, horizon=horizon,
                                          short_horizon=short_horizon, seed=protocol_seed, drift_reference=reference)
    if table is not None:
        atomic_write_text(run_dir / VARIANTS_FILE, table.to_csv(index=False))
    result.update({"variants_file": None if table is None else VARIANTS_FILE, "variants_skipped": skipped,
                   "variants": variants, "short_horizon": short_horizon})
    atomic_write_json(result_path, result)
    return result
