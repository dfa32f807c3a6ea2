"""Suite `ablation_ddpm_vs_edm` (paper §5.1, Figure 3): EDM vs DDPM world models, same network, same static data.

Stage 1 collects the static Breakout expert dataset; stage 2 trains one world model per arm (× seed) on it
with the same network and number of updates, then rolls every model out from the same real contexts for
each number of denoising steps n.

Arms (`ARMS`). The Figure 3 pair, EDM and DDPM, differ in the paradigm only (a test compares their resolved
configs): both make one prediction per training segment, Algorithm 1 as printed (the released `ddpm`
branch does the same), and both train WITHOUT offset noise (`diffusion.edm.sigma_offset_noise` = 0, DDPM's
`diffusion.ddpm.offset_noise` = 0): the authors state that the paper's EDM vs DDPM comparison was run with
zero offset noise (eloialonso/diamond issue #36), while the released agent uses 0.3 (the `paper` profile's
default for the agent, docs/fidelity.md). The suite sets both keys itself (no --set may change them); the
released 0.3 is the arm "EDM offset 0.3", everything else equal to EDM, so its effect is measured. A fourth
arm, EDM with two chained predictions per segment (the released `main` branch: the second prediction is
conditioned on the first one's denoised estimate), separates the effect of the paradigm from the effect of
chained training. Samplers: EDM uses Euler (the paper's sampler); DDPM uses ancestral sampling, because the
released `ddpm` branch steps diffusers' DDPMScheduler, the ancestral posterior step, which clips the x0
estimate to [-1, 1] at each step; the final frame is quantised to 8 bits (diamond/models/diffusion/paradigms.py,
`DDPMConfig.quantize_each_step` = False).

Models (ablations/entrants.py): the arms run on the config's world model (`diamond`) and on each --models entrant
(--only-models: those alone); every arm is labelled by its model ("diamond EDM", "mine"). An arm runs on a model
only if it applies (`Arm.refusal`, from what the model declares: the DDPM paradigm and its sampler, offset noise,
chained training); the report lists the arms left out with the reason. The noise-level runs of stage 3 measure
models that declare the arm's paradigm only. The suite's own model keeps its run names (wm-<arm>-...), an added
model's carry its label (wm-<label>-<arm>-...).

Seeds: --seeds N (default 2) training seeds for the paradigm pair; the other arms train the profile's
`extra_seeds` of them (None: N). The report's tests use the spread between seeds (reports/ddpm_vs_edm_text.py).

Every model is also measured for the report's explanation of the EDM n >= 2 drift: the held-out denoising
error at each noise level its sampler visits (evaluation/sigma_curve.py) and rollouts of the same weights with
one sampler setting changed (`SAMPLER_VARIANTS`; EDM only): stage 3, ablations/static_cause.py, which reads
each trained model and never retrains one.

Schedule choices, per profile (`PROFILE_SETTINGS`):
- paper: 100k frames (§5.1). The paper does not give the number of updates for this study; we use
  120k updates, the schedule of its other static-dataset world models (App. J.3), at the Atari
  batch size of Table 3 (32). Rollouts to t = 1000 for n ∈ {1, 2, 3, 5, 10} (Figure 3). All four arms.
- small: the same 100k-frame dataset (collection takes minutes on a CPU; the data then match the
  paper's), 5k updates (minutes on one GPU), the full rollout protocol.
- cpu: the whole suite on a 2-core CPU in about 2 hours (profile `cpu` of diamond/loop/profiles.py: a
  0.49 M-parameter U-Net [16, 16, 32, 32], one block per level, no bottleneck attention, batch 16, lr 1e-3).
  Arms EDM, DDPM and EDM offset 0.3, two seeds each (six models; the chained arm's cpu result at the
  released offset is kept in docs/results/ablation_ddpm_vs_edm-cpu/README.md). Measured here: 2.3 updates/s
  for one run alone on one thread, ~1.5/s each with four at once on the two cores; a batch-16 denoiser call
  takes 0.11 s alone. CPU_UPDATES updates (the test loss still falls, noisily, at 2.4k), then rollouts of 16
  starts to t = 1000 for n ∈ {1, 3} (4,000 calls) and to t = 120 for n ∈ {2, 5, 10} (2,040 calls), 16 clips
  per n; beside them one judges run trains R_ψ (1,000 updates) and the inverse-dynamics model once for all
  models. Stage 3 then rolls the four sampler variants to t = 120 (2,280 calls per EDM model) and scores the
  decision metrics of every model at n ∈ {1, 3} (16 probes, 150-step policy rollouts) with the shared judges, and
  its object metrics (ablations/static_objects.py: 16 probes to t = 1000 at n ∈ {1, 3}).
  No FID/FVD/LPIPS: an Inception call costs ~0.5 s per frame on this CPU (measured), ~40 minutes per model
  for 32 clips × 5 n, and FID from a few hundred frames is strongly biased anyway; the drift measures
  (evaluation/drift.py) stand in for it. The dataset is 50k frames (~50 s to collect), enough for 15 full
  expert games, so the expert's return is measured.
- smoke: ~2k frames, 50 updates, rollouts to t = 30 for n = 1 and t = 10 for n = 3, on a CPU in minutes.
GPU-hours are projections (collection and the cpu profile run on a CPU: 0): the paper run ≈ 120k updates
× ~40 ms plus ~10 minutes of rollouts and clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ablations.entrants import Entrant
from ablations.static_data import dataset_dir
from ablations.static_decision import decision_protocol
from ablations.static_objects import object_protocol
from ablations.suite import Suite, SuiteOptions
from diamond.models.registry import Declarations
from slurm.launcher import RunSpec

NAME = "ablation_ddpm_vs_edm"
GAME = "Breakout"
CPU_UPDATES = 2_400


@dataclass(frozen=True)
class Arm:
    """One variant of a world model in the study: a paradigm, its own sampler, the chained predictions per segment
    and the offset noise of training (EDM: `sigma_offset_noise`, DDPM: `offset_noise`, the same per-channel
    constant). The arm decides, from what a model declares, whether it applies to that model."""

    key: str  # run-name part
    paradigm: str
    sampler: str  # the paradigm's sampler, never a user override
    train_chain: int
    offset_noise: float
    detail: str = ""  # what the label adds after the model and its paradigm
    needs_paradigm: bool = False  # only for a model that declares `paradigm` (the base arm runs any model as it is)

    def overrides(self) -> list[str]:
        return [f"diffusion.paradigm={self.paradigm}", f"diffusion.sampler={self.sampler}",
                f"diffusion.train_chain={self.train_chain}", f"diffusion.edm.sigma_offset_noise={self.offset_noise}",
                f"diffusion.ddpm.offset_noise={self.offset_noise}"]

    @property
    def label(self) -> str:
        """The arm alone, as the module docstring names it (EDM, DDPM, EDM offset 0.3, EDM chained)."""
        return f"{PARADIGM_LABELS[self.paradigm]} {self.detail}".strip()

    def label_for(self, model: str, declared: Declarations) -> str:
        """The arm as the report shows it for one model: the model's name, its paradigm where it has one."""
        paradigm = PARADIGM_LABELS[self.paradigm] if self.paradigm in declared.paradigms else ""
        return " ".join(p for p in (model, paradigm, self.detail) if p)

    def refusal(self, declared: Declarations) -> str | None:
        """Why this arm cannot apply to a model with these declarations (None: it applies)."""
        if self.needs_paradigm and self.paradigm not in declared.paradigms:
            return (f"it declares the paradigms {list(declared.paradigms)}, not {self.paradigm}" if declared.paradigms
                    else "it declares no diffusion paradigms (`paradigms`)")
        if self.paradigm in declared.paradigms and self.sampler not in declared.samplers:
            return f"under {self.paradigm} it declares the samplers {list(declared.samplers)}, not {self.sampler}"
        if self.offset_noise and not declared.offset_noise:
            return "it declares no offset noise (`offset_noise` is False): the arm would repeat its first arm"
        if self.train_chain > 1 and not declared.chained_training:
            return "it declares no chained training (`chained_training` is False): the arm would repeat its first arm"
        return None


PARADIGM_LABELS = {"edm": "EDM", "ddpm": "DDPM"}
PAPER_OFFSET = 0.0  # the authors: Figure 3 was run without offset noise (eloialonso/diamond issue #36)
RELEASED_OFFSET = 0.3  # the released agent's sigma_offset_noise (docs/fidelity.md)
ARMS: tuple[Arm, ...] = (
    Arm("edm", "edm", "euler", 1, PAPER_OFFSET),
    Arm("ddpm", "ddpm", "ddpm_ancestral", 1, PAPER_OFFSET, needs_paradigm=True),
    Arm("edm-offset", "edm", "euler", 1, RELEASED_OFFSET, detail=f"offset {RELEASED_OFFSET}"),
    Arm("edm-chain2", "edm", "euler", 2, PAPER_OFFSET, detail="chained"),
)
ARM_BY_KEY = {arm.key: arm for arm in ARMS}
PARADIGM_PAIR = ("edm", "ddpm")  # Figure 3: equal terms, the paradigm alone differs
OFFSET_PAIR = ("edm", "edm-offset")  # the released agent's offset noise, everything else equal
CHAIN_PAIR = ("edm", "edm-chain2")  # the released main branch's chained training, paradigm fixed
VARIED_KEYS = ("diffusion.paradigm", "diffusion.sampler", "diffusion.train_chain", "diffusion.edm.sigma_offset_noise",
               "diffusion.ddpm.offset_noise")
# Rollouts of the same EDM weights with one sampler setting changed (ablations/static_cause.py), for the report's
# explanation of the EDM n >= 2 drift: the last noise level raised (Euler's last step returns D(x; sigma_min)), and
# the paper's starting noise N(0, sigma_max^2) instead of the released unit-variance noise (docs/fidelity.md), with
# which the intermediate states of a multi-step sampler hold less noise than the level D is told.
SAMPLER_VARIANTS = (
    *({"label": f"n=3, σ_min={s:g}", "num_steps": 3, "paradigm": {"sigma_min": s}} for s in (0.05, 0.3)),
    *({"label": f"n={n}, start N(0, σ_max²)", "num_steps": n, "paradigm": {"init_noise_scale": 5.0}} for n in (3, 10)),
)


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
    arms: tuple[str, ...] = tuple(ARM_BY_KEY)
    extra_seeds: int | None = None  # seeds of the arms outside the paradigm pair; None: as many as the pair
    long_steps: tuple[int, ...] | None = None  # n rolled out to `horizon`; None: every n
    short_horizon: int | None = None  # horizon of the other n and of the sampler variants
    variants: tuple[dict, ...] = SAMPLER_VARIANTS

    def __post_init__(self) -> None:
        unknown = sorted(set(self.arms) - set(ARM_BY_KEY))
        if unknown or not set(PARADIGM_PAIR) <= set(self.arms):
            raise ValueError(f"profile arms {list(self.arms)} must hold {list(PARADIGM_PAIR)} and only arms of "
                             f"{list(ARM_BY_KEY)}.")


PROFILE_SETTINGS: dict[str, ProfileSettings] = {
    "paper": ProfileSettings(num_frames=100_000, random_games=10, train_steps=120_000, warmup_steps=100,
                             checkpoint_every=2_000, horizon=1000, num_steps=(1, 2, 3, 5, 10), rollouts=16,
                             clips=256, feature_networks=True, gpu_hours_per_model=1.5),
    "small": ProfileSettings(num_frames=100_000, random_games=10, train_steps=5_000, warmup_steps=100,
                             checkpoint_every=1_000, horizon=1000, num_steps=(1, 2, 3, 5, 10), rollouts=8,
                             clips=64, feature_networks=True, gpu_hours_per_model=0.15),
    "cpu": ProfileSettings(num_frames=50_000, random_games=10, train_steps=CPU_UPDATES, warmup_steps=100,
                           checkpoint_every=200, horizon=1000, num_steps=(1, 2, 3, 5, 10), rollouts=16,
                           clips=16, feature_networks=False, gpu_hours_per_model=0.0,
                           arms=("edm", "ddpm", "edm-offset"), long_steps=(1, 3), short_horizon=120),
    "smoke": ProfileSettings(num_frames=2_000, random_games=2, train_steps=50, warmup_steps=5, checkpoint_every=25,
                             horizon=30, num_steps=(1, 3), rollouts=4, clips=4,
                             feature_networks=False, gpu_hours_per_model=0.0, extra_seeds=1, long_steps=(1,),
                             short_horizon=10),
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


@dataclass(frozen=True)
class Planned:
    """One (model, arm) pair the study trains: the label the report shows and what the model declares."""

    entrant: Entrant
    arm: Arm
    declared: Declarations

    @property
    def label(self) -> str:
        return self.arm.label_for(self.entrant.label, self.declared)

    @property
    def key(self) -> str:
        """Run-name part and group: the arm's key for the suite's own model (its historical run names)."""
        return f"{self.entrant.key}-{self.arm.key}" if self.entrant.added else self.arm.key

    @property
    def measures_cause(self) -> bool:
        """The noise-level measurement (stage 3's cause runs) reads the model's diffusion paradigm."""
        return self.arm.paradigm in self.declared.paradigms


def model_run_name(planned: Planned, seed: int) -> str:
    return f"wm-{planned.key}-{GAME}-s{seed}"


def model_overrides(opts: SuiteOptions, arm: Arm, entrant: Entrant) -> list[str]:
    """The profile's warm-up, then the user's overrides, then the arm's (which no user override may touch), then
    the model's factory and options when --models added it."""
    return [f"denoiser_optim.warmup_steps={settings_for(opts.profile).warmup_steps}", *opts.overrides,
            *arm.overrides(), *entrant.overrides()]


def arms_for(profile: str) -> list[Arm]:
    return [ARM_BY_KEY[k] for k in settings_for(profile).arms]


def plan(opts: SuiteOptions) -> tuple[list[Planned], list[tuple[str, str]]]:
    """Every (model, arm) that applies, models in entrant order, and (label, reason) of each arm left out."""
    planned, skipped = [], []
    for entrant in opts.entrants():
        for arm in arms_for(opts.profile):  # each arm's model built once at the door: a refusal comes before training
            declared = entrant.declarations(opts.profile, tuple(model_overrides(opts, arm, entrant)))
            why = arm.refusal(declared)
            if why is None:
                planned.append(Planned(entrant, arm, declared))
            else:
                skipped.append((f"{entrant.label} {arm.label}", f"{entrant.label}: {why}"))
    return planned, skipped


def seeds_of(arm: Arm, opts: SuiteOptions) -> range:
    """The paradigm pair trains --seeds seeds (default 2); the other arms the profile's `extra_seeds` of them."""
    s, seeds = settings_for(opts.profile), opts.seeds or SUITE.default_seeds
    return range(seeds if arm.key in PARADIGM_PAIR or s.extra_seeds is None else min(seeds, s.extra_seeds))


def protocol_for(profile: str) -> dict:
    """The evaluation protocol of every model (ablations/static_wm.ProtocolSettings fields)."""
    s = settings_for(profile)
    return {"horizon": s.horizon, "num_steps": list(s.num_steps), "rollouts": s.rollouts, "clips": s.clips,
            "feature_networks": s.feature_networks,
            "long_steps": None if s.long_steps is None else list(s.long_steps), "short_horizon": s.short_horizon}


def stages(opts: SuiteOptions) -> list[list[RunSpec]]:
    """[dataset], then the arms × seeds on that dataset and the decision judges, then the noise-level and decision
    measurements of each trained model."""
    _check_options(opts)
    s = settings_for(opts.profile)
    data_dir = dataset_run_dir(opts)
    dataset = RunSpec(name=f"dataset-{GAME}", run_dir=data_dir, entry="ablations.static_data:run",
                      kwargs={"game": GAME, "num_frames": s.num_frames, "seed": 0, "random_games": s.random_games},
                      gpu_hours=0.0, group="dataset")
    protocol = protocol_for(opts.profile)
    planned, _ = plan(opts)
    models = [
        RunSpec(name=model_run_name(p, seed), run_dir=opts.suite_dir(NAME) / model_run_name(p, seed),
                entry="ablations.static_wm:run",
                kwargs={"dataset_dir": str(dataset_dir(data_dir)), "profile": opts.profile,
                        "overrides": model_overrides(opts, p.arm, p.entrant), "train_steps": s.train_steps,
                        "checkpoint_every": s.checkpoint_every, "test_every": s.checkpoint_every,
                        "protocol": protocol, "seed": seed},
                gpu_hours=s.gpu_hours_per_model, group=p.key)
        for p in planned for seed in seeds_of(p.arm, opts)
    ]
    diffusion = {p.key for p in planned if p.measures_cause}
    causes = [
        RunSpec(name=cause_run_name(m), run_dir=opts.suite_dir(NAME) / cause_run_name(m),
                entry="ablations.static_cause:run",
                kwargs={"model_dir": str(m.run_dir), "dataset_dir": m.kwargs["dataset_dir"], "profile": opts.profile,
                        "overrides": m.kwargs["overrides"], "seed": m.kwargs["seed"], "num_steps": list(s.num_steps),
                        "variants": [dict(v) for v in s.variants], "horizon": s.horizon,
                        "short_horizon": s.short_horizon or s.horizon, "rollouts": s.rollouts},
                gpu_hours=0.05 * (s.gpu_hours_per_model > 0), group=m.group)
        for m in models if m.group in diffusion
    ]
    judges = judges_spec(opts, data_dir)
    decisions = [decision_spec(opts, m, judges) for m in models]
    objects = [objects_spec(opts, m) for m in models]
    return [[dataset], [*models, judges], [*causes, *decisions, *objects]]


def cause_run_name(model: RunSpec) -> str:
    return "cause-" + model.name.removeprefix("wm-")


def judges_spec(opts: SuiteOptions, data_dir: Path) -> RunSpec:
    """R_ψ and the inverse-dynamics model of the decision metrics, trained once on the dataset for every model."""
    return RunSpec(name=f"judges-{GAME}", run_dir=opts.suite_dir(NAME) / f"judges-{GAME}",
                   entry="ablations.static_judges:run",
                   kwargs={"dataset_dir": str(dataset_dir(data_dir)), "profile": opts.profile,
                           "overrides": list(opts.overrides), "decision": decision_protocol(opts.profile)},
                   gpu_hours=0.05 * (settings_for(opts.profile).gpu_hours_per_model > 0), group="judges")


def decision_spec(opts: SuiteOptions, model: RunSpec, judges: RunSpec) -> RunSpec:
    """The decision metrics of one trained model at the n rolled out to the full horizon (every n if all are)."""
    s = settings_for(opts.profile)
    name = "decision-" + model.name.removeprefix("wm-")
    return RunSpec(name=name, run_dir=opts.suite_dir(NAME) / name, entry="ablations.static_decision:run",
                   kwargs={"model_dir": str(model.run_dir), "judges_dir": str(judges.run_dir), "profile": opts.profile,
                           "overrides": model.kwargs["overrides"], "seed": model.kwargs["seed"],
                           "num_steps": list(s.long_steps or s.num_steps), "decision": judges.kwargs["decision"]},
                   gpu_hours=0.05 * (s.gpu_hours_per_model > 0), group=model.group)


def objects_spec(opts: SuiteOptions, model: RunSpec) -> RunSpec:
    """The object metrics of one trained model at the n rolled out to the full horizon (every n if all are)."""
    s = settings_for(opts.profile)
    name = "objects-" + model.name.removeprefix("wm-")
    return RunSpec(name=name, run_dir=opts.suite_dir(NAME) / name, entry="ablations.static_objects:run",
                   kwargs={"model_dir": str(model.run_dir), "profile": opts.profile,
                           "overrides": model.kwargs["overrides"], "seed": model.kwargs["seed"],
                           "num_steps": list(s.long_steps or s.num_steps), "objects": object_protocol(opts.profile)},
                   gpu_hours=0.05 * (s.gpu_hours_per_model > 0), group=model.group)


def report(opts: SuiteOptions) -> tuple[Path, Path]:
    from reports.ddpm_vs_edm import ArmRuns, build_report  # the report stack loads only when needed

    (dataset,), trained, measured = stages(opts)
    planned, skipped = plan(opts)
    models = [r for r in trained if r.entry == "ablations.static_wm:run"]
    judges = next(r for r in trained if r.entry == "ablations.static_judges:run")
    of_model = {(r.entry, r.kwargs["model_dir"]): r for r in measured}

    def each(entry: str, p: Planned) -> tuple[RunSpec, ...]:
        return tuple(of_model[(entry, str(m.run_dir))] for m in models
                     if m.group == p.key and (entry, str(m.run_dir)) in of_model)

    runs = [ArmRuns(p.label, tuple(m for m in models if m.group == p.key),
                    causes=each("ablations.static_cause:run", p), decisions=each("ablations.static_decision:run", p),
                    objects=each("ablations.static_objects:run", p), reads=p.declared.config_fields)
            for p in planned]

    def pair(keys: tuple[str, str]) -> tuple[str, str] | None:
        """The first model's pair of arms that both apply to it (the comparisons the summary tests)."""
        for entrant in dict.fromkeys(p.entrant for p in planned):
            labels = {p.arm.key: p.label for p in planned if p.entrant == entrant}
            if set(keys) <= set(labels):
                return labels[keys[0]], labels[keys[1]]
        return None

    return build_report(opts.report_context(NAME), dataset, judges, runs, paradigm_pair=pair(PARADIGM_PAIR),
                        chain_pair=pair(CHAIN_PAIR), offset_pair=pair(OFFSET_PAIR), skipped=skipped)


SUITE = Suite(
    name=NAME,
    description="EDM vs DDPM world models (zero offset noise, as the paper ran them; EDM with the released 0.3 and "
                "with chained training beside them) on a static Breakout expert dataset: long open-loop rollouts per n",
    paper_artefact="§5.1, Figure 3",
    stages=stages,
    report=report,
    default_games=(GAME,),
    default_seeds=2,
)
