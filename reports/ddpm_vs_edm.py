"""Report of `ablation_ddpm_vs_edm` (§5.1, Figure 3): imagined-trajectory grid, per-step error against the real
continuation and drift (no real continuation needed) per arm and n, the paper's finding tested on the numbers,
Table-6-style clip metrics, training losses and settings.

The suite (ablations/ddpm_vs_edm.py) hands in its runs, arm by arm, and names the two comparisons: the paradigm
pair (Figure 3: EDM vs DDPM on equal terms) and the chain pair (EDM with one vs two chained predictions)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from evaluation import plots
from evaluation.wm_protocol import COPY_SETTING, REAL_SETTING, error_table_times
from reports.builder import Report
from reports.decision import decision_section
from reports.common import (ReportContext, completion_banner, flatten, format_ci, format_hours, profile_banner,
                            read_config, read_result)
from slurm.launcher import RunSpec

SHORT_HORIZON = 5  # "short-horizon error": mean over t = 1..5, where a model must beat copying the last frame
DRIFT = "nn_mse"  # the drift measure the finding is read from (evaluation/drift.py)
DRIFT_LABELS = {"nn_mse": "distance to the nearest real frame", "static_mse": "error on never-changing pixels"}
SETTINGS = {"paradigm": "diffusion.paradigm", "sampler (rollouts)": "diffusion.sampler",
            "chained predictions per segment": "diffusion.train_chain", "DDPM x0 quantised every step":
            "diffusion.ddpm.quantize_each_step", "denoiser channels": "denoiser.channels",
            "denoiser depths": "denoiser.depths", "cond dim": "denoiser.cond_dim",
            "bottleneck attention": "denoiser.bottleneck_attention", "history length L": "diffusion.num_history",
            "batch size": "training.batch_size", "learning rate": "denoiser_optim.lr",
            "warm-up steps": "denoiser_optim.warmup_steps"}


@dataclass(frozen=True)
class ArmRuns:
    """The runs (one per seed) of one arm of the study, labelled as the report shows it."""

    label: str
    specs: tuple[RunSpec, ...]


def load_errors(arms: Sequence[ArmRuns], results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Per-step errors (and drift, when measured) of every finished run, with arm label and seed; the baselines
    (copy, real continuation) keep their setting as label."""
    tables = []
    for arm in arms:
        for spec in arm.specs:
            if spec.name not in results:
                continue
            table = pd.read_csv(spec.run_dir / results[spec.name]["rollouts"]["errors_file"])
            table.insert(0, "seed", results[spec.name]["seed"])
            baseline = table["setting"].isin([COPY_SETTING, REAL_SETTING])
            table.insert(0, "arm", np.where(baseline, table["setting"], arm.label))
            tables.append(table)
    return pd.concat(tables, ignore_index=True)  # baseline rows of runs from the same contexts average to themselves


def mean_curves(errors: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per (arm, n, step); the CIs over rollouts are kept only when there is one seed."""
    measures = [m for m in ("mse", "psnr", *DRIFT_LABELS) if m in errors]
    one_seed = errors["seed"].nunique() == 1
    values = measures + [f"{m}_ci_{b}" for m in measures for b in ("low", "high") if one_seed and m != "psnr"]
    return errors.groupby(["arm", "num_steps", "nfe", "step"], as_index=False, sort=False)[values].mean()


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
    """A mean over rollouts with its 95 % CI (NaN bounds when there is none)."""

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
    ns = sorted(set(curves.loc[curves["arm"] == edm, "num_steps"])
                & set(curves.loc[curves["arm"] == ddpm, "num_steps"]))
    lo, hi = ns[0], ns[-1]
    e_lo, e_hi = estimate(curves, edm, lo, horizon, measure), estimate(curves, edm, hi, horizon, measure)
    d_lo, d_hi = estimate(curves, ddpm, lo, horizon, measure), estimate(curves, ddpm, hi, horizon, measure)
    floor = estimate(curves, REAL_SETTING, 0, horizon, measure) if REAL_SETTING in present else None
    checks = {f"(a) at n = {lo} {ddpm} drifts more than {edm} ({d_lo} vs {e_lo})": d_lo.above(e_lo),
              f"(b) {ddpm} drifts more at n = {lo} than at n = {hi} ({d_lo} vs {d_hi})": d_lo.above(d_hi),
              f"(c) {edm} at n = {lo} drifts no more than at n = {hi} ({e_lo} vs {e_hi})": not e_lo.above(e_hi)}
    held = all(checks.values())
    text = (f"Test of the paper's finding on the {DRIFT_LABELS[measure]} at t = {horizon} (mean over rollouts "
            "[95 % CI]; 'more' means non-overlapping intervals): "
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


def drift_multiples(curves: pd.DataFrame, order: Sequence[str], horizon: int, measure: str = DRIFT) -> str:
    """Each arm's drift at the horizon per n as a multiple of the real frames' (the floor); '' without a floor."""
    if REAL_SETTING not in set(curves["arm"]) or measure not in curves:
        return ""
    floor = estimate(curves, REAL_SETTING, 0, horizon, measure).value
    if floor <= 0:
        return ""
    arms = [a for a in order if a in set(curves["arm"])]
    per_arm = [f"{arm} " + ", ".join(f"n = {n}: ×{estimate(curves, arm, n, horizon, measure).value / floor:.3g}"
                                     for n in sorted(set(curves.loc[curves["arm"] == arm, "num_steps"])))
               for arm in arms]
    return (f"At t = {horizon} the {DRIFT_LABELS[measure]}, as a multiple of the real frames' ({floor:.3g}), is: "
            + "; ".join(per_arm) + ".")


def summary_text(curves: pd.DataFrame, order: Sequence[str], pair: tuple[str, str], chain: tuple[str, str],
                 horizon: int) -> list[str]:
    """The generated summary, one paragraph each: short-horizon skill against copying and error growth, drift,
    the paper's finding, the effect of chained training."""
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
    paragraphs = [" ".join(parts), drift_multiples(curves, order, horizon), finding(curves, pair, horizon)[0]]
    if all(a in present for a in chain) and DRIFT in curves:
        one, two = chain
        diffs = [f"n = {n}: {estimate(curves, two, n, horizon, DRIFT)} vs {estimate(curves, one, n, horizon, DRIFT)}"
                 for n in ns]
        paragraphs.append(f"Chained training ({two} vs {one}, same paradigm), drift at t = {horizon}: "
                          + "; ".join(diffs) + ".")
    return [p for p in paragraphs if p]


def rollout_grid(arms: Sequence[ArmRuns], results: dict[str, dict[str, Any]], path: Path) -> tuple[Path, bool]:
    """Figure 3: rows real, then each arm × n (decreasing n), columns = time; rollout 0 of each arm's first seed.
    Returns the figure and whether every run started from the same real context."""
    rows: dict[str, np.ndarray] = {}
    times, starts = None, []
    for arm in arms:
        spec = next((s for s in arm.specs if s.name in results), None)
        if spec is None:
            continue
        result = results[spec.name]
        with np.load(spec.run_dir / result["rollouts"]["frames_file"]) as frames:
            times = frames["times"].tolist()
            starts.append(frames["starts"][0])
            rows.setdefault("real", frames["real"][0])
            for n in sorted(result["num_steps_list"], reverse=True):
                rows[f"{arm.label} n={n}"] = frames[f"n={n}"][0]
    same_start = all(np.array_equal(s, starts[0]) for s in starts)
    return plots.plot_rollout_grid(rows, list(range(len(times))), path, time_labels=[f"t={t}" for t in times]), \
        same_start


def _tidy(curves: pd.DataFrame, measure: str) -> pd.DataFrame:
    renamed = curves.rename(columns={measure: "value", f"{measure}_ci_low": "ci_low", f"{measure}_ci_high": "ci_high"})
    return renamed[["arm", "num_steps", "step", "value", *(c for c in ("ci_low", "ci_high") if c in renamed)]]


def curve_figures(curves: pd.DataFrame, measure: str, name: str, out: Path, per_figure: int = 3) -> list[Path]:
    """`measure` vs step, log x: panels per n (arms + baselines; at most `per_figure` panels per figure, so they
    stay legible on a page), then one figure with a panel per arm (every n + baselines)."""
    tidy = _tidy(curves, measure)
    is_base = tidy["arm"].isin([COPY_SETTING, REAL_SETTING])
    base, models = tidy[is_base], tidy[~is_base]
    if measure == "mse":
        base = base[base["arm"] == COPY_SETTING]  # the real continuation has error 0
    label = "MSE" if measure == "mse" else measure
    ns, arms = list(pd.unique(models["num_steps"])), list(pd.unique(models["arm"]))
    paths = []
    for i in range(0, len(ns), per_figure):
        chunk = ns[i : i + per_figure]
        part = models[models["num_steps"].isin(chunk)]
        tidy_n = pd.concat([part.assign(metric=[f"{label}, n={n}" for n in part["num_steps"]], setting=part["arm"])]
                           + [base.assign(metric=f"{label}, n={n}", setting=base["arm"]) for n in chunk],
                           ignore_index=True)
        paths.append(plots.plot_error_vs_horizon(tidy_n, out / f"{name}_per_n_{i // per_figure + 1}.png", logx=True))
    per_arm = pd.concat([models.assign(metric=[f"{label}, {a}" for a in models["arm"]],
                                       setting=[f"n={n}" for n in models["num_steps"]])]
                        + [base.assign(metric=f"{label}, {a}", setting=base["arm"]) for a in arms], ignore_index=True)
    paths.append(plots.plot_error_vs_horizon(per_arm, out / f"{name}_per_arm.png", logx=True))
    return paths


def clip_table(arms: Sequence[ArmRuns], results: dict[str, dict[str, Any]]) -> tuple[pd.DataFrame, set[str]]:
    """Table-6-style metrics per run and n, and the reasons any feature network was unavailable."""
    rows, reasons = [], set()
    for arm in arms:
        for spec in (s for s in arm.specs if s.name in results):
            r = results[spec.name]
            for clip in r["clips"].values():
                reasons.update(f"{k}: {v}" for k, v in clip["unavailable"].items())
                rows.append({"arm": arm.label, "seed": r["seed"], "n": clip["num_steps"], "NFE": clip["nfe"],
                             "clips": clip["num_clips"], "MSE": clip["mse"], "PSNR": clip["psnr"],
                             "SSIM": clip["ssim"], "FID": clip["fid"], "FVD": clip["fvd"], "LPIPS": clip["lpips"],
                             "frames/s": clip["sample_rate_hz"]})
    return pd.DataFrame(rows), reasons


def expert_return(data: dict[str, Any]) -> str:
    """The expert's mean return over the full games in the dataset, or why there is none."""
    if data.get("expert_mean_return") is None:
        return "– (the dataset holds no complete game: collect more frames to measure it)"
    return f"{data['expert_mean_return']:.1f} ({data.get('num_full_games', '?')} full games)"


def build_report(ctx: ReportContext, dataset: RunSpec, arms: Sequence[ArmRuns], *, paradigm_pair: tuple[str, str],
                 chain_pair: tuple[str, str]) -> tuple[Path, Path]:
    """<report dir>/report.md + report.pdf from the suite's finished run folders."""
    specs = [s for arm in arms for s in arm.specs]
    finished = [s for s in specs if (s.run_dir / "result.json").is_file()]
    missing = [s for s in [dataset, *specs] if not (s.run_dir / "result.json").is_file()]
    if dataset in missing or not finished:
        raise FileNotFoundError(f"no finished dataset and world-model runs under {ctx.runs_dir}; run the suite first.")
    data = read_result(dataset.run_dir)
    results = {s.name: read_result(s.run_dir) for s in finished}
    horizon = min(r["rollouts"]["horizon"] for r in results.values())
    curves = mean_curves(load_errors(arms, results))
    curves = curves[curves["step"] <= horizon]
    order = [a.label for a in arms]
    times = error_table_times(horizon)

    out = ctx.out_dir
    report = Report(f"Ablation: DDPM vs EDM diffusion world models (§5.1, Figure 3; profile {ctx.profile})", out)
    for text in (profile_banner(ctx.profile), completion_banner(len(finished) + 1, missing)):
        if text:
            report.banner(text)
    requested = max(r["rollouts"]["horizon_requested"] for r in results.values())
    if horizon < requested:
        report.banner(f"Rollouts were capped at t = {horizon} (asked: {requested}): no held-out real trajectory "
                      "is longer, and every generated frame is compared with a real one.")
    report.heading("Summary")
    for paragraph in summary_text(curves, order, paradigm_pair, chain_pair, horizon):
        report.paragraph(paragraph)

    first = results[finished[0].name]
    report.heading("Setup")
    setup = pd.DataFrame([
        ("game", data["game"]), ("dataset frames (agent steps)", data["num_steps"]),
        ("dataset episodes (life-loss episodes)", data["num_episodes"]),
        ("expert mean return (full games)", expert_return(data)),
        ("random policy mean return", "–" if data.get("random_mean_return") is None
         else f"{data['random_mean_return']:.1f}"),
        ("held-out episodes / steps", f"{first['dataset']['test_episodes']} / {first['dataset']['test_steps']}"),
        ("updates per world model (batch size)", f"{first['train_steps']} ({first['batch_size']})"),
        ("rollouts per setting, horizon", f"{first['rollouts']['num_rollouts']}, t = {horizon}"),
        ("denoising steps n", ", ".join(map(str, first["num_steps_list"]))),
        ("denoiser parameters", first["num_parameters"]),
    ], columns=["quantity", "value"]).astype({"value": str})
    report.table(setup, "setup", caption="The static dataset is played by the scripted RAM-reading Breakout expert "
                 "(ablations/breakout_expert.py), standing in for the paper's unpublished expert agent.")
    edm, ddpm = paradigm_pair
    report.paragraph(f"Arms: {', '.join(order)}. {edm} and {ddpm} differ in the paradigm only (and each samples "
                     f"with its own sampler); both make one prediction per training segment, as in Algorithm 1. "
                     f"{chain_pair[1]} is {chain_pair[0]} trained with two chained predictions per segment (the "
                     "released main branch), which separates the effect of chained training from the paradigm's. "
                     "DDPM samples as the released ddpm branch: ancestral steps with x0 clipped to [-1, 1], the final "
                     "frame quantised to 8 bits. Rollouts are open loop from the same real contexts (L frames of "
                     "held-out episodes) with the real actions, so every generated frame has a real counterpart; "
                     "each n starts from the same noise stream.")

    report.heading("Imagined trajectories (Figure 3)")
    grid, same_start = rollout_grid(arms, results, out / "figures" / "rollout_grid.png")
    report.figure(grid, caption="Row 'real': the real continuation; other rows: imagined frames, arm × n. "
                  "t = 0 is the common last real frame." + ("" if same_start else
                                                            " Warning: the runs started from different contexts."))

    report.heading("Error against the real continuation")
    for path in curve_figures(curves, "mse", "error_vs_horizon", out / "figures"):
        report.figure(path, caption="MSE (pixels in [0, 1]) between imagined and real frames per step (band: 95 % "
                      "CI over rollouts, one seed); the copy baseline repeats the last real frame.")
    report.table(short_horizon(curves, order), "short_horizon", caption=f"Mean MSE over t = 1..{SHORT_HORIZON}, "
                 "where the real continuation is still the right answer: a model that has learned the dynamics beats "
                 "copying the last real frame.", float_fmt="{:.4g}")

    drift = [m for m in DRIFT_LABELS if m in curves]
    if drift:
        report.heading("Drift without the real continuation")
        report.paragraph("Each imagined frame's MSE to its nearest neighbour among real frames of the training "
                         "episodes (evaluation/drift.py; the rollouts start from and continue into held-out "
                         "episodes), and the MSE on the pixels identical in every one of those real frames "
                         "(walls, borders). A frame that stays a Breakout screen stays close to some real frame; the "
                         "real continuation gives the floor.")
        for path in curve_figures(curves, DRIFT, "drift", out / "figures"):
            report.figure(path, caption=f"{DRIFT_LABELS[DRIFT].capitalize()} per step (band: 95 % CI over "
                          "rollouts).")

    report.heading(f"Error and drift at t = {', '.join(map(str, times))}")  # the wide tables, on landscape pages
    report.table(at_times(curves, "mse", times, order), "error_at_t", caption="Error against the real "
                 "continuation (MSE), mean over rollouts [95 % CI]. Once an imagined ball takes another path than the "
                 "real one this error measures the game's chaos as much as the model; the drift does not need the "
                 "real continuation.")
    for measure in drift:
        report.table(at_times(curves, measure, times, order), f"drift_{measure}",
                     caption=f"Drift: {DRIFT_LABELS[measure]} (MSE), mean over rollouts [95 % CI].")

    report.heading("Clip metrics (Table 6 protocol)")
    clips, reasons = clip_table(arms, results)
    clip = next(iter(first["clips"].values()))
    report.table(clips, "clip_metrics", caption=f"{clip['clip_len']}-frame clips conditioned on {clip['context']} real "
                 "frames (the model uses its last L) and the real actions. frames/s: sequential generation, batch 1, "
                 "on the run's device.", float_fmt="{:.4g}")
    if reasons:
        report.paragraph("Not computed: " + "; ".join(sorted(reasons)) + ".")

    label_of = {s.name: arm.label for arm in arms for s in arm.specs}
    decision_section(report, [(f"{label_of[name]} s{r['seed']}", r) for name, r in results.items()])
    report.heading("Training")
    training = pd.DataFrame([{"arm": label_of[name], "seed": r["seed"], "updates": r["train_steps"],
                              "train loss": r["train_loss"], "test loss": r["test_loss"],
                              "train time": format_hours(r["train_time_s"]),
                              "eval time": format_hours(r["eval_time_s"]), "device": r["device"]}
                             for name, r in results.items()])
    report.table(training, "training", caption="Final training and held-out losses. EDM's loss is Eq. 7 "
                 "(preconditioned target), DDPM's the ε-prediction MSE: not comparable across paradigms.",
                 float_fmt="{:.4g}")
    configs = {label_of[s.name]: flatten(read_config(s.run_dir)) for s in finished}
    settings = pd.DataFrame([{"setting": label, **{arm: str(c.get(key, "–")) for arm, c in configs.items()}}
                             for label, key in SETTINGS.items()])
    report.table(settings, "settings", caption=f"Read back from each run's config.yaml. The warm-up is linear over the "
                 f"first steps of the {first['train_steps']} updates.")
    return report.write()
