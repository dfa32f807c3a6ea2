"""The numbers and sentences of the Figure 3 report (reports/ddpm_vs_edm.py): curves averaged over seeds with the
seeds' intervals, tables at given times, the paper's finding tested on them, and the generated summary."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from evaluation.wm_protocol import COPY_SETTING, REAL_SETTING, error_table_times
from reports.common import format_ci

SHORT_HORIZON = 5  # "short-horizon error": mean over t = 1..5, where a model must beat copying the last frame
DRIFT = "nn_mse"  # the drift measure the finding is read from (evaluation/drift.py)
DRIFT_LABELS = {"nn_mse": "distance to the nearest real frame", "static_mse": "error on never-changing pixels"}
CLIPPED = ("Intervals of these squared errors have their lower end clipped at 0: a Student-t interval over rollouts "
           "can reach below 0, the error cannot.")


def clip_at_zero(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """`columns` (lower ends of intervals of non-negative quantities) clipped at 0 (CLIPPED)."""
    present = [c for c in columns if c in table]
    return table.assign(**{c: table[c].clip(lower=0.0) for c in present})


def mean_curves(errors: pd.DataFrame) -> pd.DataFrame:
    """Per (arm, n, step): the mean over seeds of each seed's mean over rollouts, and as its interval the union of
    the seeds' 95 % CIs over rollouts (lowest low, highest high; one seed: its own CI). Two such intervals that do
    not overlap (Estimate.above) say that every seed of one arm is above every seed of the other, each beyond its
    own rollouts' spread: the between-seed spread enters every test of the report. The squared errors' lower ends
    are clipped at 0 (CLIPPED)."""
    measures = [m for m in ("mse", "psnr", *DRIFT_LABELS) if m in errors]
    agg: dict[str, str] = {m: "mean" for m in measures}
    for m in measures:
        if m != "psnr" and f"{m}_ci_low" in errors:
            agg.update({f"{m}_ci_low": "min", f"{m}_ci_high": "max"})
    curves = errors.groupby(["arm", "num_steps", "nfe", "step"], as_index=False, sort=False).agg(agg)
    return clip_at_zero(curves, [f"{m}_ci_low" for m in measures if m != "psnr"])


def last_steps(curves: pd.DataFrame) -> dict[tuple[str, int], int]:
    """(arm, n) -> the last step of its rollouts (some n stop at a shorter horizon than others)."""
    return {(a, int(n)): int(t) for (a, n), t in curves.groupby(["arm", "num_steps"], sort=False)["step"].max().items()}


def at_times(curves: pd.DataFrame, measure: str, times: Sequence[int], order: Sequence[str]) -> pd.DataFrame:
    """Rows (arm, n); one column per time: mean [95 % CI over rollouts] of `measure` (no real-continuation row for
    the error against the real continuation: it is 0)."""
    rows = []
    if measure == "mse":
        curves = curves[curves["arm"] != REAL_SETTING]
    for (arm, n, nfe), group in curves.groupby(["arm", "num_steps", "nfe"], sort=False):
        by_step = group.set_index("step")
        row: dict[str, Any] = {"arm": arm, "n": n, "NFE": nfe}
        for t in times:
            if t not in by_step.index:
                row[f"t={t}"] = "–"  # this n stopped at a shorter horizon
                continue
            r = by_step.loc[t]
            low, high = r.get(f"{measure}_ci_low", math.nan), r.get(f"{measure}_ci_high", math.nan)
            row[f"t={t}"] = format_ci(float(r[measure]), float(low), float(high), "{:.3g}")
        rows.append(row)
    table = pd.DataFrame(rows)
    rank = {label: i for i, label in enumerate([*order, COPY_SETTING, REAL_SETTING])}
    return table.sort_values(["arm", "n"], key=lambda c: c.map(rank) if c.name == "arm" else c, kind="stable",
                             ignore_index=True)


def short_horizon(curves: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """Mean MSE over t = 1..SHORT_HORIZON per (arm, n), and its ratio to copying the last real frame."""
    early = curves[(curves["step"] <= SHORT_HORIZON) & (curves["arm"] != REAL_SETTING)]
    table = early.groupby(["arm", "num_steps"], as_index=False, sort=False)["mse"].mean()
    copy = float(table.loc[table["arm"] == COPY_SETTING, "mse"].iloc[0])
    table["× copy"] = table["mse"] / copy
    table["beats copy"] = np.where(table["arm"] == COPY_SETTING, "–", np.where(table["mse"] < copy, "yes", "no"))
    rank = {label: i for i, label in enumerate([*order, COPY_SETTING])}
    table = table.sort_values(["arm", "num_steps"], key=lambda c: c.map(rank) if c.name == "arm" else c,
                              kind="stable", ignore_index=True)
    return table.rename(columns={"num_steps": "n", "mse": f"MSE t=1..{SHORT_HORIZON}"})


@dataclass(frozen=True)
class Estimate:
    """A mean (over seeds of the means over rollouts) with its interval (the union of the seeds' 95 % CIs; NaN
    bounds when there is none)."""

    value: float
    low: float
    high: float

    def above(self, other: Estimate) -> bool:
        """Higher with non-overlapping intervals (or, without intervals, simply higher)."""
        if math.isnan(self.low) or math.isnan(other.high):
            return self.value > other.value
        return self.low > other.high

    def __str__(self) -> str:
        return format_ci(self.value, self.low, self.high, "{:.3g}")


def estimate(curves: pd.DataFrame, arm: str, n: int, step: int, measure: str) -> Estimate:
    r = curves[(curves["arm"] == arm) & (curves["num_steps"] == n) & (curves["step"] == step)].iloc[0]
    return Estimate(float(r[measure]), float(r.get(f"{measure}_ci_low", math.nan)),
                    float(r.get(f"{measure}_ci_high", math.nan)))


def _span(values: Sequence[float], prefix: str = "", sep: str = "–") -> str:
    """'a' when all are equal to 3 significant digits, else 'a–b' (e.g. '×a to ×b' with prefix '×', sep ' to ')."""
    low, high = f"{prefix}{min(values):.3g}", f"{prefix}{max(values):.3g}"
    return low if low == high else f"{low}{sep}{high}"


def finding(curves: pd.DataFrame, pair: tuple[str, str], horizon: int, measure: str = DRIFT) -> tuple[str, bool | None]:
    """The paper's Figure 3 finding tested at the horizon on a drift measure, and whether it appears.

    Three checks, each on means over rollouts with 95 % CIs (non-overlapping = significant): (a) at the fewest
    steps DDPM drifts more than EDM; (b) DDPM drifts more at the fewest steps than at the most; (c) EDM at the
    fewest steps does not drift more than EDM at the most. None when an arm or the measure is missing."""
    edm, ddpm = pair
    present = set(curves["arm"])
    if edm not in present or ddpm not in present or measure not in curves:
        return f"The finding needs both {edm} and {ddpm} with the drift measure; it cannot be tested.", None
    reached = curves[curves["step"] == horizon]  # the n rolled out this far
    ns = sorted(set(reached.loc[reached["arm"] == edm, "num_steps"])
                & set(reached.loc[reached["arm"] == ddpm, "num_steps"]))
    if len(ns) < 2:
        return f"The finding needs two n of {edm} and {ddpm} at t = {horizon}; it cannot be tested there.", None
    lo, hi = ns[0], ns[-1]
    e_lo, e_hi = estimate(curves, edm, lo, horizon, measure), estimate(curves, edm, hi, horizon, measure)
    d_lo, d_hi = estimate(curves, ddpm, lo, horizon, measure), estimate(curves, ddpm, hi, horizon, measure)
    floor = estimate(curves, REAL_SETTING, 0, horizon, measure) if REAL_SETTING in present else None
    checks = {f"(a) at n = {lo} {ddpm} drifts more than {edm} ({d_lo} vs {e_lo})": d_lo.above(e_lo),
              f"(b) {ddpm} drifts more at n = {lo} than at n = {hi} ({d_lo} vs {d_hi})": d_lo.above(d_hi),
              f"(c) {edm} at n = {lo} drifts no more than at n = {hi} ({e_lo} vs {e_hi})": not e_lo.above(e_hi)}
    held = all(checks.values())
    text = (f"Test of the paper's finding on the {DRIFT_LABELS[measure]} at t = {horizon} (mean over seeds [union "
            "of the seeds' 95 % CIs over rollouts]; 'more' means non-overlapping intervals, i.e. every seed of one "
            "arm above every seed of the other): "
            + "; ".join(f"{c}: {'yes' if ok else 'no'}" for c, ok in checks.items()) + ".")
    if floor is not None:
        text += f" Real frames score {floor} on this measure (the floor)."
    verdict = ("The paper's finding appears: DDPM drifts at low n, EDM stays stable even at the fewest steps."
               if held else "The paper's finding does not appear in full here (see which checks fail above).")
    edm_worse = [n for n in ns[1:] if estimate(curves, edm, n, horizon, measure).above(e_lo)]
    if edm_worse:
        worse = ", ".join(map(str, edm_worse))
        verdict += f" Unlike the paper's Figure 3, {edm} itself drifts more at n ∈ {{{worse}}} than at n = {lo}."
    return f"{text} {verdict}", held


def reached(curves: pd.DataFrame, arm: str, horizon: int) -> list[int]:
    """The n of `arm` rolled out to `horizon`."""
    rows = curves[(curves["arm"] == arm) & (curves["step"] == horizon)]
    return sorted(int(n) for n in set(rows["num_steps"]))


def drift_multiples(curves: pd.DataFrame, order: Sequence[str], horizon: int, measure: str = DRIFT) -> str:
    """Each arm's drift at the horizon per n (those rolled out that far) as a multiple of the real frames' (the
    floor); '' without a floor."""
    if REAL_SETTING not in set(curves["arm"]) or measure not in curves:
        return ""
    floor = estimate(curves, REAL_SETTING, 0, horizon, measure).value
    if floor <= 0:
        return ""
    arms = [a for a in order if reached(curves, a, horizon)]
    per_arm = [f"{arm} " + ", ".join(f"n = {n}: ×{estimate(curves, arm, n, horizon, measure).value / floor:.3g}"
                                     for n in reached(curves, arm, horizon))
               for arm in arms]
    return (f"At t = {horizon} the {DRIFT_LABELS[measure]}, as a multiple of the real frames' ({floor:.3g}), is: "
            + "; ".join(per_arm) + ".")


def pair_text(curves: pd.DataFrame, pair: tuple[str, str], horizon: int, what: str) -> str:
    """Drift of the second arm of `pair` vs the first at every n rolled out to `horizon`; '' if one is missing."""
    one, two = pair
    ns = sorted(set(reached(curves, one, horizon)) & set(reached(curves, two, horizon)))
    if not ns or DRIFT not in curves:
        return ""
    diffs = [f"n = {n}: {estimate(curves, two, n, horizon, DRIFT)} vs {estimate(curves, one, n, horizon, DRIFT)}"
             for n in ns]
    return f"{what} ({two} vs {one}, same paradigm), drift at t = {horizon}: " + "; ".join(diffs) + "."


def summary_text(curves: pd.DataFrame, order: Sequence[str], pair: tuple[str, str] | None,
                 chain: tuple[str, str] | None,
                 horizon: int, offset: tuple[str, str] | None = None) -> list[str]:
    """The generated summary, one paragraph each: short-horizon skill against copying, error growth and structure
    at `horizon` (the horizon every n reaches), then drift and the paper's finding at `horizon` and at the longest
    horizon some n reach, and the effects of offset noise and chained training."""
    present = [a for a in order if a in set(curves["arm"])]
    if not present:
        return ["No arm finished."]
    ns = sorted(set(curves.loc[curves["arm"].isin(present), "num_steps"]))
    parts = []
    if COPY_SETTING in set(curves["arm"]):
        short = short_horizon(curves, order)
        beat = short[short["beats copy"] == "yes"]
        models = short[short["arm"] != COPY_SETTING]
        copy = float(short.loc[short["arm"] == COPY_SETTING, f"MSE t=1..{SHORT_HORIZON}"].iloc[0])
        parts.append(f"Over t = 1..{SHORT_HORIZON}, {len(beat)} of {len(models)} (arm, n) settings beat copying the "
                     f"last real frame (MSE {copy:.3g}); their error is "
                     f"{_span(list(models['× copy']), '×', ' to ')} the copy's.")
        if beat.empty:
            parts.append("No model has learned the dynamics yet, so nothing below is evidence about the paradigms.")
    t0 = error_table_times(horizon)[0]
    for arm in present:
        growth = [estimate(curves, arm, n, horizon, "mse").value / max(estimate(curves, arm, n, t0, "mse").value, 1e-12)
                  for n in ns]
        parts.append(f"{arm}: from t = {t0} to t = {horizon} the error against the real continuation grows "
                     f"{_span(growth, '×', ' to ')} over n ∈ {{{', '.join(map(str, ns))}}}.")
    if "static_mse" in curves:
        walls = {arm: [estimate(curves, arm, n, horizon, "static_mse").value for n in ns] for arm in present}
        real = (f"{estimate(curves, REAL_SETTING, 0, horizon, 'static_mse').value:.3g}"
                if REAL_SETTING in set(curves["arm"]) else "–")
        parts.append(f"Structure at t = {horizon}: the error on never-changing pixels (walls, borders) is "
                     + "; ".join(f"{arm} {_span(v)}" for arm, v in walls.items())
                     + f" over n (real frames: {real}).")
    longest = int(curves.loc[curves["arm"].isin(present), "step"].max())
    horizons = [horizon] + ([longest] if longest > horizon else [])
    paragraphs = [" ".join(parts)]
    for h in horizons:
        paragraphs += [drift_multiples(curves, order, h)] + ([finding(curves, pair, h)[0]] if pair else [])
    for comparison, what in ((offset, "Offset noise of the released agent"), (chain, "Chained training")):
        if comparison is not None and all(a in present for a in comparison):
            paragraphs += [pair_text(curves, comparison, h, what) for h in horizons]
    return [p for p in paragraphs if p]
