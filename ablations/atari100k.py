"""The Atari 100k benchmark (Table 1, Figure 2): DIAMOND with its default settings, 26 games × 5 seeds.

One stage, one run per (game, seed) and world model, each `diamond.train:run` in
runs/atari100k/<profile>/<game>-s<seed>[-<model>]/; with --controls also its reward-blind twin in
<game>-s<seed>[-<model>]-reward-blind/ (imagined rewards shuffled), a control that every game counted as learnt must
clear, beside the screen-blind policies each run measures (diamond/loop/controls.py). World models: the config's
(`diamond` unless --set world_model.factory changes it), then each --models entrant (its label in its run names),
one report column each; --only-models runs the entrants alone.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ablations.entrants import Entrant
from ablations.suite import Suite, SuiteOptions
from diamond.loop.config import PROFILES, Config, build_config, config_hash, to_dict
from diamond.loop.trainer import run_epochs
from diamond.run.io import CorruptFileError, read_json
from diamond.run.rundir import check_identity
from evaluation.atari import GAMES, check_game
from slurm.launcher import RunSpec

NAME = "atari100k"
ENTRY = "diamond.train:run"
DEFAULT_SEEDS = 5  # "We trained DIAMOND from scratch for 5 random seeds on each game" (§4)
PAPER_GPU_HOURS = 2.9 * 24  # the paper's figure: "approximately 2.9 days on a single Nvidia RTX 4090" (§4)
SMOKE_HOURS = 4 / 60  # our measurement: 3-4.5 min per smoke run on a shared 2-core CPU (perf.device=cpu)
COST_NOTE = (f"GPU-hours per run: paper = {PAPER_GPU_HOURS:.1f}, the paper's 2.9 days on one RTX 4090; small = our "
             f"estimate, {PAPER_GPU_HOURS:.1f} scaled by the profile's number of gradient steps; smoke = our measured "
             f"CPU wall time ({SMOKE_HOURS * 60:.0f} min on a shared 2-core CPU; it uses no GPU).")


def gradient_steps(cfg: Config) -> int:
    """Denoiser + reward/end + actor-critic updates of a whole run (Algorithm 1, first epoch apart)."""
    t = cfg.training
    first = t.first_epoch_denoiser_steps + t.first_epoch_reward_end_steps + t.first_epoch_actor_critic_steps
    return first + (run_epochs(t) - 1) * (t.denoiser_steps + t.reward_end_steps + t.actor_critic_steps)


@lru_cache(maxsize=None)
def gpu_hours(profile: str, overrides: tuple[str, ...] = ()) -> float:
    """Projected GPU-hours of one run at `profile` (see COST_NOTE for where each number comes from), scaled by the
    gradient steps that `overrides` (--set) give the run against the profile's own: 4x the updates, 4x the hours."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    own = gradient_steps(build_config(profile))
    scale = gradient_steps(build_config(profile, list(overrides))) / own
    if profile == "paper":
        return PAPER_GPU_HOURS * scale
    if profile == "smoke":
        return SMOKE_HOURS * scale
    return PAPER_GPU_HOURS * own / gradient_steps(build_config("paper")) * scale


REWARD_BLIND = "reward-blind"  # the twin trained with its imagined rewards shuffled (diamond/loop/controls.py)
ARMS: dict[str, tuple[str, ...]] = {"agent": (), REWARD_BLIND: ("training.shuffle_imagined_rewards=true",)}


def run_name(game: str, seed: int, arm: str = "agent", entrant: Entrant | None = None) -> str:
    """<game>-s<seed>[-<model>][-<arm>]: a --models entrant's runs carry its label, the suite's own model's do not."""
    model = f"-{entrant.key}" if entrant is not None and entrant.added else ""
    return f"{game}-s{seed}{model}" if arm == "agent" else f"{game}-s{seed}{model}-{arm}"


def check_finished(spec: RunSpec, cfg: Config) -> None:
    """A finished run is skipped by the launcher: it must have been trained with the settings asked for
    now, or a changed --set would silently mix two experiments in one report."""
    path = spec.run_dir / "result.json"
    if not path.is_file():
        return
    try:
        result = read_json(path)
    except CorruptFileError:
        return  # run_suite.py marks the run failed, naming the file, and the others go on
    if not isinstance(result, dict) or "config_hash" not in result:
        return
    # names what differs: the game, seed or profile, else the changed config keys (their values on disk and now)
    check_identity(spec.run_dir, {"game": cfg.env.game, "seed": cfg.seed, "profile": cfg.profile,
                                  "config_hash": config_hash(cfg)}, to_dict(cfg))


def stages(opts: SuiteOptions) -> list[list[RunSpec]]:
    """One stage: every (game, seed) of the grid, in Table 1 game order then seed order."""
    games = tuple(check_game(g) for g in (opts.games or GAMES))
    seeds = DEFAULT_SEEDS if opts.seeds is None else opts.seeds
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    hours = gpu_hours(opts.profile, tuple(opts.overrides))
    root = opts.suite_dir(NAME)
    specs = []
    entrants = opts.entrants()
    for entrant in entrants:
        entrant.declarations(opts.profile, opts.overrides)  # a broken plug-in is refused now, not after collection
    for game in games:
        for seed in range(seeds):
            for entrant, arm in ((e, a) for e in entrants for a in (ARMS if opts.controls else ("agent",))):
                overrides = [*opts.overrides, *ARMS[arm], *entrant.overrides()]
                cfg = build_config(opts.profile, overrides, seed=seed, **{"env.game": game})
                name = run_name(game, seed, arm, entrant)
                spec = RunSpec(name=name, run_dir=root / name, entry=ENTRY,
                               kwargs={"game": game, "seed": seed, "profile": opts.profile, "overrides": overrides},
                               gpu_hours=hours, group=game)
                check_finished(spec, cfg)
                specs.append(spec)
    return [specs]


def report(opts: SuiteOptions) -> tuple[Path, Path]:
    """reports/atari100k/report.md + report.pdf from the grid's run folders."""
    from reports.atari100k import build_report  # the report stack (matplotlib, reportlab) loads only when needed

    specs = stages(opts)[0]
    entrants = opts.entrants()
    labels = {run_name(s.kwargs["game"], s.kwargs["seed"], arm, e): e.label
              for e in entrants if e.added for s in specs for arm in ARMS}
    reads = {e.label: e.declarations(opts.profile, opts.overrides).config_fields for e in entrants}
    return build_report(opts.report_context(NAME), specs, default_seeds=DEFAULT_SEEDS, labels=labels, reads=reads)


SUITE = Suite(
    name=NAME,
    description="DIAMOND with its default settings on the 26 Atari 100k games x 5 seeds. " + COST_NOTE,
    paper_artefact="Table 1 (per-game returns, aggregates) and Figure 2 (aggregate HNS with 95% CIs)",
    stages=stages,
    report=report,
    default_games=GAMES,
    default_seeds=DEFAULT_SEEDS,
)
