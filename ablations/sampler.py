"""Suite `ablation_sampler`: deterministic vs stochastic EDM samplers (App. A), at equal NFE and at equal steps.

Arms (the sampler is a sampling-time choice; training is unchanged): Euler n=3 (the paper's setting, NFE 3, the
reference), Heun n=2 (NFE 2n−1 = 3, equal NFE), Heun n=3 (NFE 5, equal steps), and the stochastic arm
Euler-ancestral n=10 (NFE 10). The stochastic arm must measure stochastic sampling, not step-size blow-up: with the
exact denoiser of Gaussian data on the paper's grid (evaluation/exact_denoiser.py, measured), literal Euler–Maruyama
at n = 3 returns 50-70x the data variance; Euler-ancestral stays below it at every n (0.18x at n = 3, where every
sampler on this grid is far from the data, 0.50x at n = 10, from either the unit initial noise or the exact
marginal); Karras churn (heun_churn) inherits Heun's overshoot at small n (10-20x at n = 3, 2.0-2.8x at n = 5).
So the arm is Euler-ancestral at the smallest round n that keeps the data variance within 3x.

Two measurements, in stages:
1. the agent: Algorithm 1 with each arm's sampler in imagination, on a subset of games where visual detail
   matters (§5.3 names Asterix, Breakout and Road Runner; §5.2 Boxing; Pong's ball is a few pixels), plus the
   scripted Breakout expert's static dataset;
2. a static world model trained on that dataset, and one dataset per game played by the reference arm's
   seed-0 agent (100k frames at paper scale, §5.3's "static datasets collected with expert policies");
3. world-model quality (Table 6 protocol, ablations.arms.evaluate_world_model): the static model on its held-out
   episodes and each reference agent's own D_θ on the data its policy collected, every arm's sampler on the same
   clips and noise.

Models (ablations/entrants.py): the stages run per world model, the config's (`diamond`) and each --models entrant,
on the arms whose sampler the model declares (`SamplingPlan`); a model without the reference arm's sampler is left
out whole, and the report lists every arm left out with its reason. Each model's arms are compared with its own
reference arm.

`SamplingSuite` is the shared grid of this suite and of `ablation_nfe` (the same stages, other arms).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ablations import atari100k
from ablations.arms import (
    SAMPLER_NAMES,
    SAMPLING_KEYS,
    ClipProtocol,
    SamplingArm,
    agent_run_name,
    agent_specs,
    check_evaluation,
    check_finished,
    reject_overrides,
)
from ablations.entrants import Entrant
from ablations.static_data import dataset_dir
from ablations.suite import Suite, SuiteOptions
from diamond.loop.config import build_config
from diamond.models.diffusion.paradigms import build_paradigm
from evaluation.atari import check_game
from slurm.launcher import RunSpec

NAME = "ablation_sampler"
EXPERT_GAME = "Breakout"
VISUAL_GAMES = ("Breakout", "Asterix", "RoadRunner", "Boxing", "Pong")
DEFAULT_SEEDS = 3
TEST_FRACTION = 0.1  # held-out tail of the expert dataset: static_wm trains without it, the evaluation uses it


@dataclass(frozen=True)
class WorldModelSchedule:
    """Sizes of the world-model part per profile, and the GPU-hours each of its runs is projected to take."""

    expert_frames: int  # scripted Breakout expert dataset (the §5.1 dataset)
    expert_random_games: int  # random-policy games of that dataset's summary
    agent_frames: int  # frames played by each reference agent into its game's dataset
    train_steps: int  # updates of the static world model
    checkpoint_every: int
    protocol: ClipProtocol
    hours_static_wm: float
    hours_collect: float
    hours_eval: float


# paper: 100k-frame datasets (§5.1, §5.3) and 120k updates (App. J.3), the Table 6 protocol's 1024 clips
# (App. J.3); small: minutes on one GPU; smoke: seconds on a CPU, no feature networks (they need downloads).
# GPU-hours are projections: 120k updates ≈ 1.5 h (as ablation_ddpm_vs_edm), collection at batch 1 ≈ 0.1 h,
# evaluation of 4-5 samplers on 1024 clips + 16 rollouts to t = 1000 + 100 Fréchet bootstrap replicates per
# sampler (a few seconds each for FID on 16k frames) ≈ 0.5 h.
SCHEDULES: dict[str, WorldModelSchedule] = {
    "paper": WorldModelSchedule(100_000, 10, 100_000, 120_000, 2_000, ClipProtocol(), 1.5, 0.1, 0.5),
    "small": WorldModelSchedule(100_000, 10, 20_000, 5_000, 1_000,
                                ClipProtocol(clips=256, rollouts=8), 0.15, 0.02, 0.1),
    "smoke": WorldModelSchedule(2_000, 1, 400, 50, 25,
                                ClipProtocol(clips=8, keep=2, rollouts=2, horizon=30, feature_networks=False,
                                             bootstrap_reps=50), 0.0, 0.0, 0.0),
}


@dataclass(frozen=True)
class SamplingPlan:
    """One world model's arms in a sampling suite: those whose sampler it declares, the reference among them."""

    entrant: Entrant
    arms: tuple[SamplingArm, ...]

    def key(self, arm: SamplingArm) -> str:
        """Run-name part and group: the arm's key for the suite's own model (its historical run names)."""
        return f"{self.entrant.key}-{arm.key}" if self.entrant.added else arm.key

    def label(self, arm: SamplingArm) -> str:
        return f"{self.entrant.label} {arm.label}" if self.entrant.added else arm.label

    def name(self, base: str) -> str:
        """A per-model run name: `base` for the suite's own model, `base` with the model's key for an added one."""
        head, _, tail = base.partition("-")
        return f"{head}-{self.entrant.key}-{tail}" if self.entrant.added else base


@dataclass(frozen=True)
class SamplingSuite:
    """A grid of EDM sampling arms: agents per (model, arm, game, seed), then world-model quality per model and arm."""

    name: str
    arms: tuple[SamplingArm, ...]
    reference: SamplingArm
    default_games: tuple[str, ...] = VISUAL_GAMES
    default_seeds: int = DEFAULT_SEEDS
    schedules: dict[str, WorldModelSchedule] = field(default_factory=lambda: SCHEDULES)

    def schedule(self, profile: str) -> WorldModelSchedule:
        if profile not in self.schedules:
            raise ValueError(f"suite {self.name} has no settings for profile {profile!r}; "
                             f"valid: {', '.join(self.schedules)}")
        return self.schedules[profile]

    def grid(self, opts: SuiteOptions) -> tuple[tuple[str, ...], int]:
        games = tuple(check_game(g) for g in (opts.games or self.default_games))
        seeds = self.default_seeds if opts.seeds is None else opts.seeds
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        return games, seeds

    def run_dir(self, opts: SuiteOptions, name: str) -> Path:
        return opts.suite_dir(self.name) / name

    def plan(self, opts: SuiteOptions) -> tuple[list[SamplingPlan], list[tuple[str, str]]]:
        """Each model (the suite's own, then --models) with the arms whose sampler it declares, and (label, reason)
        of each arm left out. A model that does not declare the reference arm's sampler is left out whole: every
        comparison of the suite is against that arm."""
        planned, skipped = [], []
        for entrant in opts.entrants():  # built once at the door: a broken model is refused before anything trains
            offered = entrant.declarations(opts.profile, opts.overrides).samplers
            arms = tuple(a for a in self.arms if a.sampler in offered)
            why = f"{entrant.label}: it declares the samplers {list(offered)}, not "
            if self.reference not in arms:
                skipped += [(f"{entrant.label} {a.label}", f"{why}{self.reference.sampler}, the reference arm's")
                            for a in self.arms]
                continue
            planned.append(SamplingPlan(entrant, arms))
            skipped += [(f"{entrant.label} {a.label}", f"{why}{a.sampler}") for a in self.arms if a not in arms]
        if not planned:
            raise ValueError(f"suite {self.name}: no model declares the reference arm's sampler "
                             f"{self.reference.sampler}: " + "; ".join(dict.fromkeys(why for _, why in skipped)))
        return planned, skipped

    def stages(self, opts: SuiteOptions) -> list[list[RunSpec]]:
        """[agents + expert dataset], [static world models + agent datasets], [world-model evaluations]."""
        reject_overrides(self.name, opts.overrides, (*SAMPLING_KEYS, "diffusion.paradigm"))
        games, seeds = self.grid(opts)
        s = self.schedule(opts.profile)
        hours = atari100k.gpu_hours(opts.profile, tuple(opts.overrides))
        planned, _ = self.plan(opts)
        agents = agent_specs(self.name, opts, [(p.key(a), a, p.entrant.overrides()) for p in planned for a in p.arms],
                             games, seeds, hours)
        expert_name = f"dataset-{EXPERT_GAME}-expert"
        expert = RunSpec(name=expert_name, run_dir=self.run_dir(opts, expert_name), entry="ablations.static_data:run",
                         kwargs={"game": EXPERT_GAME, "num_frames": s.expert_frames, "seed": 0,
                                 "random_games": s.expert_random_games}, gpu_hours=0.0, group="dataset")
        expert_data = str(dataset_dir(expert.run_dir))
        static_protocol = {"horizon": s.protocol.clip_len, "num_steps": [self.reference.num_steps], "rollouts": 2,
                           "clips": 2, "feature_networks": False}  # static_wm's own check; the evals below report
        protocol = s.protocol.to_dict()
        models, collects, evals = [], [], []
        for p in planned:
            overrides = [*opts.overrides, *p.entrant.overrides()]
            wm_name = p.name(f"wm-{EXPERT_GAME}-expert")
            static_wm = RunSpec(name=wm_name, run_dir=self.run_dir(opts, wm_name), entry="ablations.static_wm:run",
                                kwargs={"dataset_dir": expert_data, "profile": opts.profile, "overrides": overrides,
                                        "train_steps": s.train_steps, "checkpoint_every": s.checkpoint_every,
                                        "test_every": s.checkpoint_every, "protocol": static_protocol, "seed": 0,
                                        "test_fraction": TEST_FRACTION},
                                gpu_hours=s.hours_static_wm, group="world model")
            check_finished(static_wm, build_config(opts.profile, overrides, seed=0, **{"env.game": EXPERT_GAME}))
            models.append(static_wm)
            settings = [{**arm.setting(), "label": p.label(arm)} for arm in p.arms]
            evals.append(self._eval_spec(opts, p.name(f"eval-{EXPERT_GAME}-expert"), static_wm.run_dir, expert_data,
                                         settings, protocol, TEST_FRACTION, s.hours_eval))
            for game in games:
                agent_dir = self.run_dir(opts, agent_run_name(p.key(self.reference), game, 0))
                name = f"dataset-{game}-agent" + (f"-{p.entrant.key}" if p.entrant.added else "")
                collect = RunSpec(name=name, run_dir=self.run_dir(opts, name),
                                  entry="ablations.arms:collect_agent_dataset",
                                  kwargs={"agent_run_dir": str(agent_dir), "num_frames": s.agent_frames, "seed": 0},
                                  gpu_hours=s.hours_collect, group="dataset")
                collects.append(collect)
                evals.append(self._eval_spec(opts, p.name(f"eval-{game}-agent"), agent_dir,
                                             str(dataset_dir(collect.run_dir)), settings, protocol, None, s.hours_eval))
        for spec in evals:
            check_evaluation(spec)
        return [[*agents, expert], [*models, *collects], evals]

    def _eval_spec(self, opts: SuiteOptions, name: str, model_dir: Path, data: str, settings: list, protocol: dict,
                   test_fraction: float | None, hours: float) -> RunSpec:
        return RunSpec(name=name, run_dir=self.run_dir(opts, name), entry="ablations.arms:evaluate_world_model",
                       kwargs={"model_dir": str(model_dir), "dataset_dir": data, "settings": settings,
                               "protocol": protocol, "test_fraction": test_fraction},
                       gpu_hours=hours, group="world-model eval")

    def report(self, opts: SuiteOptions, title: str, focus: str) -> tuple[Path, Path]:
        """The suite's report: its stages, each model's arms and reference, and the runs' EDM (for the
        exact-denoiser section) handed in."""
        from reports.sampling import SamplingGrid, build_sampling_report  # the report stack loads only when needed

        games, seeds = self.grid(opts)
        planned, skipped = self.plan(opts)
        edm = build_config(opts.profile, list(opts.overrides)).diffusion.edm
        grid = SamplingGrid(stages=self.stages(opts), labels={p.key(a): p.label(a) for p in planned for a in p.arms},
                            references={p.key(a): p.key(self.reference) for p in planned for a in p.arms},
                            reference=self.reference.key, games=games, seeds=seeds, default_games=self.default_games,
                            default_seeds=self.default_seeds, paradigm=build_paradigm("edm", **asdict(edm)),
                            suite_arms={a.key: (a.label, a.sampler, a.num_steps) for a in self.arms},
                            sampler_labels=dict(SAMPLER_NAMES), skipped=tuple(skipped),
                            models={p.name(f"eval-{g}-{source}"): p.entrant.label for p in planned
                                    for g, source in ((EXPERT_GAME, "expert"), *((g, "agent") for g in games))})
        return build_sampling_report(opts.report_context(self.name), grid, title=title, focus=focus)


STOCHASTIC_ARM = SamplingArm("euler_ancestral", 10)
ARMS = (SamplingArm("euler", 3), SamplingArm("heun", 2), STOCHASTIC_ARM, SamplingArm("heun", 3))
GRID = SamplingSuite(NAME, ARMS, reference=ARMS[0])


def report(opts: SuiteOptions) -> tuple[Path, Path]:
    return GRID.report(opts, title="Ablation: EDM samplers (Euler, Heun, Euler-ancestral)", focus="sampler")


SUITE = Suite(
    name=NAME,
    description=("EDM samplers in the agent and the world model: Euler n=3 (reference), Heun n=2 (equal NFE 3), "
                 "Heun n=3 (equal steps, NFE 5), stochastic Euler-ancestral n=10 (NFE 10; literal Euler–Maruyama "
                 "blows up at small n on the paper grid); agents on visually detailed games, "
                 "world-model quality (Table 6 protocol) on the Breakout expert's and each reference agent's data. "
                 f"GPU-hours per agent run: the atari100k figure ({atari100k.PAPER_GPU_HOURS:.1f} at paper scale, "
                 "projected for n=3; larger NFE costs more imagination time)."),
    paper_artefact="App. A (samplers); paper default Euler n=3 (§5.2)",
    stages=GRID.stages,
    report=report,
    default_games=VISUAL_GAMES,
    default_seeds=DEFAULT_SEEDS,
)
