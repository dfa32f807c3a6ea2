"""Suite `ablation_memory`: memory mechanisms of a diffusion world model on the delayed-cue probe (issue 30).

Data: the delayed-cue game (diamond/loop/memory_game.py): a cue shown for PROBE_CONTEXT frames, hidden for a delay d
drawn uniformly in 0..PROBE_CONTEXT, then an answer block in the cue's colour. Random actions, one dataset
for every model. The delay is the occlusion: every probed k, the fully cue-free context (d = PROBE_CONTEXT)
included, occurs in the training data of every model, in the same proportion.

Mechanisms (`ARMS`), each a world model of diamond/models/registry.py with the same denoiser U-Net, schedule and data
(`--models` enters more, each with the paper's L = 4 window, the same schedule and data; `--only-models` runs
only those; `world_model.factory` and `.options` are chosen per arm, so --set refuses them):
- frame stack, L = 4 (the paper's model): the cue is out of its window from k = 4;
- frame stack, L = 16 (the control): its window is the whole probe context, blind only at k = 16;
- cross-attention over L = 8 frames (App. J.2's conditioning): blind from k = 8;
- recurrent memory (`world_model.factory=recurrent`, diamond/models/recurrent_wm.py): the frame stack of 4 plus a GRU
  state over the 12 frames before it, blind at k = 16 only.
Evaluation: the probe of evaluation/memory.py (error on the answer block, the fraction of information kept,
ceiling and floor, context use with the cue swapped), then the open-loop per-step error against copying the
last frame (ablations.static_wm.evaluate: does the model beat copying before its memory is judged?).

Profiles: `cpu` (every model in one nice'd process on a shared 2-core CPU: the profile `cpu` U-Net
[16, 16, 32, 32], batch 16, CPU_UPDATES updates each, one denoising step; the cross-attention encoder is small
and attends at the 8x8 level only) and `smoke` (the pipeline in about a minute). CPU_UPDATES = 2,000: the Breakout
models of Figure 3 needed about 2,400 to beat copying the last frame, and here copying is strong (only the bars
move); the report's vs_copy table says whether each model got there. Measured (cpu networks on delayed-cue frames,
one thread, CPU seconds per update from getrusage, nice'd on a shared 2-core machine): frame stack L = 4 0.30 s,
L = 16 0.33 s, cross-attention 0.72 s, recurrent 0.32 s: 1.67 s for the four arms of one seed. Projected for
`python run_suite.py --suite ablation_memory --profile cpu` (3 seeds): 3 × 1.67 × 2,000 ≈ 10,000 CPU-seconds
(2.8 CPU-hours) of training, plus a few minutes of data, probe and per-step error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ablations.static_data import dataset_dir
from ablations.static_wm import ProtocolSettings, StaticTrainer, evaluate, load_dataset, split_episodes
from ablations.suite import Suite, SuiteOptions
from diamond.loop.config import Config, build_config, config_hash, to_dict
from diamond.loop.memory_game import GAME, DelayedCueEnv, collect_delayed_cue_dataset
from diamond.models.registry import check_buildable
from diamond.run.io import atomic_write_json, atomic_write_text, atomic_write_yaml, read_json, read_jsonl
from diamond.run.rundir import locked_run, record_identity
from evaluation.memory import cue_probe
from evaluation.wm_protocol import num_parameters
from slurm.launcher import RunSpec

NAME = "ablation_memory"
PROBE_CONTEXT = 16  # frames before the answer (the cue's frames); the recurrent model's 12 + 4
OCCLUSIONS = (0, 1, 2, 4, 6, 8, 12, 16)  # k = 16: no context frame shows the cue, every model's blind point
NUM_CUES = 3  # cue colours = actions
CPU_UPDATES = 2000
PROBE_FILE = "memory_probe.csv"
ARMS: dict[str, tuple[str, tuple[str, ...]]] = {  # key -> (label, overrides)
    "frame_stack": ("frame stack, L = 4", ("diffusion.history=frame_stack", "diffusion.num_history=4",
                                           "training.burn_in=4")),
    # R_ψ's sequence is unused here, but the config asks it to exceed burn-in = L
    "frame_stack_16": ("frame stack, L = 16", ("diffusion.history=frame_stack", "diffusion.num_history=16",
                                               "training.burn_in=16", "training.reward_end_seq_len=32")),
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
    protocol: dict[str, Any]  # ProtocolSettings fields of the usual per-step error


SCHEDULES: dict[str, Schedule] = {
    "cpu": Schedule(10_000, CPU_UPDATES, 100, 96,
                    {"horizon": 8, "num_steps": [1], "rollouts": 32, "clips": 2, "clip_context": 16, "clip_len": 2,
                     "feature_networks": False, "drift_frames": 0}),
    "smoke": Schedule(1_000, 4, 2, 8, {"horizon": 2, "num_steps": [1], "rollouts": 2, "clips": 2, "clip_context": 16,
                                       "clip_len": 1, "feature_networks": False, "drift_frames": 0}),
}
FIXED = ("diffusion.train_chain=1", "diffusion.num_steps=1", "denoiser_optim.warmup_steps=20")
ADDED = ("diffusion.num_history=4", "training.burn_in=4")  # a --models entrant sees the paper's L = 4 window
CHOSEN_PER_ARM = ("world_model.factory", "world_model.options")  # the arms' own: --models adds a model instead


def arms(opts: SuiteOptions) -> dict[str, tuple[str, tuple[str, ...]]]:
    """key -> (label, overrides after FIXED): the four mechanisms (unless --only-models), then each --models
    entrant, named by its label, on the frame window of the paper's model."""
    clash = [o for o in opts.overrides if o.partition("=")[0].strip() in CHOSEN_PER_ARM]
    if clash:
        raise ValueError(f"suite {NAME} chooses the world model per arm; drop the override(s) {clash} and enter "
                         "a model with --models")
    added = {f"model-{e.key}": (e.label, (*ADDED, *e.overrides())) for e in opts.entrants() if e.added}
    return added if opts.only_models else {**ARMS, **added}


def schedule(profile: str) -> Schedule:
    if profile not in SCHEDULES:
        raise ValueError(f"suite {NAME} has no settings for profile {profile!r}; valid: {', '.join(SCHEDULES)}")
    return SCHEDULES[profile]


def arm_overrides(opts: SuiteOptions, key: str) -> list[str]:
    """The user's --set, then the schedule's fixed settings and the arm's (small cross-attention encoder)."""
    out = [*opts.overrides, *FIXED, *arms(opts)[key][1]]
    if key == "cross_attention":
        out.append("denoiser.history_kwargs={encoder_channels: [8, 8, 16, 16], encoder_cond_dim: 16, levels: [3]}")
    return out


@locked_run
def build_dataset(run_dir: str | Path, num_frames: int, seed: int = 0) -> dict[str, Any]:
    """The delayed-cue dataset (random actions, delays uniform in 0..PROBE_CONTEXT) as one run folder."""
    result_path = Path(run_dir) / "result.json"
    if result_path.is_file():
        return read_json(result_path)
    summary = collect_delayed_cue_dataset(dataset_dir(run_dir), num_frames=num_frames, seed=seed,
                                          num_actions=NUM_CUES, cue_frames=PROBE_CONTEXT)
    result = {**summary, "dataset_dir": str(dataset_dir(run_dir))}
    atomic_write_json(result_path, result)
    return result


def _claimed_config(run_dir: Path, profile: str, overrides: Sequence[str], seed: int, n_actions: int) -> Config:
    """The run's config (env.game stays the profile's: the game here is not an ALE one), built and probed through
    the registry, then claimed for the folder: resuming with other arguments fails naming the keys."""
    cfg = build_config(profile, list(overrides), seed=seed)
    check_buildable(cfg, n_actions)
    record_identity(run_dir, {"game": GAME, "seed": seed, "profile": profile, "config_hash": config_hash(cfg)},
                    config=to_dict(cfg), flag="run folder")
    atomic_write_yaml(run_dir / "config.yaml", to_dict(cfg))
    return cfg


@locked_run
def run(run_dir: str | Path, dataset_dir: str | Path, profile: str, overrides: Sequence[str], train_steps: int,
        checkpoint_every: int, probe_starts: int, protocol: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Train one mechanism on the delayed-cue data (or resume), then the probe and the per-step error; result.json."""
    run_dir = Path(run_dir)
    if (run_dir / "result.json").is_file():
        return read_json(run_dir / "result.json")
    settings = ProtocolSettings.from_dict(protocol)
    buffer, summary = load_dataset(dataset_dir)
    cfg = _claimed_config(run_dir, profile, overrides, seed, summary["num_actions"])
    train, test = split_episodes(buffer, 0.1)
    trainer = StaticTrainer(cfg, run_dir, train, test, summary["num_actions"])
    trainer.resume()
    trainer.fit(train_steps, checkpoint_every, checkpoint_every, checkpoint_every, None)
    env = DelayedCueEnv(num_actions=summary["num_actions"], size=summary["size"], cue_frames=summary["cue_frames"],
                        max_delay=summary["max_delay"])
    start = time.perf_counter()
    probe = cue_probe(trainer.model, env, occlusions=OCCLUSIONS, starts=probe_starts, seed=settings.seed)
    probe_time = time.perf_counter() - start
    atomic_write_text(run_dir / PROBE_FILE, probe.to_csv(index=False))
    evaluation = evaluate(trainer.model, test, settings, run_dir, train)
    last = read_jsonl(trainer.metrics_path)[-1]
    result = {"game": GAME, "profile": profile, "seed": seed, "factory": cfg.world_model.factory,
              "history": cfg.diffusion.history, "num_history": cfg.diffusion.num_history,
              "segment_length": trainer.model.segment_length, "num_parameters": num_parameters(trainer.model),
              "train_steps": trainer.step, "train_time_s": trainer.train_time, "train_loss": last["train/loss"],
              "test_loss": last.get("test/loss"), "probe_file": PROBE_FILE, "probe_time_s": probe_time,
              "probe_frames": 2 * len(OCCLUSIONS) * probe_starts, "eval_time_s": time.perf_counter() - start,
              **evaluation}
    atomic_write_json(run_dir / "result.json", result)
    return result


def stages(opts: SuiteOptions) -> list[list[RunSpec]]:
    """[dataset], then the four mechanisms × seeds on it."""
    if opts.games is not None and tuple(opts.games) != (GAME,):
        raise ValueError(f"suite {NAME} runs on its own game, {GAME}, only; got {list(opts.games)}.")
    s, root = schedule(opts.profile), opts.suite_dir(NAME)
    data = RunSpec(name=f"dataset-{GAME}", run_dir=root / f"dataset-{GAME}", entry="ablations.memory:build_dataset",
                   kwargs={"num_frames": s.num_frames, "seed": 0}, gpu_hours=0.0, group="dataset")
    models = [RunSpec(name=f"wm-{key}-s{seed}", run_dir=root / f"wm-{key}-s{seed}", entry="ablations.memory:run",
                      kwargs={"dataset_dir": str(dataset_dir(data.run_dir)), "profile": opts.profile,
                              "overrides": arm_overrides(opts, key), "train_steps": s.train_steps,
                              "checkpoint_every": s.checkpoint_every, "probe_starts": s.probe_starts,
                              "protocol": s.protocol, "seed": seed}, gpu_hours=0.0, group=key)
              for key in arms(opts) for seed in range(opts.seeds or SUITE.default_seeds)]
    return [[data], models]


def report(opts: SuiteOptions) -> tuple[Path, Path]:
    from reports.memory import build_memory_report

    _, models = stages(opts)
    return build_memory_report(opts.report_context(NAME), models, {k: label for k, (label, _) in arms(opts).items()},
                               PROBE_CONTEXT)


SUITE = Suite(
    name=NAME,
    description="Memory probe on the delayed-cue game: frame stacks (L = 4, L = 16), cross-attention (L = 8) and a "
                "recurrent-memory world model; information kept about a hidden cue after k frames, ceiling, floor, "
                "context use, per-step error against copying the last frame",
    paper_artefact="beyond the paper (EDELINE-style memory; issues 21, 30)",
    stages=stages,
    report=report,
    default_games=(GAME,),
    default_seeds=3,
)
