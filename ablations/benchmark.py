"""Suite `benchmark` (issue 29 item 3): one leaderboard of world models on every world-model metric of the suites.

Entrants: the config's model (`diamond`, DIAMOND's EDM with the Figure 3 EDM arm's settings) and each `--models`
one (`--only-models`: those alone), each trained on the same static data with the same schedule, then measured:
- pixels: open-loop error against the real continuation at t = PIXEL_STEP, and FID/FVD where the profile computes
  them (ablations/static_wm.py, on the Figure 3 suite's Breakout expert dataset and schedule);
- objects: persistence and paddle, ball and brick-count errors read from the frames (ablations/static_objects.py);
- decisions: action following, counterfactual gain over copying, policy ranking (ablations/static_decision.py, with
  judges trained once on the dataset);
- memory: the information kept about a cue hidden MEMORY_K frames, on the delayed-cue game with the model's own
  training run there (ablations/memory.py's run, the paper's L = 4 window).
Each trained model is measured at every n of the profile (cpu: n = 1 and n = 3), one leaderboard row per (model,
seed, n); the memory probe runs at the n it trains with (1). Ceiling and floor rows of every metric stand beside
them; reports/benchmark.py ranks each metric with its CIs and says where neighbours are not told apart.

Profiles `cpu` and `smoke` (the memory suite's schedules exist for these only). Projected for
`python run_suite.py --suite benchmark --profile cpu --models recurrent,shift=tests._shift_wm:build --max-parallel 2`
from the committed cpu runs of this 2-core machine (docs/results/ablation_ddpm_vs_edm-cpu: 26-30 min per 2,400
U-Net updates, 15-32 min of rollouts and clips, ~10 CPU-min of decision metrics per model; ablations/memory.py:
0.30-0.32 s per memory update): per U-Net model (diamond, recurrent) ~28 min training + ~20 min rollouts to
t = 1000 at n = 1 and 3 + ~10 min decision + ~10 min object metrics + ~12 min memory training and probe, about
80 CPU-minutes; the shift model ~10 (it trains in seconds; its measurements still run the emulator's reference
rows); datasets and judges ~3: about 3 CPU-hours, some 1 h 45 min of wall time with two runs at once.
"""

from __future__ import annotations

from pathlib import Path

from ablations import ddpm_vs_edm, memory
from ablations.entrants import Entrant
from ablations.static_data import dataset_dir
from ablations.suite import Suite, SuiteOptions
from slurm.launcher import RunSpec

NAME = "benchmark"
GAME = ddpm_vs_edm.GAME
PIXEL_STEP = 10  # open-loop step of the pixel error: long enough to compound, short enough for chaos not to rule
MEMORY_K = 8  # hidden frames of the memory metric: past the paper's L = 4 window, within the probe's 16


def _check(opts: SuiteOptions) -> None:
    if opts.games is not None and tuple(opts.games) != (GAME,):
        raise ValueError(f"suite {NAME} runs on {GAME} (the scripted expert's data) and the delayed-cue game; got "
                         f"{list(opts.games)}.")
    memory.schedule(opts.profile)  # the profiles with a memory schedule: cpu, smoke
    memory.arms(opts)  # its refusals of world_model.factory / .options in --set apply here too


def _model_overrides(opts: SuiteOptions, entrant: Entrant) -> list[str]:
    """Figure 3's EDM arm for every model (a plug-in ignores the diffusion keys it does not read), then the model."""
    return ddpm_vs_edm.model_overrides(opts, ddpm_vs_edm.ARMS[0], entrant)


def stages(opts: SuiteOptions) -> list[list[RunSpec]]:
    """[the two datasets], [each model on each, the decision judges], [decision and object metrics per model]."""
    _check(opts)
    root, s, ms = opts.suite_dir(NAME), ddpm_vs_edm.settings_for(opts.profile), memory.schedule(opts.profile)
    breakout = RunSpec(name=f"dataset-{GAME}", run_dir=root / f"dataset-{GAME}", entry="ablations.static_data:run",
                       kwargs={"game": GAME, "num_frames": s.num_frames, "seed": 0, "random_games": s.random_games},
                       gpu_hours=0.0, group="dataset")
    cue = RunSpec(name=f"dataset-{memory.GAME}", run_dir=root / f"dataset-{memory.GAME}",
                  entry="ablations.memory:build_dataset", kwargs={"num_frames": ms.num_frames, "seed": 0},
                  gpu_hours=0.0, group="dataset")
    trained, measured = [], []
    ns = list(s.long_steps or s.num_steps)  # the n the decision and object metrics use, rolled out to the horizon
    protocol = {**ddpm_vs_edm.protocol_for(opts.profile), "num_steps": ns, "long_steps": None, "short_horizon": None}
    judges = ddpm_vs_edm.judges_spec(opts, breakout.run_dir)
    judges = RunSpec(name=judges.name, run_dir=root / judges.name, entry=judges.entry, kwargs=judges.kwargs,
                     gpu_hours=judges.gpu_hours, group="judges")
    for entrant in opts.entrants():
        entrant.declarations(opts.profile, tuple(_model_overrides(opts, entrant)))  # refused now, not after training
        for seed in range(opts.seeds or SUITE.default_seeds):
            name = f"{entrant.key}-s{seed}"
            model = RunSpec(name=f"wm-{name}", run_dir=root / f"wm-{name}", entry="ablations.static_wm:run",
                            kwargs={"dataset_dir": str(dataset_dir(breakout.run_dir)), "profile": opts.profile,
                                    "overrides": _model_overrides(opts, entrant), "train_steps": s.train_steps,
                                    "checkpoint_every": s.checkpoint_every, "test_every": s.checkpoint_every,
                                    "protocol": protocol, "seed": seed},
                            gpu_hours=s.gpu_hours_per_model, group=entrant.label)
            mem = RunSpec(name=f"memory-{name}", run_dir=root / f"memory-{name}", entry="ablations.memory:run",
                          kwargs={"dataset_dir": str(dataset_dir(cue.run_dir)), "profile": opts.profile,
                                  "overrides": [*opts.overrides, *memory.FIXED, *memory.ADDED, *entrant.overrides()],
                                  "train_steps": ms.train_steps, "checkpoint_every": ms.checkpoint_every,
                                  "probe_starts": ms.probe_starts, "protocol": ms.protocol, "seed": seed},
                          gpu_hours=0.0, group=entrant.label)
            trained += [model, mem]
            measured += [_measure(ddpm_vs_edm.decision_spec(opts, model, judges), root),
                         _measure(ddpm_vs_edm.objects_spec(opts, model), root)]
    return [[breakout, cue], [*trained, judges], measured]


def _measure(spec: RunSpec, root: Path) -> RunSpec:
    """A Figure 3 measurement spec moved into this suite's folder."""
    return RunSpec(name=spec.name, run_dir=root / spec.name, entry=spec.entry, kwargs=spec.kwargs,
                   gpu_hours=spec.gpu_hours, group=spec.group)


def report(opts: SuiteOptions) -> tuple[Path, Path]:
    from reports.benchmark import Entry, build_benchmark_report  # the report stack loads only when needed

    _, trained, measured = stages(opts)
    by_name = {s.name: s for s in [*trained, *measured]}
    entries = [Entry(m.group, m.kwargs["seed"], m, by_name[f"memory-{m.name[3:]}"], by_name[f"decision-{m.name[3:]}"],
                     by_name[f"objects-{m.name[3:]}"]) for m in trained if m.entry == "ablations.static_wm:run"]
    return build_benchmark_report(opts.report_context(NAME), entries, PIXEL_STEP, MEMORY_K)


SUITE = Suite(
    name=NAME,
    description="One leaderboard of world models (the config's and --models) trained on the same static data: pixel "
                "error (and FID/FVD where computed), object, decision and memory metrics, each ranked with 95 % CIs "
                "beside its ceiling and floors",
    paper_artefact="beyond the paper (issue 29 item 3)",
    stages=stages,
    report=report,
    default_games=(GAME,),
    default_seeds=1,
)
