"""Report of the `benchmark` suite: one leaderboard of world models, every metric ranked with its 95 % CI beside
its ceiling and floors, one table and one figure.

Ranking: per metric, the models' rows (model, seed, n) are ordered best first; a row whose CI overlaps the CI of the
row ranked just above it is "not told apart" from it, and shares its rank group. Reference rows are not ranked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from evaluation import plots
from evaluation.decision_eval import CEILING as DECISION_CEILING, FLOORS as DECISION_FLOORS
from evaluation.memory import CEILING as MEMORY_CEILING, FLOOR as MEMORY_FLOOR, MODEL, kept_fraction
from evaluation.object_metrics import CEILING as OBJECT_CEILING, EMPTY, REPEAT
from evaluation.wm_protocol import COPY_SETTING
from reports.builder import Report
from reports.common import ReportContext, completion_banner, format_ci, profile_banner, read_result
from slurm.launcher import RunSpec

# metric -> (source, key in the source's rows, higher is better)
METRICS: dict[str, tuple[str, str, bool]] = {
    "pixel MSE": ("pixels", "mse", False), "FID": ("clips", "fid", False), "FVD": ("clips", "fvd", False),
    "object persistence": ("objects", "persistence", True), "paddle error": ("objects", "paddle_error", False),
    "ball error": ("objects", "ball_error", False), "brick-count error": ("objects", "brick_count_error", False),
    "action accuracy": ("decision", "action_accuracy", True), "CF gain over copy": ("decision", "cf_gain", True),
    "policy Kendall τ": ("decision", "policy_tau", True), "memory kept": ("memory", "kept", True),
}
REFERENCES = {"pixels": (COPY_SETTING,), "objects": (OBJECT_CEILING, REPEAT, EMPTY),
              "decision": (DECISION_CEILING, *DECISION_FLOORS), "memory": (MEMORY_CEILING, MEMORY_FLOOR)}


@dataclass(frozen=True)
class Entry:
    """One trained model of the leaderboard: its label and seed, its Breakout run and its measurement runs."""

    label: str
    seed: int
    model: RunSpec
    memory: RunSpec
    decision: RunSpec
    objects: RunSpec


def _done(spec: RunSpec) -> dict[str, Any] | None:
    return read_result(spec.run_dir) if (spec.run_dir / "result.json").is_file() else None


def _row(row: str, metric: str, value: float, low: float = float("nan"), high: float = float("nan"),
         reference: bool = False) -> dict[str, Any]:
    return {"row": row, "metric": metric, "value": float(value), "ci_low": float(low), "ci_high": float(high),
            "reference": reference}


def _from_rows(rows: Sequence[dict[str, Any]], source: str, name_of: dict[str, str]) -> list[dict[str, Any]]:
    """Decision or object result rows ({setting, metric, metric_ci_low, metric_ci_high}) as long rows."""
    out = []
    for r in rows:
        if r["setting"] not in name_of:
            continue
        for metric, (src, key, _) in METRICS.items():
            if src == source and key in r:
                out.append(_row(name_of[r["setting"]], metric, r[key], r[f"{key}_ci_low"], r[f"{key}_ci_high"],
                                reference=r["setting"] in REFERENCES[source]))
    return out


def long_table(entries: Sequence[Entry], pixel_step: int, memory_k: int) -> pd.DataFrame:
    """(row, metric, value, ci_low, ci_high, reference) of every finished measurement; model rows are
    'label s<seed>, n=<n>', reference rows keep their names (taken once, from the first run that has them)."""
    rows: list[dict[str, Any]] = []
    for e in entries:
        who = f"{e.label} s{e.seed}"
        if (r := _done(e.model)) is not None:
            errors = pd.read_csv(e.model.run_dir / r["rollouts"]["errors_file"])
            at = errors[errors["step"] == min(pixel_step, int(errors["step"].max()))]
            for x in at.to_dict("records"):
                name = x["setting"] if x["setting"] == COPY_SETTING else f"{who}, {x['setting']}"
                if x["setting"] in (COPY_SETTING, *(s for s in at["setting"] if s.startswith("n="))):
                    rows.append(_row(name, "pixel MSE", x["mse"], x.get("mse_ci_low", np.nan),
                                     x.get("mse_ci_high", np.nan), reference=x["setting"] == COPY_SETTING))
            for setting, clip in r.get("clips", {}).items():
                rows += [_row(f"{who}, {setting}", m.upper(), clip[m]) for m in ("fid", "fvd")
                         if clip.get(m) is not None and np.isfinite(clip[m])]
        for spec, source in ((e.decision, "decision"), (e.objects, "objects")):
            if (r := _done(spec)) is not None and "rows" in r.get(source, {}):
                names = {s["setting"]: s["setting"] if s["setting"] in REFERENCES[source] else f"{who}, {s['setting']}"
                         for s in r[source]["rows"]}
                rows += _from_rows(r[source]["rows"], source, names)
        if (r := _done(e.memory)) is not None:
            probe = pd.read_csv(e.memory.run_dir / r["probe_file"]).assign(seed=r["seed"])
            for setting, name in ((MODEL, f"{who}, n=1"), (MEMORY_CEILING, MEMORY_CEILING),
                                  (MEMORY_FLOOR, MEMORY_FLOOR)):
                kept = kept_fraction(probe, setting).set_index("k")
                if memory_k in kept.index:
                    k = kept.loc[memory_k]
                    rows.append(_row(name, "memory kept", k["value"], k["ci_low"], k["ci_high"], setting != MODEL))
    table = pd.DataFrame(rows, columns=["row", "metric", "value", "ci_low", "ci_high", "reference"])
    return table.drop_duplicates(subset=["row", "metric"], keep="first").reset_index(drop=True)


def ranked(table: pd.DataFrame) -> pd.DataFrame:
    """Model rows of each metric ordered best first, with their rank and the rank of the first row they are not
    told apart from (CIs overlapping down the chain); rows without a CI are ranked but never told apart, rows
    without a value (memory kept: no better than blind even with the cue in sight) are not ranked."""
    out = []
    models = table[~table["reference"] & np.isfinite(table["value"].astype(float))]
    for metric, rows in models.groupby("metric", sort=False):
        higher = METRICS[metric][2]
        rows = rows.sort_values("value", ascending=not higher).reset_index(drop=True)
        group = 1
        for i, r in rows.iterrows():
            prev = rows.iloc[i - 1] if i else None
            overlap = prev is not None and all(np.isfinite([r["ci_low"], r["ci_high"], prev["ci_low"],
                                                            prev["ci_high"]])) \
                and r["ci_low"] <= prev["ci_high"] and prev["ci_low"] <= r["ci_high"]
            group = group if overlap else i + 1
            out.append({**r.to_dict(), "rank": i + 1, "group": group, "told_apart": not overlap})
    return pd.DataFrame(out)


def _ranking_text(ranks: pd.DataFrame) -> list[str]:
    lines = []
    for metric, rows in ranks.groupby("metric", sort=False):
        parts = [f"{r['rank']}. {r['row']}" + ("" if r["told_apart"] else f" (not told apart from #{r['rank'] - 1})")
                 for r in rows.to_dict("records")]
        better = "higher" if METRICS[metric][2] else "lower"
        lines.append(f"{metric} ({better} is better): " + "; ".join(parts) + ".")
    return lines


def build_benchmark_report(ctx: ReportContext, entries: Sequence[Entry], pixel_step: int,
                           memory_k: int) -> tuple[Path, Path]:
    """report.md + report.pdf: the leaderboard table, the ranking per metric, one figure."""
    specs = [s for e in entries for s in (e.model, e.memory, e.decision, e.objects)]
    missing = [s for s in specs if not (s.run_dir / "result.json").is_file()]
    table = long_table(entries, pixel_step, memory_k)
    if table.empty:
        raise FileNotFoundError(f"no finished model or measurement under {ctx.runs_dir}; run the suite first.")
    ranks = ranked(table)
    report = Report(f"World-model leaderboard (profile {ctx.profile})", ctx.out_dir)
    for text in (profile_banner(ctx.profile), completion_banner(len(specs) - len(missing), missing)):
        if text:
            report.banner(text)
    metrics = [m for m in METRICS if m in set(table["metric"])]
    report.paragraph(f"Models: {', '.join(dict.fromkeys(e.label for e in entries))}, each named by its registered "
                     "name or --models label, trained on the same static Breakout expert data (and the delayed-cue "
                     "data for memory) with the same schedule; rows are (model, seed, n). Metrics: pixel MSE against "
                     f"the real continuation at t = {pixel_step} (open loop), FID/FVD where computed, the object "
                     "metrics read from the frames, the decision metrics, and the fraction of a hidden cue's "
                     f"information kept after k = {memory_k} frames (the probe runs at n = 1). Reference rows: "
                     "ceilings and floors of each metric, not ranked. Cells: value [95 % CI] (#rank).")
    cell = {(r["row"], r["metric"]): f"{format_ci(r['value'], r['ci_low'], r['ci_high'])} (#{r['rank']})"
            for r in ranks.to_dict("records")}
    cell.update({(r["row"], r["metric"]): format_ci(r["value"], r["ci_low"], r["ci_high"])
                 for r in table[table["reference"]].to_dict("records")})
    order = [*dict.fromkeys(table.loc[~table["reference"], "row"]),
             *dict.fromkeys(table.loc[table["reference"], "row"])]
    wide = pd.DataFrame([{"model": row, **{m: cell.get((row, m), "–") for m in metrics}} for row in order])
    report.table(wide, "leaderboard", caption="Every metric of every model, with its ceiling and floor rows below "
                 "('–': not measured for that row, or, for memory kept, a model no better than blind even with the "
                 "cue in sight: not ranked).")
    report.heading("Ranking per metric")
    for line in _ranking_text(ranks):
        report.paragraph(line)
    figure = table.rename(columns={"row": "algorithm"})
    report.figure(plots.plot_interval_estimates(figure, ctx.out_dir / "figures" / "leaderboard.png", metrics=metrics,
                                                algorithms=order, xlabel="value"),
                  caption="Each metric's value with its 95 % CI, models then ceilings and floors.")
    return report.write()
