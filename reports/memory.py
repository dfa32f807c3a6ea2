"""Report of ablation_memory: the memory probe (error of the frame after k occluded context frames) for each
memory mechanism, beside the usual open-loop per-step error and drift, and what each model costs."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from evaluation import plots
from evaluation.memory import EMULATOR, LAST_VISIBLE
from evaluation.wm_protocol import COPY_SETTING, REAL_SETTING
from reports.builder import Report
from reports.common import ReportContext, format_ci, profile_banner, read_result
from slurm.launcher import RunSpec


def _finished(models: Sequence[RunSpec]) -> list[tuple[RunSpec, dict]]:
    return [(s, read_result(s.run_dir)) for s in models if (s.run_dir / "result.json").is_file()]


def probe_curves(done: Sequence[tuple[RunSpec, dict]], labels: Mapping[str, str]) -> pd.DataFrame:
    """Tidy probe rows (setting, k, value, CI) of every model, and the references once (from the first run)."""
    tables = []
    for i, (spec, result) in enumerate(done):
        probe = pd.read_csv(spec.run_dir / result["probe_file"])
        label = f"{labels[spec.group]} s{result['seed']}"
        keep = probe["setting"].eq("model") | (i == 0)
        tables.append(probe[keep].assign(setting=probe["setting"].where(~probe["setting"].eq("model"), label)))
    curves = pd.concat(tables, ignore_index=True)
    return curves.rename(columns={"mse": "value", "mse_ci_low": "ci_low", "mse_ci_high": "ci_high"})


def first_failure(curves: pd.DataFrame, setting: str, floor: float) -> int | None:
    """The smallest k whose CI reaches up to the setting's own blind floor (its error with every context frame
    hidden): from there on the model is not told apart from seeing nothing. Below the floor is where it recalls,
    so the CI's upper end is the one that reaches it (the lower end of any model that starts below its floor
    is below it already at k = 0)."""
    rows = curves[curves["setting"] == setting].sort_values("k")
    reached = rows[rows["ci_high"] >= floor]
    return int(reached["k"].iloc[0]) if len(reached) else None


def build_memory_report(ctx: ReportContext, models: Sequence[RunSpec], labels: Mapping[str, str],
                        occlusions: Sequence[int], context: int) -> tuple[Path, Path]:
    """The probe table and figure, per-step error and drift, and costs, from the finished model runs."""
    done = _finished(models)
    if not done:
        raise FileNotFoundError(f"no finished model run under {ctx.runs_dir}; run the suite first.")
    out = ctx.out_dir
    report = Report("Memory probe: frame stack, cross-attention and a recurrent-memory world model", out)
    banner = profile_banner(ctx.profile)
    if banner:
        report.banner(banner)
    report.paragraph(
        f"Each model predicts the frame after {context} real held-out frames whose last k are occluded (blanked to "
        "mid-grey, actions kept; evaluation/memory.py). All were trained on the same static Breakout expert data "
        "with such occlusions. The emulator is the ceiling (its recorded next frame: error 0); a frame-stack model "
        f"of L frames sees only blanks once k >= L, so its error there is its blind floor. k = {max(occlusions)} "
        "hides every context frame: each model's own blind floor. MSE on the [0, 1] pixel scale, one denoising "
        "step, 95 % Student-t CI over starts.")
    curves = probe_curves(done, labels)
    table = curves.pivot_table(index="k", columns="setting", values="value", sort=False)
    cells = curves.assign(cell=[format_ci(v, lo, hi, "{:.4f}") for v, lo, hi in
                                zip(curves["value"], curves["ci_low"], curves["ci_high"])])
    report.heading("Error against k")
    report.table(cells.pivot(index="k", columns="setting", values="cell").reset_index(), "probe",
                 caption=f"MSE of the frame after {context} frames, the last k occluded [95 % CI].")
    report.figure(plots.plot_error_vs_horizon(curves.assign(metric="MSE"), out / "figures" / "probe.png", x="k"),
                  caption="Probe MSE against the number k of occluded frames (band: 95 % CI over starts).")
    rows = []
    for setting in [c for c in table.columns if c not in (EMULATOR, LAST_VISIBLE)]:
        floor = float(table[setting].iloc[-1])
        rows.append({"model": setting, "MSE k=0": float(table[setting].iloc[0]), "blind floor": floor,
                     "first k at its floor": first_failure(curves, setting, floor)})
    report.table(pd.DataFrame(rows), "failure", caption="Where each model's probe error reaches its blind floor "
                 "(the first k whose CI's upper end reaches its error with every frame hidden; empty: never).")
    report.heading("Per-step error and drift (open loop, real actions, no occlusion)")
    err_rows, tidy = [], []
    for spec, result in done:
        label = f"{labels[spec.group]} s{result['seed']}"
        errors = pd.read_csv(spec.run_dir / result["rollouts"]["errors_file"])
        model = errors[~errors["setting"].isin([COPY_SETTING, REAL_SETTING])]
        tidy.append(model.assign(setting=label))
        for step, values in result["rollouts"]["error_at"][model["setting"].iloc[0]].items():
            err_rows.append({"model": label, "step": int(step), **values})
        if spec is done[0][0]:
            tidy.append(errors[errors["setting"] == COPY_SETTING])
    report.table(pd.DataFrame(err_rows), "rollout_error",
                 caption="MSE and PSNR against the real continuation; nn_mse: distance to the nearest real frame, "
                         "static_mse: error on never-changing pixels (evaluation/drift.py).")
    steps = pd.concat(tidy, ignore_index=True).rename(columns={"mse": "value", "mse_ci_low": "ci_low",
                                                               "mse_ci_high": "ci_high"})
    report.figure(plots.plot_error_vs_horizon(steps.assign(metric="MSE"), out / "figures" / "rollout_error.png",
                                              logx=True),
                  caption="Open-loop MSE per step (band: 95 % CI over rollouts).")
    report.heading("Models and cost")
    report.table(pd.DataFrame([{
        "model": f"{labels[s.group]} s{r['seed']}", "factory": r["factory"], "history": r["history"],
        "L": r["num_history"], "segment frames": r["segment_length"], "parameters": r["num_parameters"],
        "updates": r["train_steps"], "s per update": r["train_time_s"] / max(1, r["train_steps"]),
        "train min": r["train_time_s"] / 60, "probe ms per frame": 1000 * r["probe_time_s"] / r["probe_frames"],
        "test loss": r["test_loss"]} for s, r in done]), "models",
        caption="Same U-Net, data, batch and updates; times measured on the run's device.")
    return report.write()
