"""Report of `ablation_ddpm_vs_edm` (§5.1, Figure 3): imagined-trajectory grid, per-step error against the real
continuation and drift (no real continuation needed) per arm and n, the paper's finding tested on the numbers,
Table-6-style clip metrics, training losses and settings.

The suite (ablations/ddpm_vs_edm.py) hands in its runs, arm by arm, and names the two comparisons: the paradigm
pair (Figure 3: EDM vs DDPM on equal terms) and the chain pair (EDM with one vs two chained predictions)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from evaluation import plots
from evaluation.wm_protocol import COPY_SETTING, REAL_SETTING, error_table_times
from reports.builder import Report
from reports.decision import decision_section
from reports.objects import object_section
from reports.ddpm_vs_edm_text import (CLIPPED, DRIFT, DRIFT_LABELS, SHORT_HORIZON, at_times, last_steps,
                                      mean_curves, short_horizon, summary_text)
from reports.ddpm_vs_edm_cause import drift_cause_section
from reports.common import (ReportContext, completion_banner, flatten, format_hours, profile_banner,
                            read_config, read_result)
from slurm.launcher import RunSpec

TRAINING_KEYS = ("training.batch_size", "denoiser_optim.lr", "denoiser_optim.warmup_steps")  # the trainer's
SETTINGS = {"paradigm": "diffusion.paradigm", "sampler (rollouts)": "diffusion.sampler",
            "chained predictions per segment": "diffusion.train_chain", "DDPM x0 quantised every step":
            "diffusion.ddpm.quantize_each_step", "denoiser channels": "denoiser.channels",
            "denoiser depths": "denoiser.depths", "cond dim": "denoiser.cond_dim",
            "bottleneck attention": "denoiser.bottleneck_attention",
            "EDM offset noise σ_offset": "diffusion.edm.sigma_offset_noise",
            "DDPM offset noise": "diffusion.ddpm.offset_noise", "history length L": "diffusion.num_history",
            "batch size": "training.batch_size", "learning rate": "denoiser_optim.lr",
            "warm-up steps": "denoiser_optim.warmup_steps"}


@dataclass(frozen=True)
class ArmRuns:
    """The runs (one per seed) of one arm of the study, labelled as the report shows it, and their measurement runs."""

    label: str
    specs: tuple[RunSpec, ...]
    causes: tuple[RunSpec, ...] = ()  # the noise-level measurements of each run, in the same order (may be none)
    decisions: tuple[RunSpec, ...] = ()  # the decision measurements of each run, in the same order (may be none)
    objects: tuple[RunSpec, ...] = ()  # the object measurements of each run, in the same order (may be none)
    reads: tuple[str, ...] | None = None  # the config keys its model declares it reads (None: every SETTINGS key)


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


def rollout_grid(arms: Sequence[ArmRuns], results: dict[str, dict[str, Any]], path: Path,
                 max_time: int | None = None) -> tuple[Path, bool, int]:
    """Figure 3: rows real, then each arm × n (decreasing n), columns = time; rollout 0 of each arm's first seed.
    With `max_time`: columns up to it, every n; without: every column, the n rolled out that far. Returns the
    figure, whether every run started from the same real context, and the time of the last column (the kept
    times are log-spaced: a grid up to t = 120 ends at t = 100)."""
    rows: dict[str, np.ndarray] = {}
    times: list[int] = []
    starts = []
    for arm in arms:
        spec = next((s for s in arm.specs if s.name in results), None)
        if spec is None:
            continue
        result = results[spec.name]
        with np.load(spec.run_dir / result["rollouts"]["frames_file"]) as frames:
            all_times = frames["times"].tolist()
            times = [t for t in all_times if max_time is None or t <= max_time]
            starts.append(frames["starts"][0])
            rows.setdefault("real", frames["real"][0][: len(times)])
            for n in sorted(result["num_steps_list"], reverse=True):
                kept = frames[f"n={n}"][0]  # the first times, up to this n's horizon
                if len(kept) >= len(times):
                    rows[f"{arm.label} n={n}"] = kept[: len(times)]
    same_start = all(np.array_equal(s, starts[0]) for s in starts)
    grid = plots.plot_rollout_grid(rows, list(range(len(times))), path, time_labels=[f"t={t}" for t in times])
    return grid, same_start, times[-1]


def _tidy(curves: pd.DataFrame, measure: str) -> pd.DataFrame:
    renamed = curves.rename(columns={measure: "value", f"{measure}_ci_low": "ci_low", f"{measure}_ci_high": "ci_high"})
    return renamed[["arm", "num_steps", "step", "value", *(c for c in ("ci_low", "ci_high") if c in renamed)]]


def curve_figures(curves: pd.DataFrame, measure: str, name: str, out: Path, per_figure: int = 3) -> list[Path]:
    """`measure` vs step, log x and log y (DDPM's errors near 0.4 would flatten every EDM curve on a linear axis):
    panels per n (arms + baselines; at most `per_figure` panels per figure, so they stay legible on a page), then
    one figure with a panel per arm (every n + baselines)."""
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
        paths.append(plots.plot_error_vs_horizon(tidy_n, out / f"{name}_per_n_{i // per_figure + 1}.png", logx=True,
                                                 logy=True))
    per_arm = pd.concat([models.assign(metric=[f"{label}, {a}" for a in models["arm"]],
                                       setting=[f"n={n}" for n in models["num_steps"]])]
                        + [base.assign(metric=f"{label}, {a}", setting=base["arm"]) for a in arms], ignore_index=True)
    paths.append(plots.plot_error_vs_horizon(per_arm, out / f"{name}_per_arm.png", logx=True, logy=True))
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


def settings_of(arms: Sequence[ArmRuns], finished: Sequence[RunSpec]) -> pd.DataFrame:
    """One column per arm: its factory, options and the SETTINGS keys its model reads, from the first finished run."""
    done = {s.name for s in finished}
    columns = {}
    for arm in arms:
        spec = next((s for s in arm.specs if s.name in done), None)
        if spec is not None:
            config = read_config(spec.run_dir)
            flat, model = flatten(config), config.get("world_model", {})
            reads = set(SETTINGS.values()) if arm.reads is None else {*arm.reads, *TRAINING_KEYS}
            columns[arm.label] = {"world model (factory)": str(model.get("factory", "–")),
                                  "its options": str(model.get("options", {})),
                                  **{label: str(flat.get(key, "–")) if key in reads else "– (not read)"
                                     for label, key in SETTINGS.items()}}
    return pd.DataFrame(columns).rename_axis("setting").reset_index()


def expert_return(data: dict[str, Any]) -> str:
    """The expert's mean return over the full games in the dataset, or why there is none."""
    if data.get("expert_mean_return") is None:
        return "– (the dataset holds no complete game: collect more frames to measure it)"
    return f"{data['expert_mean_return']:.1f} ({data.get('num_full_games', '?')} full games)"


def build_report(ctx: ReportContext, dataset: RunSpec, judges: RunSpec, arms: Sequence[ArmRuns], *,
                 paradigm_pair: tuple[str, str] | None, chain_pair: tuple[str, str] | None,
                 offset_pair: tuple[str, str] | None = None,
                 skipped: Sequence[tuple[str, str]] = ()) -> tuple[Path, Path]:
    """<report dir>/report.md + report.pdf from the suite's finished run folders; `skipped`: (arm, reason) of each
    arm left out for a model that cannot take it."""
    specs = [s for arm in arms for s in arm.specs]
    finished = [s for s in specs if (s.run_dir / "result.json").is_file()]
    measured = [(m, c) for arm in arms for m, c in zip(arm.specs, arm.causes) if (c.run_dir / "result.json").is_file()]
    decided = [(m, d) for arm in arms for m, d in zip(arm.specs, arm.decisions) if (d.run_dir / "result.json").is_file()]
    objected = [(m, o) for arm in arms for m, o in zip(arm.specs, arm.objects) if (o.run_dir / "result.json").is_file()]
    grid = [dataset, *specs, judges, *(c for arm in arms for c in (*arm.causes, *arm.decisions, *arm.objects))]
    missing = [s for s in grid if not (s.run_dir / "result.json").is_file()]
    if dataset in missing or not finished:
        raise FileNotFoundError(f"no finished dataset and world-model runs under {ctx.runs_dir}; run the suite first.")
    data = read_result(dataset.run_dir)
    results = {s.name: read_result(s.run_dir) for s in finished}
    causes = {m.name: (c.run_dir, read_result(c.run_dir)) for m, c in measured}
    longest = min(r["rollouts"]["horizon"] for r in results.values())
    curves = mean_curves(load_errors(arms, results))
    curves = curves[curves["step"] <= longest]
    order = [a.label for a in arms]
    ends = {k: t for k, t in last_steps(curves).items() if k[0] in order}
    horizon = min(ends.values())  # the horizon every n reaches
    long_ns = sorted({n for (_, n), t in ends.items() if t == longest})
    times = sorted({*error_table_times(longest), horizon})
    seeds = {a.label: len([s for s in a.specs if s.name in results]) for a in arms}

    out = ctx.out_dir
    report = Report(f"Ablation: DDPM vs EDM diffusion world models (§5.1, Figure 3; profile {ctx.profile})", out)
    for text in (profile_banner(ctx.profile), completion_banner(len(grid) - len(missing), missing)):
        if text:
            report.banner(text)
    requested = max(r["rollouts"]["horizon_requested"] for r in results.values())
    if longest < requested:
        report.banner(f"Rollouts were capped at t = {longest} (asked: {requested}): no held-out real trajectory "
                      "is longer, and every generated frame is compared with a real one.")
    report.heading("Summary")
    for paragraph in summary_text(curves, order, paradigm_pair, chain_pair, horizon, offset_pair):
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
        ("rollouts per setting, horizon", f"{first['rollouts']['num_rollouts']}, t = {longest} for n ∈ "
         f"{{{', '.join(map(str, long_ns))}}}" + (f", t = {horizon} for the other n" if horizon < longest else "")),
        ("training seeds per arm", ", ".join(f"{a}: {k}" for a, k in seeds.items())),
        ("denoising steps n", ", ".join(map(str, first["num_steps_list"]))),
        ("denoiser parameters", first["num_parameters"]),
    ], columns=["quantity", "value"]).astype({"value": str})
    report.table(setup, "setup", caption="The static dataset is played by the scripted RAM-reading Breakout expert "
                 "(ablations/breakout_expert.py), standing in for the paper's unpublished expert agent.")
    extras = []
    if paradigm_pair is not None and set(paradigm_pair) <= set(order):
        edm, ddpm = paradigm_pair
        extras.append(f"{edm} and {ddpm} differ in the paradigm only (and each samples with its own sampler); both "
                      "make one prediction per training segment, as in Algorithm 1, and both train without offset "
                      "noise, the setting of the paper's Figure 3 (the authors, eloialonso/diamond issue #36). DDPM "
                      "samples as the released ddpm branch: ancestral steps with x0 clipped to [-1, 1], the final "
                      "frame quantised to 8 bits.")
    if offset_pair is not None and offset_pair[1] in order:
        extras.append(f"{offset_pair[1]} is {offset_pair[0]} trained with the released agent's offset noise (0.3), "
                      "which measures what the released setting changes.")
    if chain_pair is not None and chain_pair[1] in order:
        extras.append(f"{chain_pair[1]} is {chain_pair[0]} trained with two chained predictions per segment (the "
                      "released main branch), which separates the effect of chained training from the paradigm's.")
    report.paragraph(f"Arms, each named by its world model (registered name or --models label): {', '.join(order)}. "
                     + " ".join(extras) + " Rollouts are open loop from the same real contexts (L frames of "
                     "held-out episodes) with the real actions, so every generated frame has a real counterpart; "
                     "each n starts from the same noise stream.")
    if skipped:
        report.table(pd.DataFrame(skipped, columns=["arm left out", "reason"]), "arms_left_out",
                     caption="Arms that cannot apply to a model, from what it declares (docs/plugins.md): not trained, "
                             "so no finding about them is drawn for that model.")

    report.heading("Imagined trajectories (Figure 3)")
    grids = [(None, "the n rolled out that far")]
    if horizon < longest:
        grids.append((horizon, f"every n (all are rolled out to t = {horizon})"))
    for i, (max_time, which) in enumerate(grids):
        grid, same_start, last = rollout_grid(arms, results, out / "figures" / f"rollout_grid_{i + 1}.png", max_time)
        report.figure(grid, caption=f"Imagined frames to t = {last}, {which}. Row 'real': the real continuation; "
                      "other rows: arm × n "
                      "(rollout 0 of seed 0). t = 0 is the common last real frame."
                      + ("" if same_start else " Warning: the runs started from different contexts."))

    report.heading("Error against the real continuation")
    for path in curve_figures(curves, "mse", "error_vs_horizon", out / "figures"):
        report.figure(path, caption="MSE (pixels in [0, 1]) between imagined and real frames per step, mean over "
                      "seeds (band: union of the seeds' 95 % CIs over rollouts); the copy baseline repeats the last "
                      "real frame. Log-log axes. " + CLIPPED)
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
            report.figure(path, caption=f"{DRIFT_LABELS[DRIFT].capitalize()} per step, mean over seeds (band: "
                          "union of the seeds' 95 % CIs over rollouts). Log-log axes. " + CLIPPED)

    report.heading(f"Error and drift at t = {', '.join(map(str, times))}")  # the wide tables, on landscape pages
    report.table(at_times(curves, "mse", times, order), "error_at_t", caption="Error against the real "
                 "continuation (MSE), mean over seeds [union of the seeds' 95 % CIs over rollouts]; '–': not rolled "
                 "out that far. Once an imagined ball takes another path than the "
                 "real one this error measures the game's chaos as much as the model; the drift does not need the "
                 "real continuation. " + CLIPPED)
    for measure in drift:
        report.table(at_times(curves, measure, times, order), f"drift_{measure}",
                     caption=f"Drift: {DRIFT_LABELS[measure]} (MSE), mean over seeds [union of the seeds' 95 % CIs "
                     "over rollouts]. " + CLIPPED)
    drift_cause_section(report, out / "figures", arms, results, causes, curves, horizon, offset_pair)

    report.heading("Clip metrics (Table 6 protocol)")
    clips, reasons = clip_table(arms, results)
    clip = next(iter(first["clips"].values()))
    report.table(clips, "clip_metrics", caption=f"{clip['clip_len']}-frame clips conditioned on {clip['context']} real "
                 "frames (the model uses its last L) and the real actions. frames/s: sequential generation, batch 1, "
                 "on the run's device.", float_fmt="{:.4g}")
    if reasons:
        report.paragraph("Not computed: " + "; ".join(sorted(reasons)) + ".")

    label_of = {s.name: arm.label for arm in arms for s in arm.specs}
    decision_section(report, [(f"{label_of[m.name]} s{m.kwargs['seed']}", read_result(d.run_dir)) for m, d in decided]
                     or [(f"{label_of[name]} s{r['seed']}", {"decision": {"skipped": "not measured yet"}})
                         for name, r in results.items()],
                     arm_of={f"{label_of[m.name]} s{m.kwargs['seed']}": label_of[m.name] for m, _ in decided})
    object_section(report, [(f"{label_of[m.name]} s{m.kwargs['seed']}", read_result(o.run_dir)) for m, o in objected]
                   or [(f"{label_of[name]} s{r['seed']}", {}) for name, r in results.items()])
    report.heading("Training")
    training = pd.DataFrame([{"arm": label_of[name], "seed": r["seed"], "updates": r["train_steps"],
                              "train loss": r["train_loss"], "test loss": r["test_loss"],
                              "train time": format_hours(r["train_time_s"]),
                              "eval time": format_hours(r["eval_time_s"]), "device": r["device"]}
                             for name, r in results.items()])
    report.table(training, "training", caption="Final training and held-out losses. EDM's loss is Eq. 7 "
                 "(preconditioned target), DDPM's the ε-prediction MSE: not comparable across paradigms.",
                 float_fmt="{:.4g}")
    report.table(settings_of(arms, finished), "settings", caption="Read back from each run's config.yaml: the world "
                 "model (factory) and its options, then the keys it declares it reads ('– (not read)': a key this "
                 f"model ignores) and the trainer's. The warm-up is linear over the first steps of the "
                 f"{first['train_steps']} updates.")
    return report.write()
