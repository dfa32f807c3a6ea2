"""Report of the sampling ablations (ablation_sampler, ablation_nfe) from their run folders: agent scores, world-model
quality (Table 6 protocol) per arm, and what every EDM sampler does with an exact denoiser on the suite's own grid.

The suite hands everything in (`SamplingGrid`): a report never imports the suite module back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from diamond.models.diffusion.paradigms import Paradigm
from evaluation import plots
from evaluation.compare import WM_METRICS
from evaluation.exact_denoiser import DETERMINISTIC, INITS, GaussianData, exact_denoiser_table, initial_std, summary
from reports.ablations import (
    PRIMARY,
    WMItem,
    agent_part,
    banners,
    cell,
    difference_table,
    error_curves,
    frames_grid,
    load_items,
    measured,
    metrics_table,
    resamples_of,
    runs_section,
    settings_section,
    wm_summary,
    wm_unavailable,
    write_agent_part,
)
from reports.builder import Report
from reports.common import ReportContext, subset_banner
from slurm.launcher import RunSpec

FIGURE3_STEPS = (1, 2, 3, 5, 10)  # the n of Figure 3: rows of the exact-denoiser table
PLOT_STEPS = range(1, 16)


@dataclass(frozen=True)
class SamplingGrid:
    """What a sampling suite hands its report."""

    stages: list[list[RunSpec]]  # [agents + expert dataset], [static world models + agent datasets], [evaluations]
    labels: dict[str, str]  # agent group (arm key, `<model>-<arm>` for an added model) -> label, in report order
    references: dict[str, str]  # agent group -> the group of its model's reference arm
    reference: str  # the reference arm's key (a setting key in every evaluation)
    games: tuple[str, ...]
    seeds: int
    default_games: tuple[str, ...]
    default_seeds: int
    paradigm: Paradigm  # the runs' EDM: its σ grid and initial noise drive the exact-denoiser section
    suite_arms: dict[str, tuple[str, str, int]]  # the suite's arms: key -> (label, sampler, n), in arm order
    sampler_labels: dict[str, str]  # sampler name -> display name
    models: dict[str, str] = field(default_factory=dict)  # evaluation run name -> its world model's label
    skipped: tuple[tuple[str, str], ...] = ()  # (arm label, why) of each (model, arm) left out


def tradeoff_figure(items: Sequence[WMItem], resamples: np.ndarray, metrics: Sequence[str], path: Path) -> Path:
    """Quality against sampling cost: one panel per metric, each arm at its frames/s with its CI."""
    fig = Figure(figsize=(4.2 * len(metrics), 3.6), layout="constrained")
    for ax, m in zip(fig.subplots(1, len(metrics), squeeze=False)[0], metrics):
        for it in items:
            iv = it.interval(m, resamples)
            err = [[iv.value - iv.ci_low], [iv.ci_high - iv.value]] if iv.has_ci else None
            ax.errorbar(it.row["sample_rate_hz"], iv.value, yerr=err, fmt="o", capsize=3)
            ax.annotate(f"n={it.row['num_steps']}", (it.row["sample_rate_hz"], iv.value), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("frames/s (batch 1, run's device)")
        ax.set_ylabel(WM_METRICS[m].name)
        ax.grid(True, alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return path


def sharpness_sentence(items: Sequence[WMItem], resamples: np.ndarray, game: str) -> str | None:
    """§5.2 as a number: relative sharpness at n = 1 against n = 3, and whether the CI of the gap excludes 0."""
    by_n = {it.row["num_steps"]: it for it in items}
    if 1 not in by_n or 3 not in by_n:
        return None
    one, three = by_n[1].interval("sharpness", resamples), by_n[3].interval("sharpness", resamples)
    gap = by_n[1].minus(by_n[3], "sharpness", resamples)
    verdict = ("the CI excludes 0: one step is detectably blurrier" if gap.excludes(0.0) and gap.value < 0 else
               "the CI excludes 0, but one step is *sharper*" if gap.excludes(0.0) else
               "the CI includes 0: no detectable blur at n = 1")
    return (f"{game}: generated frames keep {cell(one, '{:.3f}')} of the real frames' high-frequency energy at n = 1 "
            f"and {cell(three, '{:.3f}')} at n = 3; n=1 − n=3 = {cell(gap, '{:.3f}')}, {verdict} (§5.2 expects "
            "n = 1 to blur where the next frame is uncertain, e.g. Boxing's opponent).")


def build_sampling_report(ctx: ReportContext, grid: SamplingGrid, title: str, focus: str) -> tuple[Path, Path]:
    """Report of ablation_sampler (focus 'sampler') or ablation_nfe (focus 'nfe') from its run folders."""
    stages = grid.stages
    specs = [s for stage in stages for s in stage]
    done = [s for s in specs if (s.run_dir / "result.json").is_file()]
    missing = [s for s in specs if s not in done]
    agents = [s for s in stages[0] if s.entry == "diamond.train:run"]
    evals = [s for s in stages[2] if s in done]
    if not any(s in done for s in agents) and not evals:
        raise FileNotFoundError(f"no finished agent or evaluation run under {ctx.runs_dir}; "
                                "run the suite first.")
    labels = grid.labels
    out = ctx.out_dir
    report = Report(f"{title} (profile {ctx.profile})", out)
    banners(report, ctx, len(done), missing)
    subset = subset_banner(grid.games, grid.default_games, grid.seeds, grid.default_seeds)
    if subset:
        report.banner(subset)
    agent = agent_part(agents, labels, {labels[k]: labels[r] for k, r in grid.references.items()}, out / "figures")
    wm_parts = []
    for spec in evals:
        items = load_items(spec, {})  # each setting's label as the suite wrote it (the model's name included)
        reference = next((it for it in items if it.row["key"] == grid.reference), items[0])
        source = "the scripted expert's" if spec.name.endswith("expert") else "the reference agent's"
        model = f" {grid.models[spec.name]}" if len(set(grid.models.values())) > 1 else ""
        what = f"World model{model} on {items[0].result['game']} ({source} data)"
        wm_parts.append((spec, items, reference, what, resamples_of(items)))

    report.heading("Summary")
    if agent is not None:
        report.paragraph(agent["summary"])
    for spec, items, reference, what, resamples in wm_parts:
        report.paragraph(wm_summary(items, reference, resamples, what))
        if focus == "nfe":
            sentence = sharpness_sentence(items, resamples, what)
            if sentence:
                report.paragraph(sentence)
    if focus == "nfe" and not any(it[1][0].result["game"] == "Boxing" for it in wm_parts):
        report.paragraph("Boxing, the game of the paper's Figure 4, was not evaluated (not among the selected games "
                         "or not finished); the sharpness numbers above test the same argument on the games that were.")
    if grid.skipped:
        report.table(pd.DataFrame(grid.skipped, columns=["arm left out", "reason"]), "arms_left_out",
                     caption="Arms a model cannot take, from the samplers it declares (docs/plugins.md): not run, so "
                             "no finding about them is drawn for that model.")
    if agent is not None:
        write_agent_part(report, agent)
    report.heading("World-model quality (Table 6 protocol)")
    first = wm_parts[0][1][0].result["protocol"] if wm_parts else None
    if first:
        report.paragraph(f"{first['clip_len']}-frame clips generated from {first['context']} real frames (the model "
                         "uses its last L) and the real actions, every arm on the same clips and noise; CIs: "
                         "bootstrap over clips, paired between arms. Relative sharpness: high-frequency energy "
                         "(mean squared Laplacian) of generated over real frames; below 1 means blur.")
    unavailable = wm_unavailable([it for part in wm_parts for it in part[1]])
    if unavailable:
        report.paragraph(unavailable)
    for spec, items, reference, what, resamples in wm_parts:
        metrics = measured(items)
        report.heading(what, level=3)
        report.table(metrics_table(items, resamples, metrics), f"wm_{spec.name}",
                     caption=f"{items[0].result['num_clips']} held-out clips ({items[0].result['held_out']}); "
                             f"world model: {items[0].result['model_dir']}.")
        if len(items) > 1:
            diff, _ = difference_table(items, reference, resamples, metrics)
            report.table(diff, f"wm_diff_{spec.name}", caption="Arm − reference, paired 95 % bootstrap CI over clips.")
        caption = "Real clip (top) and the same clip generated by each arm."
        if items[0].result["game"] == "Boxing" and focus == "nfe":
            caption += " Compare n = 1 and n = 3 on the opponent (the black player): the paper's Figure 4."
        report.figure(frames_grid(items, out / "figures" / f"frames_{spec.name}.png"), caption=caption)
        if focus == "nfe":
            shown = [next(m for m in PRIMARY if m in metrics), "sharpness"]
            report.figure(tradeoff_figure(items, resamples, shown, out / "figures" / f"tradeoff_{spec.name}.png"),
                          caption="Quality against sampling cost (frames/s, log scale); bars: 95 % CIs over clips.")
        curves = error_curves([(spec, items)], out / "figures" / f"errors_{spec.name}.png")
        if curves:
            report.figure(curves, caption="Open-loop MSE against real frames per step (band: 95 % CI over rollouts).")
    exact_denoiser_section(report, grid, out / "figures" / "exact_denoiser.png")
    trained = [s for s in done if s.entry in ("diamond.train:run", "ablations.static_wm:run")]
    settings_section(report, trained, ctx.profile)
    runs_section(report, specs, done)
    return report.write()


def stochastic_sentence(table: pd.DataFrame, arms: dict[str, tuple[str, int]], labels: dict[str, str],
                        names: dict[str, str]) -> str:
    """Literal Euler–Maruyama against n, and the variance each stochastic arm keeps at its own n (both starts)."""
    ratio = table.set_index(["init", "sampler", "num_steps"])["var_ratio"].sort_index()
    text = ""
    if ("marginal", "euler_maruyama", 3) in ratio.index:
        em = ratio.loc[("marginal", "euler_maruyama")]
        steps = [n for n in (3, 10, int(em.index.max())) if n in em.index]
        text = (f"Literal {names.get('euler_maruyama', 'Euler–Maruyama')} converges as n grows but blows up at small n "
                "on this grid: from the exact marginal its variance is "
                + ", ".join(f"{em[n]:.3g}×" for n in steps) + " the data's at n = " + ", ".join(map(str, steps)) + ".")
    stochastic = [(key, s, n) for key, (s, n) in arms.items() if s not in DETERMINISTIC and ("paradigm", s, n) in ratio]
    if stochastic:
        text += " Stochastic arms at their own n: " + "; ".join(
            f"{labels[key]} keeps {ratio[('paradigm', s, n)]:.3g}× the data variance from the runs' initial noise "
            f"and {ratio[('marginal', s, n)]:.3g}× from the exact marginal" for key, s, n in stochastic) + "."
    return text.strip()


def exact_denoiser_section(report: Report, grid: SamplingGrid, figure: Path) -> None:
    """Every EDM sampler with the exact denoiser of Gaussian data on the runs' own σ grid and initial noise: the
    error a perfect D_θ would still have, which the agent and world-model numbers above include."""
    paradigm, names = grid.paradigm, grid.sampler_labels
    samplers = list(paradigm.supported_samplers)
    data = GaussianData(std=getattr(paradigm.cfg, "sigma_data", 0.5))
    table = exact_denoiser_table(paradigm, samplers, PLOT_STEPS, data)
    arms = {key: (sampler, n) for key, (_, sampler, n) in grid.suite_arms.items()}
    arm_labels = {key: label for key, (label, _, _) in grid.suite_arms.items()}
    reference_n = arms[grid.reference][1]
    sigmas = ", ".join(f"{s:.3g}" for s in paradigm.sigmas(reference_n).tolist())
    report.heading("Samplers with an exact denoiser")
    report.paragraph(f"For Gaussian data N({data.mean:g}, {data.std:g}²) per pixel (std = σ_data) the denoiser is "
                     "known exactly, so each sampler's error at each n is a property of the sampler and of these "
                     f"runs' σ grid (n = {reference_n}: σ = {sigmas}), free of any network: what a perfect D_θ would "
                     "still get wrong. Error: 2-Wasserstein distance between the sampler's output and the data, in "
                     "data stds; variance: the output's over the data's. Deterministic samplers are computed exactly, "
                     "stochastic ones by Monte Carlo (evaluation/exact_denoiser.py).")
    starts = {"paradigm": f"the runs' initial noise (std {initial_std(paradigm, reference_n):.3g})",
              "marginal": INITS["marginal"]}
    for init, start in starts.items():
        report.paragraph(f"**From {start}.** " + summary(table, init, reference_n, names))
    report.paragraph(stochastic_sentence(table, arms, arm_labels, names))
    rows = table[table["num_steps"].isin(sorted({*FIGURE3_STEPS, *(n for _, n in arms.values())}))]
    wide = rows.pivot_table(index=["sampler", "num_steps", "nfe"], columns="init", values=["var_ratio", "w2"])
    wide = wide[[(v, init) for init in INITS for v in ("var_ratio", "w2")]]
    short = {"paradigm": "runs' noise", "marginal": "marginal"}
    wide.columns = [f"{'variance' if v == 'var_ratio' else 'W2'} ({short[init]})" for v, init in wide.columns]
    wide = wide.reset_index().rename(columns={"num_steps": "n", "nfe": "NFE"})
    wide = wide.sort_values(["sampler", "n"], key=lambda c: c.map(samplers.index) if c.name == "sampler" else c)
    wide["sampler"] = wide["sampler"].map(lambda s: names.get(s, s))
    wide = wide.reset_index(drop=True)
    monte_carlo = table["measured"][table["measured"] != "exact"].iloc[0]
    report.table(wide, "exact_denoiser", caption="Each sampler with the exact denoiser: variance ratio (1 = the "
                 "data's) and W2 in data stds, from the runs' initial noise and from the exact marginal at "
                 f"the first σ. Stochastic samplers: {monte_carlo}.", float_fmt="{:.3g}")
    report.figure(plots.plot_sampler_errors(table, figure, panels={k: f"from {v}" for k, v in starts.items()},
                                            labels=names),
                  caption=f"W2 to the data against NFE, n = {PLOT_STEPS[0]}…{PLOT_STEPS[-1]} (one marker per n).")
