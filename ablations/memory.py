"""Suite `ablation_memory`: three memory mechanisms of a diffusion world model on the memory probe.

Mechanisms (`ARMS`), each a world model of diamond/registry.py trained on the same static Breakout expert data
with the same denoiser U-Net, schedule and occlusions:
- frame stack, L = 4 (the paper's model): sees 4 frames;
- cross-attention over L = 8 frames (App. J.2's conditioning, a longer history);
- recurrent memory (`world_model.factory=recurrent`, diamond/recurrent_wm.py): the frame stack of 4 plus a GRU
  state over the 12 frames before it.
Every training segment has, with probability OCCLUSION_PROBABILITY, its last k context frames blanked
(k uniform in 1..MAX_OCCLUSION, capped to the segment's context), the blanking the probe applies
(evaluation/memory.py). Evaluation: the memory probe (PROBE_CONTEXT real frames, the last k blanked, for k in
OCCLUSIONS: the frame stack cannot beat its blind floor from k = 4, cross-attention from k = 8), plus the usual
open-loop per-step error and drift (ablations.static_wm.evaluate).

Profiles: `cpu` (all three models in one nice'd process on a shared 2-core CPU: the profile `cpu` U-Net
[16, 16, 32, 32], batch 16, CPU_UPDATES updates each, one denoising step, a 10k-frame dataset; the
cross-attention encoder is small and attends at the 8x8 level only) and `smoke` (the pipeline in minutes).
Measured (a shorter run of the cpu networks: 2k frames, 10 updates per arm, 16 probe starts, one thread, CPU
seconds from getrusage): dataset 1.1 ms per frame; per update, frame stack 0.47 s (490,851 parameters),
cross-attention 1.06 s (523,459), recurrent 0.52 s (537,379: the GRU memory adds 46,528 parameters and 11 %
per update); evaluation 3.5-6 s per arm. Projected for `python run_suite.py --suite ablation_memory
--profile cpu`: about 12 CPU-minutes (10k frames, 300 updates per arm, 512 probe frames per arm).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ablations.registry import Suite, SuiteOptions
from ablations.static_data import dataset_dir
from ablations.static_wm import (ProtocolSettings, StaticTrainer, _resolved_config, evaluate, load_dataset,
                                 split_episodes)
from diamond.data import to_float
from diamond.envs import num_actions
from diamond.io import atomic_write_json, atomic_write_text, read_json, read_jsonl
from diamond.rundir import locked_run
from evaluation.memory import draw_occlusions, memory_probe, occlude
from evaluation.wm_protocol import num_parameters
from slurm.launcher import RunSpec

NAME = "ablation_memory"
GAME = "Breakout"
PROBE_CONTEXT = 16  # real frames before the predicted one; the recurrent model's 12 + 4
OCCLUSIONS = (0, 1, 2, 4, 6, 8, 12, 16)  # k = 16: every context frame hidden, each model's blind floor
MAX_OCCLUSION = 12  # training occlusions: k in 1..12 (capped to a segment's context frames)
OCCLUSION_PROBABILITY = 0.5
CPU_UPDATES = 300
PROBE_FILE = "memory_probe.csv"
ARMS: dict[str, tuple[str, tuple[str, ...]]] = {  # key -> (label, overrides)
    "frame_stack": ("frame stack, L = 4", ("diffusion.history=frame_stack", "diffusion.num_history=4",
                                           "training.burn_in=4")),
    "cross_attention": ("cross-attention, L = 8", ("diffusion.history=cross_attention", "diffusion.num_history=8",
                                                   "training.burn_in=8")),
    "recurrent": ("recurrent memory, L = 4 + GRU over 12", ("world_model.factory=recurrent", "diffusion.num_history=4",
                                                            "training.burn_in=4",
                                                            "world_model.options={memory_frames: 12}")),
}


@dataclass(frozen=True)
class Schedule:
    num_frames: int
    train_steps: int
    checkpoint_every: int
    probe_starts: int
    protocol: dict[str, Any]  # ProtocolSettings fields of the usual per-step error and drift


SCHEDULES: dict[str, Schedule] = {
    "cpu": Schedule(10_000, CPU_UPDATES, 50, 64,
                    {"horizon": 40, "num_steps": [1], "rollouts": 8, "clips": 4, "clip_context": 8, "clip_len": 4,
                     "feature_networks": False, "drift_frames": 1024}),
    "smoke": Schedule(2_000, 4, 2, 8, {"horizon": 6, "num_steps": [1], "rollouts": 2, "clips": 2, "clip_context": 8,
                                       "clip_len": 2, "feature_networks": False, "drift_frames": 64}),
}
FIXED = ("diffusion.train_chain=1", "diffusion.num_steps=1", "denoiser_optim.warmup_steps=20")


def schedule(profile: str) -> Schedule:
    if profile not in SCHEDULES:
        raise ValueError(f"suite {NAME} has no settings for profile {profile!r}; valid: {', '.join(SCHEDULES)}")
    return SCHEDULES[profile]


def arm_overrides(opts: SuiteOptions, key: str) -> list[str]:
    """The user's --set, then the schedule's fixed settings and the arm's (small cross-attention encoder)."""
    out = [*opts.overrides, *FIXED, *ARMS[key][1]]
    if key == "cross_attention":
        out.append("denoiser.history_kwargs={encoder_channels: [8, 8, 16, 16], encoder_cond_dim: 16, levels: [3]}")
    return out


class OccludedTrainer(StaticTrainer):
    """StaticTrainer whose training segments get the probe's occlusions before their first target (the test loss
    stays unoccluded); the occlusions are drawn from the run's checkpointed RNG, so a resume is exact."""

    def _loss(self, seg: Any) -> torch.Tensor:
        if not self.model.training:
            return super()._loss(seg)
        seg = seg.to_torch(self.device)
        obs = to_float(seg.obs) * seg.mask[:, :, None, None, None]
        first_target = obs.shape[1] - self.cfg.diffusion.train_chain
        k = np.minimum(draw_occlusions(len(obs), MAX_OCCLUSION, OCCLUSION_PROBABILITY, self.rng), first_target)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.perf.bf16):
            return self.model.loss(occlude(obs, torch.as_tensor(k), first_target), seg.act, seg.mask)


@locked_run
def run(run_dir: str | Path, dataset_dir: str | Path, profile: str, overrides: Sequence[str], train_steps: int,
        checkpoint_every: int, probe_starts: int, protocol: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Train one mechanism with occlusions (or resume), then the memory probe and the usual protocol; result.json."""
    run_dir = Path(run_dir)
    if (run_dir / "result.json").is_file():
        return read_json(run_dir / "result.json")
    settings = ProtocolSettings.from_dict(protocol)
    buffer, summary = load_dataset(dataset_dir)
    cfg = _resolved_config(run_dir, profile, overrides, seed, summary["game"])
    train, test = split_episodes(buffer, 0.1)
    trainer = OccludedTrainer(cfg, run_dir, train, test, num_actions(summary["game"]))
    trainer.resume()
    trainer.fit(train_steps, checkpoint_every, checkpoint_every, checkpoint_every, None)
    start = time.perf_counter()
    probe = memory_probe(trainer.model, test, occlusions=OCCLUSIONS, context=PROBE_CONTEXT, starts=probe_starts,
                         seed=settings.seed)
    probe_time = time.perf_counter() - start
    atomic_write_text(run_dir / PROBE_FILE, probe.to_csv(index=False))
    evaluation = evaluate(trainer.model, test, settings, run_dir, train)
    last = read_jsonl(trainer.metrics_path)[-1]
    result = {"game": summary["game"], "profile": profile, "seed": seed, "factory": cfg.world_model.factory,
              "history": cfg.diffusion.history, "num_history": cfg.diffusion.num_history,
              "segment_length": trainer.model.segment_length, "num_parameters": num_parameters(trainer.model),
              "train_steps": trainer.step, "train_time_s": trainer.train_time, "train_loss": last["train/loss"],
              "test_loss": last.get("test/loss"), "probe_file": PROBE_FILE, "probe_time_s": probe_time,
              "probe_frames": int(len(OCCLUSIONS) * probe["n_starts"].iloc[0]),
              "eval_time_s": time.perf_counter() - start, **evaluation}
    atomic_write_json(run_dir / "result.json", result)
    return result


def stages(opts: SuiteOptions) -> list[list[RunSpec]]:
    """[dataset], then the three mechanisms × seeds on it."""
    if opts.games is not None and tuple(opts.games) != (GAME,):
        raise ValueError(f"suite {NAME} runs on {GAME} only (the game with a scripted expert), got {list(opts.games)}.")
    s, root = schedule(opts.profile), opts.suite_dir(NAME)
    data = RunSpec(name=f"dataset-{GAME}", run_dir=root / f"dataset-{GAME}", entry="ablations.static_data:run",
                   kwargs={"game": GAME, "num_frames": s.num_frames, "seed": 0, "random_games": 1}, gpu_hours=0.0,
                   group="dataset")
    models = [RunSpec(name=f"wm-{key}-s{seed}", run_dir=root / f"wm-{key}-s{seed}", entry="ablations.memory:run",
                      kwargs={"dataset_dir": str(dataset_dir(data.run_dir)), "profile": opts.profile,
                              "overrides": arm_overrides(opts, key), "train_steps": s.train_steps,
                              "checkpoint_every": s.checkpoint_every, "probe_starts": s.probe_starts,
                              "protocol": s.protocol, "seed": seed}, gpu_hours=0.0, group=key)
              for key in ARMS for seed in range(opts.seeds or 1)]
    return [[data], models]


def report(opts: SuiteOptions) -> tuple[Path, Path]:
    from reports.memory import build_memory_report

    _, models = stages(opts)
    return build_memory_report(opts.report_context(NAME), models, {k: label for k, (label, _) in ARMS.items()},
                               OCCLUSIONS, PROBE_CONTEXT)


SUITE = Suite(
    name=NAME,
    description="Memory probe: frame stack (L = 4), cross-attention (L = 8) and a recurrent-memory world model, "
                "trained with occlusions; error of the frame after k hidden frames, per-step error and drift",
    paper_artefact="beyond the paper (EDELINE-style memory; issue 21)",
    stages=stages,
    report=report,
    default_games=(GAME,),
    default_seeds=1,
)
