"""Suite `ablation_conditioning` (App. J.2, Table 6): frame-stack vs cross-attention history conditioning.

Both world models condition on L = 6 frames (Table 6: "conditioned on an initial set of L = 6 observations")
and are trained on the same static data with the same schedule; they differ only in how the past enters
the U-Net (concatenated channels vs a shared-weight encoder that the U-Net cross-attends to). They are then
measured with the Table 6 protocol (ablations.arms.evaluate_world_model) on the held-out episodes: FID,
FVD and LPIPS of 16-frame clips generated from 6 real frames and the real actions, sampling rate
(frames/s on the run's machine) and parameter count.

The paper ran this study on CS:GO and motorway driving, whose datasets and 122M/184M-parameter models are
out of reach here; we run it on the scripted Breakout expert's static dataset with the Atari network.
Stages: [expert dataset], [one world model per arm × seed, the decision judges], [one evaluation and one
decision measurement per model]. Each --models entrant is one more arm, on the frame-stack arm's window and
schedule, measured with its own sampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ablations.arms import ClipProtocol, check_evaluation, check_finished, reject_overrides
from ablations.entrants import Entrant
from ablations.sampler import EXPERT_GAME, TEST_FRACTION
from ablations.static_data import dataset_dir
from ablations.static_decision import decision_protocol
from ablations.suite import Suite, SuiteOptions
from diamond.loop.config import Config, build_config
from slurm.launcher import RunSpec

NAME = "ablation_conditioning"
HISTORY = 6  # L of Table 6
ARMS = {"frame_stack": "frame-stack", "cross_attention": "cross-attention"}  # config value -> label
REFERENCE = "frame_stack"  # the paper's architecture (§3, App. J.2)
VARIED_KEYS = ("diffusion.history", "diffusion.num_history", "training.burn_in")


@dataclass(frozen=True)
class ConditioningSchedule:
    expert_frames: int
    expert_random_games: int
    train_steps: int
    checkpoint_every: int
    overrides: tuple[str, ...]  # the schedule's own settings; a user's --set of the same key wins
    small_encoder: bool  # cross-attention encoder as small as the (smoke) denoiser
    protocol: ClipProtocol
    hours: dict[str, float]  # GPU-hours of one world model per arm (training + its short built-in check)
    hours_eval: float


# paper: App. J.3 trains every Table 6 model for 120k updates at batch size 64, and evaluates 1024 clips.
# GPU-hours are projections: ablation_ddpm_vs_edm's 1.5 h for 120k updates at batch 32, doubled for batch 64;
# cross-attention costs ≈ 2x per update (measured on a CPU at paper size, L = 6: 5.7 s vs 2.9 s per batch).
SCHEDULES: dict[str, ConditioningSchedule] = {
    "paper": ConditioningSchedule(100_000, 10, 120_000, 2_000, ("training.batch_size=64",), False, ClipProtocol(),
                                  {"frame_stack": 3.0, "cross_attention": 6.0}, 0.2),
    "small": ConditioningSchedule(100_000, 10, 5_000, 1_000, (), False,
                                  ClipProtocol(clips=256, rollouts=8),
                                  {"frame_stack": 0.15, "cross_attention": 0.3}, 0.05),
    "smoke": ConditioningSchedule(2_000, 1, 50, 25, (), True,
                                  ClipProtocol(clips=8, keep=2, rollouts=2, horizon=30, feature_networks=False,
                                               bootstrap_reps=50), {"frame_stack": 0.0, "cross_attention": 0.0}, 0.0),
}


def schedule(profile: str) -> ConditioningSchedule:
    if profile not in SCHEDULES:
        raise ValueError(f"suite {NAME} has no settings for profile {profile!r}; valid: {', '.join(SCHEDULES)}")
    return SCHEDULES[profile]


def fit_cond_dim(cond_dim: int, num_history: int) -> int:
    """The smallest conditioning width >= cond_dim that the denoiser accepts with L past actions: even and a
    multiple of L (each action embedding gets cond_dim / L entries); 256 becomes 258 for L = 6."""
    step = num_history if num_history % 2 == 0 else 2 * num_history
    return -(-cond_dim // step) * step


def arms(opts: SuiteOptions) -> dict[str, tuple[str, Entrant | None]]:
    """key -> (label, the --models entrant or None): the two conditionings (unless --only-models), then each
    --models entrant, named by its label, on the frame-stack arm's L = 6 window and schedule."""
    added = {f"model-{e.key}": (e.label, e) for e in opts.entrants() if e.added}
    return added if opts.only_models else {**{k: (label, None) for k, label in ARMS.items()}, **added}


def arm_overrides(opts: SuiteOptions, key: str, entrant: Entrant | None = None) -> list[str]:
    """Schedule settings, the user's --set, then what the arm fixes: L = 6 (burn-in too) and its conditioning;
    an added model (`entrant`) gets the frame-stack arm's settings, then its factory and options."""
    history = REFERENCE if entrant else key
    base = [*schedule(opts.profile).overrides, *opts.overrides]
    cfg = build_config(opts.profile, base)
    fixed = [f"diffusion.history={history}", f"diffusion.num_history={HISTORY}", f"training.burn_in={HISTORY}",
             f"denoiser.cond_dim={fit_cond_dim(cfg.denoiser.cond_dim, HISTORY)}"]
    if history == "cross_attention" and schedule(opts.profile).small_encoder and not cfg.denoiser.history_kwargs:
        channels = ", ".join(str(c) for c in cfg.denoiser.channels)
        fixed.append(f"denoiser.history_kwargs={{encoder_channels: [{channels}], encoder_cond_dim: 16}}")
    return [*base, *fixed, *(entrant.overrides() if entrant else ())]


def own_sampler(cfg: Config, entrant: Entrant | None, opts: SuiteOptions) -> str:
    """The sampler an arm is measured with: the config's if the model declares it, else the first it declares
    (a plug-in's own sampler)."""
    if entrant is None:
        return cfg.diffusion.sampler
    offered = entrant.declarations(opts.profile, tuple(opts.overrides)).samplers
    return cfg.diffusion.sampler if cfg.diffusion.sampler in offered else offered[0]


def stages(opts: SuiteOptions) -> list[list[RunSpec]]:
    """[expert dataset], [frame-stack, cross-attention] × seeds and the decision judges, [their Table 6
    evaluations and decision measurements]."""
    if opts.games is not None and tuple(opts.games) != (EXPERT_GAME,):
        raise ValueError(f"suite {NAME} runs on {EXPERT_GAME} only (the game with a scripted expert's static "
                         f"dataset), got {list(opts.games)}.")
    reject_overrides(NAME, opts.overrides, VARIED_KEYS)
    s, root = schedule(opts.profile), opts.suite_dir(NAME)
    expert = RunSpec(name=f"dataset-{EXPERT_GAME}-expert", run_dir=root / f"dataset-{EXPERT_GAME}-expert",
                     entry="ablations.static_data:run",
                     kwargs={"game": EXPERT_GAME, "num_frames": s.expert_frames, "seed": 0,
                             "random_games": s.expert_random_games}, gpu_hours=0.0, group="dataset")
    data = str(dataset_dir(expert.run_dir))
    decision = decision_protocol(opts.profile)
    judges = RunSpec(name=f"judges-{EXPERT_GAME}", run_dir=root / f"judges-{EXPERT_GAME}",
                     entry="ablations.static_judges:run",
                     kwargs={"dataset_dir": data, "profile": opts.profile, "overrides": arm_overrides(opts, REFERENCE),
                             "decision": decision}, gpu_hours=s.hours_eval, group="judges")
    models, evals = [], []
    for history, (label, entrant) in arms(opts).items():
        overrides = arm_overrides(opts, history, entrant)
        for seed in range(opts.seeds or 1):
            cfg = build_config(opts.profile, overrides, seed=seed, **{"env.game": EXPERT_GAME})
            model = RunSpec(name=f"wm-{history}-s{seed}", run_dir=root / f"wm-{history}-s{seed}",
                            entry="ablations.static_wm:run",
                            kwargs={"dataset_dir": data, "profile": opts.profile, "overrides": overrides,
                                    "train_steps": s.train_steps, "checkpoint_every": s.checkpoint_every,
                                    "test_every": s.checkpoint_every, "seed": seed, "test_fraction": TEST_FRACTION,
                                    "protocol": {"horizon": s.protocol.clip_len, "num_steps": [cfg.diffusion.num_steps],
                                                 "rollouts": 2, "clips": 2, "feature_networks": False}},
                            gpu_hours=s.hours.get(history, s.hours[REFERENCE]), group=history)
            check_finished(model, cfg)
            setting = {"key": history, "label": label, "sampler": own_sampler(cfg, entrant, opts),
                       "num_steps": cfg.diffusion.num_steps}
            evaluation = RunSpec(name=f"eval-{history}-s{seed}", run_dir=root / f"eval-{history}-s{seed}",
                                 entry="ablations.arms:evaluate_world_model",
                                 kwargs={"model_dir": str(model.run_dir), "dataset_dir": data, "settings": [setting],
                                         "protocol": s.protocol.to_dict(), "test_fraction": TEST_FRACTION},
                                 gpu_hours=s.hours_eval, group=history)
            check_evaluation(evaluation)
            decided = RunSpec(name=f"decision-{history}-s{seed}", run_dir=root / f"decision-{history}-s{seed}",
                              entry="ablations.static_decision:run",
                              kwargs={"model_dir": str(model.run_dir), "judges_dir": str(judges.run_dir),
                                      "profile": opts.profile, "overrides": overrides, "seed": seed,
                                      "num_steps": [cfg.diffusion.num_steps], "decision": decision},
                              gpu_hours=s.hours_eval, group=history)
            models.append(model)
            evals += [evaluation, decided]
    return [[expert], [*models, judges], evals]


def report(opts: SuiteOptions) -> tuple[Path, Path]:
    from reports.conditioning import build_conditioning_report  # the report stack loads only when needed

    labels = {key: label for key, (label, _) in arms(opts).items()}
    return build_conditioning_report(opts.report_context(NAME), stages(opts), labels,
                                     REFERENCE if REFERENCE in labels else next(iter(labels)), HISTORY)


SUITE = Suite(
    name=NAME,
    description=(f"Frame-stack vs cross-attention history conditioning (L = {HISTORY}) of the EDM world model, trained "
                 "on the scripted Breakout expert's static dataset and measured with the Table 6 protocol (FID, "
                 "FVD, LPIPS of 16-frame clips from 6 real frames and the real actions, frames/s, parameters)."),
    paper_artefact="App. J.2 and Table 6 (the paper's study used CS:GO and motorway driving)",
    stages=stages,
    report=report,
    default_games=(EXPERT_GAME,),
    default_seeds=1,
)
