"""Suite `ablation_ddpm_vs_edm` (paper §5.1, Figure 3): EDM vs DDPM world models, same network, same static data.

Stage 1 collects the static Breakout expert dataset; stage 2 trains one world model per arm (× seed) on it
with the same network and number of updates, then rolls every model out from the same real contexts for
each number of denoising steps n.

Arms (`ARMS`). The Figure 3 pair, EDM and DDPM, differ in the paradigm only (a test compares their resolved
configs): both make one prediction per training segment, Algorithm 1 as printed (the released `ddpm`
branch does the same). A third arm, EDM with two chained predictions per segment (the released `main`
branch: the second prediction is conditioned on the first one's denoised estimate), separates the effect
of the paradigm from the effect of chained training. Samplers: EDM uses Euler (the paper's sampler);
DDPM uses ancestral sampling, because the released `ddpm` branch steps diffusers' DDPMScheduler, the
ancestral posterior step, which clips the x0 estimate to [-1, 1] at each step; the final frame is
quantised to 8 bits (diamond/diffusion/paradigms.py, `DDPMConfig.quantize_each_step` = False).

Schedule choices, per profile (`PROFILE_SETTINGS`):
- paper: 100k frames (§5.1). The paper does not give the number of updates for this study; we use
  120k updates, the schedule of its other static-dataset world models (App. J.3), at the Atari
  batch size of Table 3 (32). Rollouts to t = 1000 for n ∈ {1, 2, 3, 5, 10} (Figure 3).
- small: the same 100k-frame dataset (collection takes minutes on a CPU; the data then match the
  paper's), 5k updates (minutes on one GPU), the full rollout protocol.
- cpu: the whole suite on a 2-core CPU in well under 1.5 hours (profile `cpu` of diamond/profiles.py: a
  0.49 M-parameter U-Net [16, 16, 32, 32], one block per level, no bottleneck attention, batch 16, lr 1e-3).
  The three models train at once, one thread each. Measured here, three runs at once: 2.0 updates/s for a
  one-prediction arm and 1.2 for the chained arm (two predictions per update) on a quiet machine, 1.2 and
  0.65 with other jobs on it; a batch-16 denoiser call takes ~0.2 s. CPU_UPDATES updates (the issue's
  reference model reached 33 dB one-step PSNR after 3.6k; the test loss still falls, noisily, at 2.4k) then
  rollouts of 16 starts to t = 120 for every n (21 denoiser calls per step) and 16 clips per n.
  No FID/FVD/LPIPS: an Inception call costs ~0.5 s per frame on this CPU (measured), ~40 minutes per model
  for 32 clips × 5 n, and FID from a few hundred frames is strongly biased anyway; the drift measures
  (evaluation/drift.py) stand in for it. The dataset is 50k frames (~50 s to collect), enough for 15 full
  expert games, so the expert's return is measured.
- smoke: ~2k frames, 50 updates, rollouts to t = 30 for n ∈ {1, 3}, on a CPU in about a minute.
GPU-hours are projections (collection and the cpu profile run on a CPU: 0): the paper run ≈ 120k updates
× ~40 ms plus ~10 minutes of rollouts and clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ablations.registry import Suite, SuiteOptions
from ablations.static_decision import decision_protocol
from ablations.static_data import dataset_dir
from slurm.launcher import RunSpec

NAME = "ablation_ddpm_vs_edm"
GAME = "Breakout"
CPU_UPDATES = 2_400


@dataclass(frozen=True)
class Arm:
    """One world model of the study: a paradigm, its own sampler, and the chained predictions per segment."""

    key: str  # run-name part
    label: str  # in the report
    paradigm: str
    sampler: str  # the paradigm's sampler, never a user override
    train_chain: int

    def overrides(self) -> list[str]:
        return [f"diffusion.paradigm={self.paradigm}", f"diffusion.sampler={self.sampler}",
                f"diffusion.train_chain={self.train_chain}"]


ARMS: tuple[Arm, ...] = (
    Arm("edm", "EDM", "edm", "euler", 1),
    Arm("ddpm", "DDPM", "ddpm", "ddpm_ancestral", 1),
    Arm("edm-chain2", "EDM chained", "edm", "euler", 2),
)
PARADIGM_PAIR = ("edm", "ddpm")  # Figure 3: equal terms, the paradigm alone differs
CHAIN_PAIR = ("edm", "edm-chain2")  # the released main branch's chained training, paradigm fixed
VARIED_KEYS = ("diffusion.paradigm", "diffusion.sampler", "diffusion.train_chain")


@dataclass(frozen=True)
class ProfileSettings:
    num_frames: int
    random_games: int  # full games of the random baseline in the dataset summary
    train_steps: int
    warmup_steps: int  # linear learning-rate warm-up (released code: 100), at most a tenth of a short run
    checkpoint_every: int
    horizon: int
    num_steps: tuple[int, ...]
    rollouts: int
    clips: int
    feature_networks: bool
    gpu_hours_per_model: float


PROFILE_SETTINGS: dict[str, ProfileSettings] = {
    "paper": ProfileSettings(num_frames=100_000, random_games=10, train_steps=120_000, warmup_steps=100,
                             checkpoint_every=2_000, horizon=1000, num_steps=(1, 2, 3, 5, 10), rollouts=16,
                             clips=256, feature_networks=True, gpu_hours_per_model=1.5),
    "small": ProfileSettings(num_frames=100_000, random_games=10, train_steps=5_000, warmup_steps=100,
                             checkpoint_every=1_000, horizon=1000, num_steps=(1, 2, 3, 5, 10), rollouts=8,
                             clips=64, feature_networks=True, gpu_hours_per_model=0.15),
    "cpu": ProfileSettings(num_frames=50_000, random_games=10, train_steps=CPU_UPDATES, warmup_steps=100,
                           checkpoint_every=200, horizon=120, num_steps=(1, 2, 3, 5, 10), rollouts=16,
                           clips=16, feature_networks=False, gpu_hours_per_model=0.0),
    "smoke": ProfileSettings(num_frames=2_000, random_games=2, train_steps=50, warmup_steps=5, checkpoint_every=25,
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
        raise ValueError(f"suite {NAME} sets {', '.join(VARIED_KEYS)} itself; drop the override(s) {clash}.")


def dataset_run_dir(opts: SuiteOptions) -> Path:
    return opts.suite_dir(NAME) / f"dataset-{GAME}"


def model_run_name(arm: Arm, seed: int) -> str:
    return f"wm-{arm.key}-{GAME}-s{seed}"


def model_overrides(opts: SuiteOptions, arm: Arm) -> list[str]:
    """The profile's warm-up, then the user's overrides, then the arm's (which no user override may touch)."""
    return [f"denoiser_optim.warmup_steps={settings_for(opts.profile).warmup_steps}", *opts.overrides,
            *arm.overrides()]


def stages(opts: SuiteOptions) -> list[list[RunSpec]]:
    """[dataset], then the arms × seeds on that dataset."""
    _check_options(opts)
    s = settings_for(opts.profile)
    data_dir = dataset_run_dir(opts)
    dataset = RunSpec(name=f"dataset-{GAME}", run_dir=data_dir, entry="ablations.static_data:run",
                      kwargs={"game": GAME, "num_frames": s.num_frames, "seed": 0, "random_games": s.random_games},
                      gpu_hours=0.0, group="dataset")
    protocol = {"horizon": s.horizon, "num_steps": list(s.num_steps), "rollouts": s.rollouts, "clips": s.clips,
                "feature_networks": s.feature_networks, "decision": decision_protocol(opts.profile)}
    models = [
        RunSpec(name=model_run_name(arm, seed), run_dir=opts.suite_dir(NAME) / model_run_name(arm, seed),
                entry="ablations.static_wm:run",
                kwargs={"dataset_dir": str(dataset_dir(data_dir)), "profile": opts.profile,
                        "overrides": model_overrides(opts, arm), "train_steps": s.train_steps,
                        "checkpoint_every": s.checkpoint_every, "test_every": s.checkpoint_every,
                        "protocol": protocol, "seed": seed},
                gpu_hours=s.gpu_hours_per_model, group=arm.key)
        for arm in ARMS for seed in range(opts.seeds or 1)
    ]
    return [[dataset], models]


def report(opts: SuiteOptions) -> tuple[Path, Path]:
    from reports.ddpm_vs_edm import ArmRuns, build_report  # the report stack loads only when needed

    (dataset,), models = stages(opts)
    labels = {arm.key: arm.label for arm in ARMS}
    arms = [ArmRuns(arm.label, tuple(m for m in models if m.group == arm.key)) for arm in ARMS]
    return build_report(opts.report_context(NAME), dataset, arms,
                        paradigm_pair=tuple(labels[k] for k in PARADIGM_PAIR),
                        chain_pair=tuple(labels[k] for k in CHAIN_PAIR))


SUITE = Suite(
    name=NAME,
    description="EDM vs DDPM world models (and EDM with chained training) on a static Breakout expert dataset: "
                "long open-loop rollouts per n",
    paper_artefact="§5.1, Figure 3",
    stages=stages,
    report=report,
    default_games=(GAME,),
    default_seeds=1,
)
