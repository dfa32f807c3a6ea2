"""Report of ablation_conditioning (App. J.2, Table 6): frame-stack vs cross-attention history conditioning of the
EDM world model on the scripted Breakout expert's data, with paired bootstrap CIs over clips."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from reports.ablations import (banners, difference_table, error_curves, frames_grid, load_items, measured,
                               metrics_table, resamples_of, runs_section, settings_section, wm_summary, wm_unavailable)
from reports.builder import Report
from reports.common import ReportContext, format_hours, read_result
from reports.decision import decision_section
from slurm.launcher import RunSpec

PAPER_TABLE6 = pd.DataFrame([  # App. J.4, Table 6: CS:GO and motorway driving, 122M / 184M-parameter models
    {"method": "DIAMOND frame-stack", "CS:GO FID": 9.6, "CS:GO FVD": 34.8, "CS:GO LPIPS": 0.107, "Driving FID": 16.7,
     "Driving FVD": 80.3, "Driving LPIPS": 0.058, "frames/s": 7.4, "parameters": "122M"},
    {"method": "DIAMOND cross-attention", "CS:GO FID": 11.6, "CS:GO FVD": 81.4, "CS:GO LPIPS": 0.125,
     "Driving FID": 35.2, "Driving FVD": 299.9, "Driving LPIPS": 0.119, "frames/s": 2.5, "parameters": "184M"}])


def build_conditioning_report(ctx: ReportContext, grid: Sequence[Sequence[RunSpec]], arms: Mapping[str, str],
                              reference_key: str, history: int) -> tuple[Path, Path]:
    """Table 6's columns for frame-stack and cross-attention, paired CIs. The suite hands in its stages
    ([dataset], [models, judges], [evaluations, decision measurements]), its arms (key -> label: the conditionings,
    then any --models entrant), the reference arm's key and L."""
    specs = [s for stage in grid for s in stage]
    done = [s for s in specs if (s.run_dir / "result.json").is_file()]
    models = [s for s in grid[1] if s.entry == "ablations.static_wm:run"]
    evals = [s for s in grid[2] if s in done and s.entry == "ablations.arms:evaluate_world_model"]
    decisions = [s for s in grid[2] if s in done and s.entry == "ablations.static_decision:run"]
    if not evals:
        raise FileNotFoundError(f"no finished evaluation under {ctx.runs_dir}; run the suite first.")
    items = {}
    for spec in evals:
        (item,) = load_items(spec, {})
        seed = int(read_result(Path(spec.kwargs["model_dir"]))["seed"])
        item.label = f"{arms[item.row['key']]} s{seed}"
        items[(item.row["key"], seed)] = (spec, item)
    all_items = [it for _, it in items.values()]
    resamples, metrics = resamples_of(all_items), measured(all_items)
    out = ctx.out_dir
    report = Report(f"Ablation: frame-stack vs cross-attention conditioning, L = {history} (App. J.2, Table 6; "
                    f"profile {ctx.profile})", out)
    banners(report, ctx, len(done), [s for s in specs if s not in done])
    seeds = sorted({seed for _, seed in items})
    pairs = [(s, items[(reference_key, s)][1],
              [it for (h, t), (_, it) in items.items() if t == s and h != reference_key])
             for s in seeds if (reference_key, s) in items]
    pairs = [(s, reference, others) for s, reference, others in pairs if others]
    report.heading("Summary")
    if not pairs:
        report.paragraph(f"No seed has finished evaluations of {arms[reference_key]} and another arm; the comparison "
                         "needs both.")
    for seed, reference, others in pairs:
        cost = "; ".join(f"{it.label}: {it.row['sample_rate_hz']:.3g} frames/s, {it.result['num_parameters']:,} "
                         "parameters" for it in (reference, *others))
        report.paragraph(wm_summary([reference, *others], reference, resamples, f"Seed {seed}")
                         + f" Sampling cost and size ({reference.result['device']}): {cost}.")
    added = [label for key, label in arms.items() if key.startswith("model-")]
    if added:
        report.paragraph(f"Added world models (--models): {', '.join(added)}, each trained on the same data and "
                         f"schedule with the frame-stack arm's L = {history} frames and actions, and measured with its "
                         "own sampler (docs/plugins.md).")
    unavailable = wm_unavailable(all_items)
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
                     caption=f"Each arm − {arms[reference_key]} on the same clips (paired bootstrap CI).")
    report.table(PAPER_TABLE6, "paper_table6", caption="The paper's Table 6 (DIAMOND rows) on CS:GO and motorway "
                 "driving with much larger models: other data, so only the ordering of the two arms is comparable.",
                 float_fmt="{:.3g}")
    report.heading("Generated clips")
    first_seed = [items[(h, seeds[0])] for h in arms if (h, seeds[0]) in items]
    report.figure(frames_grid([item for _, item in first_seed], out / "figures" / "frames.png"),
                  caption="Real held-out clip (top) and the same clip generated by each arm.")
    curves = error_curves([(spec, [item]) for spec, item in first_seed], out / "figures" / "errors.png")
    if curves:
        report.figure(curves, caption="Open-loop MSE against real frames per step (band: 95 % CI over rollouts).")
    decision_section(report, [(f"{arms[s.group]} s{s.kwargs['seed']}", read_result(s.run_dir)) for s in decisions]
                     or [(f"{arms[s.group]} s{s.kwargs['seed']}", {"decision": {"skipped": "not measured yet"}})
                         for s in models if s in done],
                     arm_of={f"{arms[s.group]} s{s.kwargs['seed']}": arms[s.group] for s in decisions})
    report.heading("Training")
    rows = []
    for spec in models:
        if spec in done:
            r = read_result(spec.run_dir)
            rows.append({"model": spec.name, "updates": r["train_steps"], "batch size": r["batch_size"],
                         "train loss": r["train_loss"], "test loss": r["test_loss"], "parameters": r["num_parameters"],
                         "train time": format_hours(r["train_time_s"]), "device": r["device"]})
    report.table(pd.DataFrame(rows), "training", caption="Denoiser training on the same data and schedule.",
                 float_fmt="{:.4g}")
    settings_section(report, [s for s in models if s in done], ctx.profile)
    runs_section(report, specs, done)
    return report.write()
