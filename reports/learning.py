"""The atari100k report's "Does the agent learn?" section: each game's agent against the random policy measured
under the same protocol (95 % CIs over seeds and episodes), learning curves with random and human lines, and
the per-epoch diagnostics that say which stage of Algorithm 1 works (world model, reward/end model, policy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from diamond.games import HUMAN_SCORES, RANDOM_SCORES
from diamond.io import atomic_write_text
from evaluation import learning, plots
from reports.builder import Report
from reports.common import format_ci, read_result


def _with_returns(results: pd.DataFrame) -> pd.DataFrame:
    """`results` plus the episode lists of each result.json; runs written before the random baseline existed
    have no `random_returns` and are left out of the comparison."""
    lists = [read_result(Path(d)) for d in results["run_dir"]]
    out = results.assign(episode_returns=[r.get("episode_returns") for r in lists],
                         random_returns=[r.get("random_returns") for r in lists])
    return out[out["random_returns"].notna() & out["episode_returns"].notna()]


def verdict_text(table: pd.DataFrame) -> str:
    above = table[table["above_random"]]["game"].tolist()
    n = len(table)
    if above:
        return (f"The agent beats the random policy with non-overlapping 95 % CIs on {len(above)} of {n} games "
                f"({', '.join(above)}).")
    return f"On none of the {n} games does the agent's 95 % CI lie above the random policy's."


def learning_section(report: Report, results: pd.DataFrame, out: Path, reps: int) -> None:
    """Append the section; silently nothing when no run carries the measured random baseline (older runs)."""
    runs = _with_returns(results)
    if runs.empty:
        return
    report.heading("Does the agent learn?")
    table = learning.beats_random(runs, reps)
    shown = pd.DataFrame({
        "game": table["game"], "seeds": table["seeds"], "episodes": table["episodes"],
        "agent [95 % CI]": [format_ci(a, lo, hi, "{:.1f}") for a, lo, hi in
                            zip(table["agent"], table["agent_low"], table["agent_high"])],
        "random policy [95 % CI]": [format_ci(a, lo, hi, "{:.1f}") for a, lo, hi in
                                    zip(table["random"], table["random_low"], table["random_high"])],
        "random (Table 1)": [RANDOM_SCORES.get(g, np.nan) for g in table["game"]],
        "above random": ["yes" if x else "no" for x in table["above_random"]],
    })
    report.table(shown, "agent_vs_random", float_fmt="{:.1f}",
                 caption=f"Mean return of the agent's final evaluation and of the uniform random policy on the same "
                         f"evaluation envs and seeds (full games, raw rewards). 95 % CI: two-level percentile "
                         f"bootstrap ({reps} repetitions) resampling seeds, then episodes within each seed. 'above "
                         "random': the agent's CI lies wholly above the random policy's.")
    report.paragraph(verdict_text(table))
    atomic_write_text(out / "tables" / "agent_vs_random_long.csv", table.to_csv(index=False))

    metrics = learning.curves(runs)
    if metrics.empty or "eval/return" not in metrics:
        return
    reference = {g: {"random": float(r), "human": HUMAN_SCORES.get(g, np.nan)}
                 for g, r in zip(table["game"], table["random"])}
    report.figure(plots.plot_learning_curves(metrics, out / "figures" / "learning_curves.png", reference),
                  caption="Evaluation return against environment steps (intermediate evaluations of a few episodes, "
                          "the last point: the final evaluation). Dashed: the random policy measured here; dotted: "
                          "human (Table 1).")
    atomic_write_text(out / "tables" / "metrics_long.csv", metrics.to_csv(index=False))
    diag = learning.diagnostics_table(metrics)
    report.heading("Diagnostics: which stage works")
    report.table(diag, "diagnostics", float_fmt="{:.3g}",
                 caption="Second half of training, per game (seeds pooled). World model: one-step MSE (pixels in "
                         "[-1, 1]) on real transitions collected in that epoch, before any learner trained on them, "
                         "against copying the last frame (wm/copy < 1: the model predicts dynamics). Reward/end "
                         "model (R_ψ): precision and recall of its most likely class for non-zero rewards (sign must "
                         "match) and terminations on the same held-out transitions, and, where logged, the mean "
                         "probability it gives a reward on reward and on no-reward transitions. Imagined vs real: "
                         "reward and termination per step of the current policy in imagination and in the real "
                         "environment (sign-clipped rewards); entropy: of the policy in imagination.")
    if "diag/wm_over_copy" in metrics:
        report.figure(plots.plot_diagnostics(metrics, out / "figures" / "diagnostics.png"),
                      caption="Diagnostics against environment steps, seeds averaged.")
