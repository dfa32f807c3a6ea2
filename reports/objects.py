"""Report section shared by the static world-model studies: do the game's objects survive in imagination?

Reads the `objects` entry of static runs' result.json (ablations/static_objects.py, evaluation/object_metrics.py):
per run and n, object persistence, paddle, ball and brick-count errors against the real future under the same
actions, beside the emulator (ceiling), repeat-last-frame and empty-playfield rows (docs/world-model-metrics.md)."""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from evaluation.object_metrics import METRICS
from evaluation.wm_protocol import error_table_times
from reports.builder import Report
from reports.common import format_ci

LABELS = {"persistence": "object persistence", "paddle_error": "paddle error", "ball_error": "ball error",
          "brick_count_error": "brick-count error"}
EXPLAIN = (
    "From each probe state the expert keeps playing the real game; its actions are replayed open loop in the model "
    "and the state read from each imagined frame (exact pixel detectors: bricks fitted as a sum of rendered brick "
    "templates, the ball as the brightness left after bricks and walls, the paddle as red mass on its rows) is "
    "compared with the real future's RAM state at the same step. Object persistence: the share of the objects the "
    "real game shows that the frame shows (walls, paddle, and while the real ball is in play a ball that moved: a "
    "frozen ball is a picture); 1 is best. Paddle and ball error: distance to the real one over 32 screen pixels, "
    "capped at 1, a missing object 1 (a ball where the real game has none: 1); brick-count error: |bricks seen − "
    "real|. The emulator row is the ceiling (its error is the read-out's own), repeat-last-frame keeps the objects "
    "but not the dynamics, the empty playfield keeps walls and score only (what a nearest-real-frame distance "
    "scores ×2.76 the real frames'). [95 % percentile bootstrap CI over probes: every metric is non-negative, so "
    "is every interval].")


def object_table(runs: Sequence[tuple[str, dict[str, Any]]]) -> pd.DataFrame:
    """Mean over steps and probes of each metric per run and n, then the first run's reference rows (the same
    probes in every run)."""
    references = [r["setting"] for r in runs[0][1]["rows"][:3]]
    rows = [{"model": f"{label}, {r['setting']}", **{LABELS[m]: format_ci(r[m], r[f"{m}_ci_low"], r[f"{m}_ci_high"])
                                                     for m in METRICS}}
            for label, d in runs for r in d["rows"] if r["setting"] not in references]
    rows += [{"model": r["setting"], **{LABELS[m]: format_ci(r[m], r[f"{m}_ci_low"], r[f"{m}_ci_high"])
                                        for m in METRICS}} for r in runs[0][1]["rows"][:3]]
    return pd.DataFrame(rows)


def at_times(runs: Sequence[tuple[str, dict[str, Any]]], metric: str) -> pd.DataFrame:
    """`metric` at t = 1, 10, 100, 1000 (where reached) and the horizon, mean over probes, per run and n and for the
    references."""
    references = [r["setting"] for r in runs[0][1]["rows"][:3]]
    times = error_table_times(runs[0][1]["horizon"])
    rows = []
    for i, (label, d) in enumerate(runs):
        curves = pd.DataFrame(d["curves"])
        for setting, group in curves.groupby("setting", sort=False):
            if setting in references and i > 0:
                continue
            by_step = group.set_index("step")[metric]
            rows.append({"model": setting if setting in references else f"{label}, {setting}",
                         **{f"t={t}": float(by_step[t]) for t in times}})
    ordered = [r for r in rows if r["model"] not in references] + [r for r in rows if r["model"] in references]
    return pd.DataFrame(ordered)


def object_section(report: Report, runs: Sequence[tuple[str, dict[str, Any]]], level: int = 2) -> None:
    """The section: the read-out's accuracy on real frames, the metrics per run and n beside the reference rows,
    persistence and brick-count error at a few times. `runs`: (label, result.json); runs without object metrics
    are named and skipped."""
    report.heading("Object fidelity: walls, paddle, ball, bricks", level)
    skipped = [label for label, r in runs if "rows" not in r.get("objects", {})]
    measured = [(label, r["objects"]) for label, r in runs if "rows" in r.get("objects", {})]
    if skipped:
        report.paragraph("Not measured yet: " + ", ".join(skipped) + ".")
    if not measured:
        return
    first = measured[0][1]
    acc = first["readout_accuracy"]
    report.paragraph(
        f"{first['num_probes']} probe states, {first['horizon']} steps each. {EXPLAIN} The read-out on the real "
        f"futures' {acc['frames']:.0f} frames against their RAM (the ceiling of every metric): walls seen "
        f"{acc['walls']:.3f}, paddle within 6 pixels {acc['paddle']:.3f}, ball presence {acc['ball_presence']:.3f}, "
        f"ball within 6 pixels {acc['ball_position']:.3f}, bricks {acc['bricks']:.4f}, brick count exact "
        f"{acc['brick_count_exact']:.3f} (mean error {acc['brick_count_error']:.3f} bricks).")
    report.table(object_table(measured), "object_metrics", caption="Object metrics per model and n, mean over "
                 "steps and probes [95 % bootstrap CI over probes], then the reference rows on the same probes.")
    for metric in ("persistence", "brick_count_error"):
        report.table(at_times(measured, metric), f"object_{metric}_at_t", caption=f"{LABELS[metric].capitalize()} "
                     "at a few steps, mean over probes.", float_fmt="{:.3g}")
