"""Suite `ablation_ddpm_vs_edm` (paper §5.1, Figure 3): EDM vs DDPM world models, same network, same static data.

Stage 1 collects the static Breakout expert dataset; stage 2 trains one world model per paradigm
(× seed) on it with the same network and number of updates, then rolls both out from the same real
contexts for each number of denoising steps n. Samplers: EDM uses Euler (the paper's sampler);
DDPM uses ancestral sampling, because the released code's DDPM branch samples by stepping
diffusers' DDPMScheduler, which is the ancestral posterior step (DDIM is available as an override
of the sampler at rollout time, not used here).

Schedule choices, per profile (`PROFILE_SETTINGS`):
- paper: 100k frames (§5.1). The paper does not give the number of updates for this study; we use
  120k updates, the schedule of its other static-dataset world models (App. J.3), at the Atari
  batch size of Table 3 (32). Rollouts to t = 1000 for n ∈ {1, 2, 3, 5, 10} (Figure 3).
- small: the same 100k-frame dataset (collection takes minutes on a CPU; the data then match the
  paper's), 5k updates (minutes on one GPU), the full rollout protocol.
- smoke: ~2k frames, 50 updates, rollouts to t = 30 for n ∈ {1, 3}, on a CPU in about a minute.
GPU-hours are projections (collection runs on a CPU: 0): the paper run ≈ 120k updates × ~40 ms plus
~10 minutes of rollouts and clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ablations.registry import Suite, SuiteOptions
from ablations.static_data import dataset_dir
from slurm.launcher import RunSpec

NAME = "ablation_ddpm_vs_edm"
GAME = "Breakout"
# paradigm -> (sampler, label); the sampler is the paradigm's, never a user override
PARADIGMS: dict[str, tuple[str, str]] = {"edm": ("euler", "EDM"), "ddpm": ("ddpm_ancestral", "DDPM")}
VARIED_KEYS = ("diffusion.paradigm", "diffusion.sampler")


@dataclass(frozen=True)
class ProfileSettings:
    num_frames: int
    random_games: int  # full games of the random baseline in the dataset summary
    train_steps: int
    checkpoint_every: int
    horizon: int
    num_steps: tuple[int, ...]
    rollouts: int
    clips: int
    feature_networks: bool
    gpu_hours_per_model: float


PROFILE_SETTINGS: dict[str, ProfileSettings] = {
    "paper": ProfileSettings(num_frames=100_000, random_games=10, train_steps=120_000, checkpoint_every=2_000,
                             horizon=1000, num_steps=(1, 2, 3, 5, 10), rollouts=16, clips=256,
                             feature_networks=True, gpu_hours_per_model=1.5),
    "small": ProfileSettings(num_frames=100_000, random_games=10, train_steps=5_000, checkpoint_every=1_000,
                             horizon=1000, num_steps=(1, 2, 3, 5, 10), rollouts=8, clips=64,
                             feature_networks=True, gpu_hours_per_model=0.15),
    "smoke": ProfileSettings(num_frames=2_000, random_games=2, train_steps=50, checkpoint_every=25,
                             horizon=30, num_steps=(1, 3), rollouts=4, clips=4,
                             feature_networks=False, gpu_hours_per_model=0.0),
}


def settings_for(profile: str) -> ProfileSettings:
    if profile not in PROFILE_SETTINGS:
        raise ValueError(f"suite {NAME} has no settings for profile {profile!r}; valid: {', '.join(PROFILE_SETTINGS)}")
    return PROFILE_SETTINGS[profile]


def _check_options(opts: SuiteOptions) -> None:
    if opts.games is not None and tuple(opts.games) != (GAME,):
        raise ValueError(f"suite {NAME} runs on {GAME} only (the game with a scripted expert), got {list(opts.games)}.")
    clash = [o for o in opts.overrides if o.partition("=")[0].strip() in VARIED_KEYS]
    if clash:
        raise ValueError(f"suite {NAME} sets {' and '.join(VARIED_KEYS)} itself; drop the override(s) {clash}.")


def dataset_run_dir(opts: SuiteOptions) -> Path:
    return opts.suite_dir(NAME) / f"dataset-{GAME}"


def model_run_name(paradigm: str, seed: int) -> str:
    return f"wm-{paradigm}-{GAME}-s{seed}"


def stages(opts: SuiteOptions) -> list[list[RunSpec]]:
    """[dataset], then [EDM, DDPM] × seeds on that dataset."""
    _check_options(opts)
    s = settings_for(opts.profile)
    data_dir = dataset_run_dir(opts)
    dataset = RunSpec(name=f"dataset-{GAME}", run_dir=data_dir, entry="ablations.static_data:run",
                      kwargs={"game": GAME, "num_frames": s.num_frames, "seed": 0, "random_games": s.random_games},
                      gpu_hours=0.0, group="dataset")
    protocol = {"horizon": s.horizon, "num_steps": list(s.num_steps), "rollouts": s.rollouts, "clips": s.clips,
                "feature_networks": s.feature_networks}
    models = [
        RunSpec(name=model_run_name(paradigm, seed), run_dir=opts.suite_dir(NAME) / model_run_name(paradigm, seed),
                entry="ablations.static_wm:run",
                kwargs={"dataset_dir": str(dataset_dir(data_dir)), "profile": opts.profile,
                        "overrides": [*opts.overrides, f"diffusion.paradigm={paradigm}",
                                      f"diffusion.sampler={sampler}"],
                        "train_steps": s.train_steps, "checkpoint_every": s.checkpoint_every,
                        "test_every": s.checkpoint_every, "protocol": protocol, "seed": seed},
                gpu_hours=s.gpu_hours_per_model, group=paradigm)
        for paradigm, (sampler, _) in PARADIGMS.items() for seed in range(opts.seeds or 1)
    ]
    return [[dataset], models]


def report(opts: SuiteOptions) -> tuple[Path, Path]:
    from reports.ddpm_vs_edm import build_report

    return build_report(opts)


SUITE = Suite(
    name=NAME,
    description="EDM vs DDPM world models on a static Breakout expert dataset: long open-loop rollouts per n",
    paper_artefact="§5.1, Figure 3",
    stages=stages,
    report=report,
    default_games=(GAME,),
    default_seeds=1,
)
