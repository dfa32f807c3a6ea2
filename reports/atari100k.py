"""Atari 100k report: our per-game returns beside the paper's Table 1, aggregate human-normalized scores
with stratified bootstrap CIs (Figure 2), performance profiles (Figure 6), per-game bars, and the settings
the runs actually used (read back from their config.yaml).

Published baselines are always restricted to the games we ran, so every comparison is like for like.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from diamond.loop.config import build_config, to_dict
from diamond.run.io import atomic_write_text
from diamond.run.rundir import flatten
from evaluation import aggregate, baselines, plots
from evaluation.atari import GAMES
from reports.builder import Report
from reports.common import (
    ReportContext,
    bootstrap_reps,
    collect_results,
    completion_banner,
    differences,
    format_ci,
    grid_config_hash,
    profile_banner,
    read_config,
    settings_banner,
    settings_table,
    subset_banner,
    wall_time_rows,
)
from reports.learning import learning_section
from slurm.launcher import RunSpec

OURS_SUFFIX = " (ours)"  # a column of ours is its world model's name (registered, or the --models label) + this
OURS = "diamond" + OURS_SUFFIX  # the column of the registry's first model, DIAMOND's
PAPER = "DIAMOND (paper)"
REFERENCE_COLUMNS = ("Random", "Human")  # Table 1 columns that are reference scores, not agents
GAMES_PER_BAR_FIGURE = 13  # 26 games as two legible figures
METRIC_ORDER = ("mean", "median", "iqm", "optimality_gap")
METRIC_NAMES = {"mean": "Mean", "median": "Median", "iqm": "IQM", "optimality_gap": "Optimality gap"}
MODEL_KEYS = ("diffusion.", "denoiser.")  # the world model's keys; the others are the agent's and the trainer's
SETTINGS = {  # label -> config key of the settings a reader needs to judge the numbers
    "world model (factory)": "world_model.factory", "diffusion paradigm": "diffusion.paradigm",
    "sampler": "diffusion.sampler",
    "denoising steps per frame": "diffusion.num_steps", "history conditioning": "diffusion.history",
    "history length L": "diffusion.num_history", "epochs": "training.epochs",
    "final epochs (released schedule; None: `epochs`)": "training.final_epochs",
    "environment steps (budget)": "training.total_env_steps", "batch size": "training.batch_size",
    "imagination horizon H": "training.imagination_horizon", "evaluation episodes": "training.eval_episodes",
    "denoiser channels": "denoiser.channels",
}


@dataclass(frozen=True)
class BootstrapReps:
    """Bootstrap repetitions per statistic (probability of improvement is by far the slowest per rep)."""

    aggregate: int = 2_000
    profile: int = 2_000
    poi: int = 1_000

    @classmethod
    def from_env(cls) -> "BootstrapReps":
        """Defaults, or $DIAMOND_REPORT_REPS for all three (e.g. a few dozen in tests)."""
        d = cls()
        return cls(bootstrap_reps(d.aggregate), bootstrap_reps(d.profile), bootstrap_reps(d.poi))


def shown(algorithm: str) -> str:
    """Published DIAMOND is labelled as the paper's, beside ours."""
    return PAPER if algorithm == "DIAMOND" else algorithm


def table1_algorithms() -> list[str]:
    """Agents of Table 1 in its column order (SimPLe ... DIAMOND)."""
    return [a for a in pd.unique(baselines.table1()["algorithm"]) if a not in REFERENCE_COLUMNS]


def our_scores(results: pd.DataFrame) -> pd.DataFrame:
    """Tidy (algorithm, game, seed, score) of our finished runs, `algorithm` naming each run's world model;
    score = mean evaluation return."""
    return pd.DataFrame({"algorithm": results["model"] + OURS_SUFFIX, "game": results["game"],
                         "seed": results["seed"].astype(int), "score": results["score"].astype(float)})


def published_scores(games: Sequence[str]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Table 1 agents on `games`: released per-run scores where they exist, else Table 1's per-game means
    (one 'run', so no CI). Returns the tidy table (DIAMOND labelled as the paper's), the per-run agents and the
    means-only agents (as Table 1 names them)."""
    agents = table1_algorithms()
    per_run = [a for a in agents if a in baselines.PER_RUN]
    means_only = [a for a in agents if a not in per_run]
    runs = baselines.published_runs(per_run)
    t1 = baselines.table1()
    means = t1[t1["algorithm"].isin(means_only)].assign(seed=0)
    tidy = pd.concat([runs, means[["algorithm", "game", "seed", "score"]]], ignore_index=True)
    tidy = tidy[tidy["game"].isin(games)]
    return tidy.assign(algorithm=tidy["algorithm"].map(shown)), per_run, means_only


def released_vs_table1(games: Sequence[str], per_run: Sequence[str]) -> list[str]:
    """Games where a released per-run file's mean differs from the number printed in Table 1 (>1 %)."""
    t1 = baselines.table1().set_index(["algorithm", "game"])["score"]
    runs = baselines.published_runs(list(per_run))
    means = runs[runs["game"].isin(games)].groupby(["algorithm", "game"])["score"].mean()
    notes = []
    for (algorithm, game), mean in means.items():
        printed = float(t1[(algorithm, game)])
        if not np.isclose(mean, printed, rtol=0.01, atol=0.05):
            notes.append(f"{algorithm} on {game} (released mean {mean:.1f}, Table 1 prints {printed:.1f})")
    return notes


def balanced(ours: pd.DataFrame) -> tuple[pd.DataFrame, int, bool]:
    """Keep the lowest common number of seeds per game and model: rliable needs a runs × games matrix."""
    counts = ours.groupby(["algorithm", "game"])["seed"].count()
    n = int(counts.min())
    kept = ours.sort_values(["algorithm", "game", "seed"]).groupby(["algorithm", "game"], sort=False).head(n)
    return kept.reset_index(drop=True), n, bool((counts != n).any())


def per_game_table(ours: pd.DataFrame, games: Sequence[str]) -> pd.DataFrame:
    """Table 1's columns on our games, then one column per world model of ours (mean ± sample std over seeds),
    and the number of seeds (of each model, where they differ)."""
    wide = baselines.table1().pivot(index="game", columns="algorithm", values="score")
    columns = list(REFERENCE_COLUMNS) + table1_algorithms()
    table = wide.loc[list(games), columns].rename(columns={"DIAMOND": PAPER})
    seeds = {}
    for model, runs in ours.groupby("algorithm", sort=False):
        stats = runs.groupby("game")["score"].agg(["mean", "std", "count"]).reindex(list(games))
        count = stats["count"].fillna(0).astype(int)
        table[model] = ["–" if c == 0 else f"{m:.1f}" if c < 2 else f"{m:.1f} ± {s:.1f}"
                        for m, s, c in zip(stats["mean"], stats["std"], count)]
        seeds[model] = count
    counts = pd.DataFrame(seeds)
    table["seeds"] = (counts.iloc[:, 0] if counts.nunique(axis=1).max() <= 1 else
                      counts.astype(str).agg(" / ".join, axis=1))
    table.index.name = "game"
    return table


def aggregate_table(agg: pd.DataFrame, superhuman: pd.Series, order: Sequence[str]) -> pd.DataFrame:
    """One row per agent: each metric as `value [95 % CI]` (2 decimals, so it fits a portrait page; full
    precision in tables/aggregates_long.csv), runs per game, superhuman games out of the games."""
    rows = []
    for algorithm in order:
        sub = agg[agg["algorithm"] == algorithm].set_index("metric")
        row = {"agent": algorithm, "runs/game": int(sub["n_runs"].iloc[0])}
        for metric in METRIC_ORDER:
            r = sub.loc[metric]
            row[METRIC_NAMES[metric]] = format_ci(r["value"], r["ci_low"], r["ci_high"], "{:.2f}")
        row["#superhuman"] = f"{int(superhuman[algorithm])} / {int(sub['n_games'].iloc[0])}"
        rows.append(row)
    return pd.DataFrame(rows)


def _figures(tidy: pd.DataFrame, agg: pd.DataFrame, profiles: pd.DataFrame, order: list[str],
             bar_agents: list[str], work: Path) -> dict[str, list[Path]]:
    games = [g for g in GAMES if g in set(tidy["game"])]
    chunks = [games[i:i + GAMES_PER_BAR_FIGURE] for i in range(0, len(games), GAMES_PER_BAR_FIGURE)]
    bars = [plots.plot_per_game(tidy[tidy["game"].isin(chunk) & tidy["algorithm"].isin(bar_agents)],
                                work / f"per_game_{i + 1}.png", algorithms=bar_agents)
            for i, chunk in enumerate(chunks)]
    return {"intervals": [plots.plot_interval_estimates(agg, work / "aggregates.png", metrics=METRIC_ORDER,
                                                        algorithms=order)],
            "profiles": [plots.plot_performance_profiles(profiles, work / "performance_profiles.png",
                                                         algorithms=order)],
            "bars": bars}


def model_settings(results: pd.DataFrame, configs: list[dict], reads: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """One column per world model (its first run's config): factory, options, and the SETTINGS keys it declares
    it reads (`reads`: model label -> config keys; a model absent from it shows every key)."""
    columns = {}
    for model, config in zip(results["model"], configs):
        if model not in columns:
            flat, keys = flatten(config), reads.get(model, SETTINGS.values())
            columns[model] = {"world model (factory)": str(config["world_model"]["factory"]),
                              "its options": str(config["world_model"].get("options") or {}),
                              **{label: (str(flat.get(key, "–")) if key in keys or not key.startswith(MODEL_KEYS)
                                         else "– (not read)") for label, key in SETTINGS.items()
                                 if key != "world_model.factory"}}
    return pd.DataFrame(columns).rename_axis("setting").reset_index()


def _settings(report: Report, results: pd.DataFrame, configs: list[dict], profile: str,
              reads: Mapping[str, Sequence[str]] | None = None) -> None:
    report.heading("Settings")
    hashes = [grid_config_hash(c) for c in configs]
    rows = [{"setting": "profile", "key": "profile", "value": ", ".join(pd.unique(results["profile"]))},
            {"setting": "grid config hash (all but game and seed)", "key": "config.yaml",
             "value": ", ".join(sorted(set(hashes)))},
            {"setting": "network evaluations per frame (NFE)", "key": "result.nfe",
             "value": ", ".join(map(str, pd.unique(results["nfe"])))},
            {"setting": "environment steps collected", "key": "result.env_steps",
             "value": ", ".join(map(str, sorted(pd.unique(results["env_steps"]))))}]
    table = pd.concat([pd.DataFrame(rows), settings_table(configs, SETTINGS), pd.DataFrame(wall_time_rows(results))],
                      ignore_index=True)
    report.table(table, "settings", caption="Settings read back from each run's config.yaml and result.json.")
    if reads is not None:
        report.table(model_settings(results, configs, reads), "settings_per_model",
                     caption="Each world model's own settings: its factory and options, then the keys it declares it "
                             "reads ('– (not read)': a key this model ignores).")
    diff = differences(configs, to_dict(build_config(profile)))
    if diff.empty:
        report.paragraph(f"Every run used the `{profile}` profile's defaults (no `--set` overrides).")
    else:
        report.table(diff, "overrides", caption=f"Settings that differ from the `{profile}` profile's defaults "
                                                "(game and seed apart).")


def build_report(ctx: ReportContext, specs: Sequence[RunSpec], default_seeds: int,
                 reps: BootstrapReps | None = None, labels: Mapping[str, str] | None = None,
                 reads: Mapping[str, Sequence[str]] | None = None) -> tuple[Path, Path]:
    """Write report.md and report.pdf (+ figures/, tables/) for the finished runs among `specs` (the suite's grid;
    `default_seeds`: the suite's full number of seeds per game, for the subset banner). `labels`: run name ->
    the label of its world model (--models); other runs are named by their config's world_model.factory. `reads`:
    model label -> the config keys it declares it reads, for the per-model settings table when several models ran."""
    reps = reps or BootstrapReps.from_env()
    results, missing = collect_results(specs)
    results["model"] = [(labels or {}).get(run) or str(read_config(Path(d)).get("world_model", {}).get("factory"))
                        for run, d in zip(results["run"], results["run_dir"])]
    if "shuffled_imagined_rewards" in results:  # the reward-blind twins are a control, not runs of the agent
        blind_rows = results["shuffled_imagined_rewards"].eq(True)
        results, blind = results[~blind_rows].reset_index(drop=True), results[blind_rows].reset_index(drop=True)
    else:
        blind = results.iloc[:0]
    if results.empty:
        raise ValueError(f"no finished run (result.json) under {ctx.runs_dir} for this grid; "
                         "run the suite first")
    configs = [read_config(Path(d)) for d in results["run_dir"]]
    ours_all = our_scores(results)
    games = [g for g in GAMES if g in set(ours_all["game"])]
    ours, n_runs, unequal = balanced(ours_all)
    published, per_run, means_only = published_scores(games)
    tidy = pd.concat([ours, published], ignore_index=True)
    models = list(pd.unique(ours_all["algorithm"]))  # ours, one column each, in grid order
    order = models + [shown(a) for a in reversed(table1_algorithms())]

    out = ctx.out_dir
    work = out / "figures"
    report = Report(f"Atari 100k: DIAMOND reproduction, world models {', '.join(models)} (profile {ctx.profile})",
                    out)
    grid_games = list(dict.fromkeys(s.kwargs["game"] for s in specs))
    grid_seeds = len({s.kwargs["seed"] for s in specs})
    for text in (profile_banner(ctx.profile), subset_banner(grid_games, GAMES, grid_seeds, default_seeds),
                 completion_banner(len(results), missing),
                 *(settings_banner([grid_config_hash(c) for c, m in zip(configs, results["model"]) if m == model])
                   for model in dict.fromkeys(results["model"]))):
        if text:
            report.banner(text)
    report.paragraph(f"{len(results)} finished runs ({len(games)} games, at most "
                     f"{int(ours_all.groupby('game')['seed'].count().max())} per game) from "
                     f"`{ctx.runs_dir}`. A run's score is the mean return of its final evaluation episodes "
                     "(full games, raw rewards), as in the paper.")

    report.heading("Per-game returns (Table 1)")
    report.table(per_game_table(ours_all, games), "per_game",
                 caption=f"Returns on our {len(games)} games. Published columns: the paper's Table 1. "
                         f"{', '.join(models)}: our world models, each named by its registered name (or --models "
                         "label); mean ± sample standard deviation over seeds.", float_fmt="{:.1f}")
    several = results["model"].nunique() > 1  # then one learning check per world model, each named
    for model in dict.fromkeys(results["model"]):
        mine = results["model"].eq(model)
        learning_section(report, results[mine].reset_index(drop=True), out, reps.aggregate,
                         blind[blind["model"].eq(model)] if "model" in blind else blind, model if several else None)

    report.heading("Aggregate human-normalized scores (Figure 2)")
    agg = aggregate.aggregate_metrics(tidy, reps=reps.aggregate, algorithms=order)
    superhuman = aggregate.num_superhuman(tidy, algorithms=order)
    report.table(aggregate_table(agg, superhuman, order), "aggregates",
                 caption=f"HNS = (score - random) / (human - random). Point estimate [95 % stratified bootstrap "
                         f"CI, {reps.aggregate} repetitions]; #superhuman: games whose mean score reaches the human "
                         "score.")
    report.paragraph(f"Published agents are recomputed on the same {len(games)} games as ours: "
                     f"{', '.join(map(shown, per_run))} from their released per-run scores; {', '.join(means_only)} from "
                     "Table 1's per-game means only (point estimates without CI; IQM and optimality gap over game "
                     "means).")
    mismatches = released_vs_table1(games, per_run)
    if mismatches:
        report.paragraph("Released per-run scores that disagree with Table 1: " + "; ".join(mismatches)
                         + " (see evaluation/data/PROVENANCE.md).")
    if unequal:
        report.paragraph(f"Games have unequal numbers of finished seeds; aggregates use the {n_runs} lowest seeds "
                         "of every game.")
    for model in models if n_runs >= 2 else ():
        poi = aggregate.probability_of_improvement(tidy, model, PAPER, reps=reps.poi).iloc[0]
        report.paragraph(f"Probability of improvement P({model} > {PAPER}) = "
                         f"{format_ci(poi['value'], poi['ci_low'], poi['ci_high'])} (95 % CI, {reps.poi} "
                         f"repetitions; {poi['n_games']} games, {poi['n_runs_x']} vs {poi['n_runs_y']} runs per "
                         "game). 0.5 means neither is better.")
    if n_runs < 2:
        report.paragraph(f"Probability of improvement over {PAPER} needs at least 2 runs per game; we have "
                         f"{n_runs}, so it is not computed.")
    profiles = aggregate.performance_profiles(tidy, reps=reps.profile, algorithms=order)
    atomic_write_text(out / "tables" / "aggregates_long.csv", agg.to_csv(index=False))
    atomic_write_text(out / "tables" / "performance_profiles.csv", profiles.to_csv(index=False))
    bar_agents = models + [shown(a) for a in reversed(table1_algorithms()) if a in per_run]
    figs = _figures(tidy, agg, profiles, order, bar_agents, work)
    report.figure(figs["intervals"][0], caption="Aggregate HNS with 95 % stratified bootstrap CIs (Figure 2 style). "
                                                "Higher is better, except the optimality gap.")
    report.heading("Performance profiles (Figure 6)")
    report.figure(figs["profiles"][0], caption="Fraction of runs whose HNS exceeds τ, with 95 % CIs "
                                               f"({reps.profile} repetitions).")
    report.heading("Per-game comparison")
    for path in figs["bars"]:
        report.figure(path, caption=f"Per-game HNS of {', '.join(models)} and the agents with released per-run scores: "
                                    "mean "
                                    "over runs, whiskers from min to max; dashed line: human.")
    _settings(report, results, configs, ctx.profile, reads if len(models) > 1 else None)
    report.heading("All runs")
    columns = ["run", "model", "seed", "score", "hns", "num_episodes", "env_steps", "epochs", "wall_time_s",
               "config_hash"]
    report.table(pd.concat([results, blind], ignore_index=True)[columns], "runs",
                 caption=f"Every finished run (run folders under `{ctx.runs_dir}`; '-reward-blind': the control "
                         "trained with shuffled imagined rewards).", float_fmt="{:.2f}")
    return report.write()
