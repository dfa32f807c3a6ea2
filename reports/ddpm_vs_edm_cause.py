"""Why EDM drifts at n >= 2, measured (a section of the Figure 3 report, reports/ddpm_vs_edm.py).

Three measurements per arm, read from the runs (ablations/static_wm.py):
- the held-out denoising error at each noise level the sampler visits (evaluation/sigma_curve.py), inputs made as
  the sampler meets them (Gaussian noise only: sampling never adds offset noise);
- n = 2 against n = 1. Euler's last step to sigma = 0 returns D(x; sigma_min); n = 1 calls D once, at sigma_max,
  and n = 2's grid is (sigma_max, sigma_min, 0), so its frame is D(x'; sigma_min) with
  x' = D(x; sigma_max) + (sigma_min / sigma_max) (x - D(x; sigma_max)): the n = 1 frame (moved by 4e-4 of the
  noise at the released grid) passed through D once more at sigma_min. The pair isolates that one call;
- rollouts of the same model at n = 3 with the last noise level raised (ablations/ddpm_vs_edm.SIGMA_MIN_VARIANTS).
The conclusion is generated from these numbers; each 'more' is a non-overlapping pair of seed-union intervals.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from diamond.models.diffusion.paradigms import c_out, c_skip, effective_sigma
from diamond.run.io import atomic_write_text
from evaluation import plots
from reports.builder import Report
from reports.common import flatten, format_ci, read_config
from reports.ddpm_vs_edm_text import DRIFT, DRIFT_LABELS, Estimate, clip_at_zero, estimate, reached

BASE_STEPS = (1, 2)  # n = 2 is n = 1 plus one denoiser call at sigma_min


Causes = dict[str, tuple[Path, dict[str, Any]]]  # model run name -> (its measurement run's folder, result)


def sigma_rows(arms: Sequence[Any], causes: Causes) -> pd.DataFrame:
    """arm, seed, sigma, mse, mean_shift of every model whose sigma curve was measured."""
    rows = []
    for arm in arms:
        for spec in (s for s in arm.specs if s.name in causes):
            r = causes[spec.name][1]
            rows += [{"arm": arm.label, "seed": r["seed"], **row} for row in r["sigma_curve"].get("rows", [])]
    return pd.DataFrame(rows, columns=["arm", "seed", "sigma", "mse", "mean_shift"])


def _over_seeds(table: pd.DataFrame, keys: list[str], value: str, low: str, high: str) -> pd.DataFrame:
    """Mean over seeds, with the union of the per-seed intervals (low, high columns; the values themselves when
    the per-seed rows have no interval)."""
    return table.groupby(keys, as_index=False, sort=False).agg(value=(value, "mean"), ci_low=(low, "min"),
                                                               ci_high=(high, "max"))


def variant_curves(arms: Sequence[Any], causes: Causes) -> pd.DataFrame:
    """The sampler variants' drift per (arm, variant, step): mean over seeds [union of the seeds' CIs]."""
    tables = []
    for arm in arms:
        for spec in (s for s in arm.specs if s.name in causes):
            run_dir, r = causes[spec.name]
            if r.get("variants_file"):
                tables.append(pd.read_csv(run_dir / r["variants_file"]).assign(arm=arm.label))
    if not tables:
        return pd.DataFrame(columns=["arm", "setting", "num_steps", "step", "value", "ci_low", "ci_high"])
    curves = _over_seeds(pd.concat(tables, ignore_index=True), ["arm", "setting", "num_steps", "step"], DRIFT,
                         f"{DRIFT}_ci_low", f"{DRIFT}_ci_high")
    return clip_at_zero(curves, ["ci_low"])


def _config(arm: Any, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec = next(s for s in arm.specs if s.name in results)
    return flatten(read_config(spec.run_dir))


def last_step_table(arms: Sequence[Any], results: dict[str, dict[str, Any]], sigmas: pd.DataFrame,
                    curves: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Per EDM arm: the preconditioning at sigma_min, D's held-out error and mean shift there, and the drift of
    n = 1 and n = 2 at `horizon` (n = 2 = n = 1's frame plus one call of D at sigma_min)."""
    rows = []
    for arm in arms:
        if not any(s.name in results for s in arm.specs):
            continue
        cfg = _config(arm, results)
        if cfg.get("diffusion.paradigm") != "edm" or not set(BASE_STEPS) <= set(reached(curves, arm.label, horizon)):
            continue
        s_min, offset, s_data = (float(cfg[f"diffusion.edm.{k}"]) for k in ("sigma_min", "sigma_offset_noise",
                                                                             "sigma_data"))
        tilde = effective_sigma(torch.tensor(s_min, dtype=torch.float64), offset)
        at = sigmas[(sigmas["arm"] == arm.label) & ((sigmas["sigma"] - s_min).abs() < 1e-9 * max(s_min, 1.0))]
        one, two = (estimate(curves, arm.label, n, horizon, DRIFT) for n in BASE_STEPS)
        rows.append({"arm": arm.label, "σ_offset": offset, "σ_min": s_min, "σ~(σ_min)": float(tilde),
                     "c_skip": float(c_skip(tilde, s_data)), "c_out": float(c_out(tilde, s_data)),
                     "D error at σ_min": format_ci(at["mse"].mean(), at["mse"].min(), at["mse"].max(), "{:.3g}"),
                     "mean shift": format_ci(at["mean_shift"].mean(), at["mean_shift"].min(), at["mean_shift"].max(),
                                             "{:+.3g}"),
                     f"drift n=1, t={horizon}": str(one), f"drift n=2, t={horizon}": str(two),
                     "n=2 ÷ n=1": two.value / one.value if one.value > 0 else math.nan,
                     "n=2 drifts more": "yes" if two.above(one) else "no",
                     "_mse": at["mse"].mean(), "_shift": at["mean_shift"].mean(), "_more": two.above(one)})
    return pd.DataFrame(rows)


def variant_table(variants: pd.DataFrame, curves: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Per arm and variant: its drift at `horizon`, the released sampler's at the same n, and n = 1's; whether the
    variant drifts less than the released sampler, and more than n = 1 (non-overlapping seed-union intervals)."""
    rows = []
    for r in variants[variants["step"] == horizon].to_dict("records"):
        arm, n = r["arm"], int(r["num_steps"])
        if not {1, n} <= set(reached(curves, arm, horizon)):
            continue
        mine, base, one = Estimate(r["value"], r["ci_low"], r["ci_high"]), *(
            estimate(curves, arm, k, horizon, DRIFT) for k in (n, 1))
        rows.append({"arm": arm, "variant": r["setting"], "n": n, "drift": str(mine), "released sampler": str(base),
                     "n=1": str(one), "less than released": "yes" if base.above(mine) else "no",
                     "more than n=1": "yes" if mine.above(one) else "no", "_base_more": base.above(one)})
    return pd.DataFrame(rows)


def single_call_text(sigmas: pd.DataFrame, curves: pd.DataFrame, horizon: int) -> list[str]:
    """Per EDM-like arm with a sigma curve: is D on real inputs well behaved at every level (error falling with
    sigma, small mean shift), beside how much more n = 3 drifts than n = 1?"""
    parts = []
    for arm, rows in sigmas.groupby("arm", sort=False):
        ns = reached(curves, arm, horizon)
        if not {1, 3} <= set(ns):
            continue
        curve = rows.groupby("sigma")[["mse", "mean_shift"]].mean().sort_index()
        falling = bool((curve["mse"].diff().dropna() >= 0).all())
        one, three = (estimate(curves, arm, n, horizon, DRIFT) for n in (1, 3))
        trend = "rises monotonically" if falling else "is not monotone"
        parts.append(f"{arm}: on held-out real inputs D's error {trend} "
                     f"with σ ({curve['mse'].iloc[0]:.3g} at σ = {curve.index[0]:.3g}, {curve['mse'].iloc[-1]:.3g} at "
                     f"σ = {curve.index[-1]:.3g}) and its mean shift stays within "
                     f"±{curve['mean_shift'].abs().max():.2g}; "
                     f"n = 3 drifts {'more' if three.above(one) else 'no more'} than n = 1 at t = {horizon} "
                     f"({three} vs {one}).")
    return parts


def conclusion(table: pd.DataFrame, vt: pd.DataFrame, horizon: int, offset_pair: tuple[str, str] | None,
               single: Sequence[str] = ()) -> str:
    """What the numbers support about the EDM n >= 2 drift, and nothing more."""
    parts = [] if not table.empty else ["No EDM arm has both n = 1 and n = 2 rollouts and a sigma curve: the last "
                                        "step's effect cannot be isolated here."]
    table = table[table["_mse"].notna()] if not table.empty else table  # an arm whose measurement is unfinished
    for r in table.to_dict("records"):
        parts.append(f"{r['arm']} (σ_offset = {r['σ_offset']:g}): at σ_min = {r['σ_min']:g} the preconditioning sees "
                     f"σ~ = {r['σ~(σ_min)']:.3g}, so c_skip = {r['c_skip']:.3f} and c_out = {r['c_out']:.3g}; D moves "
                     f"a clean held-out frame by MSE {r['_mse']:.3g} (mean pixel shift {r['_shift']:+.3g}); n = 2 "
                     f"drifts {'more' if r['_more'] else 'no more'} than n = 1 at t = {horizon} "
                     f"(×{r['n=2 ÷ n=1']:.3g}).")
    by_arm = table.set_index("arm") if not table.empty else pd.DataFrame()
    if offset_pair is not None and set(offset_pair) <= set(by_arm.index):
        zero, released = (by_arm.loc[a] for a in offset_pair)
        ratio = released["_mse"] / max(zero["_mse"], 1e-12)
        if released["_more"] and not zero["_more"]:
            parts.append(f"The EDM n ≥ 2 drift goes with offset noise: with the released 0.3 the one extra call of D "
                         f"at σ_min changes a clean frame ×{ratio:.3g} as much as without it, and n = 2 drifts more "
                         "than n = 1; without offset noise D at σ_min is nearly the identity (c_skip ≈ 1, c_out ≈ "
                         "σ_min) and n = 2 drifts no more than n = 1. Offset noise makes the preconditioning assume "
                         "σ~ ≈ σ_offset at every σ, while the sampler's input at σ_min holds no offset: the network's "
                         "correction of noise that is not there is fed back into the next step's history.")
        elif released["_more"] and zero["_more"]:
            parts.append(f"Both offset settings drift more at n = 2 than at n = 1, so offset noise is not the whole "
                         f"cause (D's error at σ_min: ×{ratio:.3g} with offset 0.3).")
        elif not released["_more"] and not zero["_more"]:
            parts.append(f"Neither offset setting drifts more at n = 2 than at n = 1 at t = {horizon}; the one call "
                         "at σ_min does not cause a drift here.")
        else:
            parts.append("Only the zero-offset model drifts more at n = 2 than at n = 1: offset noise does not "
                         "explain the drift here.")
    parts += list(single)
    if vt.empty:
        return " ".join(parts)
    name = lambda rows: ", ".join(f"{r['arm']} {r['variant']}" for r in rows.to_dict("records"))  # noqa: E731
    removed = vt[vt["_base_more"] & (vt["more than n=1"] == "no")]
    helped = vt[(vt["less than released"] == "yes") & ~vt.index.isin(removed.index)]
    above = int((vt["more than n=1"] == "yes").sum())
    if not removed.empty:
        parts.append(f"Drift removed (no more than n = 1, where the released sampler drifts more): {name(removed)}.")
    if not helped.empty:
        parts.append(f"Less drift than the released sampler at the same n, but not removed: {name(helped)}.")
    if removed.empty and helped.empty:
        parts.append(f"None of the {len(vt)} sampler variants (table above) drifts less than the released sampler at "
                     f"its n; {above} of them drift more than n = 1. Neither the last noise level nor the starting "
                     "noise accounts for the drift at n ≥ 3 here.")
    return " ".join(parts)


def drift_cause_section(report: Report, figures: Path, arms: Sequence[Any], results: dict[str, dict[str, Any]],
                        causes: Causes, curves: pd.DataFrame, horizon: int,
                        offset_pair: tuple[str, str] | None) -> None:
    """The section: what each noise level does to a clean frame, the n = 2 vs n = 1 pair and the sigma_min variants."""
    sigmas = sigma_rows(arms, causes)
    if sigmas.empty:
        return
    report.heading("Why EDM drifts at n ≥ 2: what each denoising step does")
    report.paragraph("Euler's last step returns D(x; σ_min). n = 1 calls D once, at σ_max; n = 2's grid is (σ_max, "
                     "σ_min, 0), so its frame is the n = 1 frame (moved by σ_min / σ_max of the noise) passed through "
                     "D once more at σ_min: n = 2 against n = 1 isolates that call. Below, D's error on held-out "
                     "frames at every noise level the samplers visit, inputs made as the sampler meets them "
                     "(x0 + σ ε, no offset noise: sampling never adds it), then rollouts of the same weights with one "
                     "sampler setting changed: σ_min raised, or the paper's starting noise N(0, σ_max²) instead of the "
                     "released unit-variance noise (with which every intermediate state holds less noise than the "
                     "level D is told). Intervals: mean over seeds [seed range, or union of the seeds' 95 % CIs].")
    curve = _over_seeds(sigmas, ["arm", "sigma"], "mse", "mse", "mse")
    shift = _over_seeds(sigmas, ["arm", "sigma"], "mean_shift", "mean_shift", "mean_shift")
    for frame, name, what, logy in ((curve, "sigma_curve_mse", "D error (MSE)", True),
                                    (shift, "sigma_curve_shift", "mean shift of D", False)):
        tidy = frame.rename(columns={"sigma": "σ"}).assign(metric=what)
        path = plots.plot_error_vs_horizon(tidy, figures / f"{name}.png", x="σ", hue="arm", logx=True, logy=logy)
        report.figure(path, caption=f"{what[0].upper()}{what[1:]} on held-out frames (pixels in [0, 1]) at each noise "
                      "level the samplers visit, mean over seeds (band: seed range; every seed and level: "
                      "tables/sigma_curve.csv).")
    atomic_write_text(report.out_dir / "tables" / "sigma_curve.csv", sigmas.to_csv(index=False))  # every seed, level
    table = last_step_table(arms, results, sigmas, curves, horizon)
    if not table.empty:
        report.table(table[[c for c in table.columns if not c.startswith("_")]], "last_step",
                     caption=f"The one call at σ_min per EDM arm: its preconditioning (σ~ = √(σ_min² + σ_offset²), "
                     f"Eq. 9-12 with the released offset), D's error and mean shift on clean held-out frames there, "
                     f"and the {DRIFT_LABELS[DRIFT]} at t = {horizon} of n = 1 and n = 2.", float_fmt="{:.3g}")
    vt = variant_table(variant_curves(arms, causes), curves, horizon)
    if not vt.empty:
        report.table(vt[[c for c in vt.columns if not c.startswith("_")]], "sampler_variants",
                     caption=f"{DRIFT_LABELS[DRIFT].capitalize()} at t = {horizon}: the same weights with one sampler "
                     "setting changed (same contexts and noise as the main rollouts at that n), beside the released "
                     "sampler at the same n and n = 1.")
    report.paragraph(conclusion(table, vt, horizon, offset_pair, single_call_text(
        sigmas[sigmas["arm"].isin(set(table["arm"]) if not table.empty else set())], curves, horizon)))
