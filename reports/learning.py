"""The atari100k report's "Does the agent learn?" section: each game's agent against its controls measured under
the same protocol (95 % CIs over seeds and episodes), learning curves with the controls' lines, and the per-epoch
diagnostics that say which stage of Algorithm 1 works (world model, reward/end model, policy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from diamond.run.io import atomic_write_text
from evaluation import learning, plots
from reports.builder import Report
from reports.common import format_ci, name_key, read_result


def _with_returns(results: pd.DataFrame) -> pd.DataFrame:
    """`results` plus the episode lists of each result.json (`controls` None for runs made before it existed);
    runs written before the random baseline existed have no `random_returns` and are left out."""
    lists = [read_result(Path(d)) for d in results["run_dir"]]
    out = results.assign(episode_returns=[r.get("episode_returns") for r in lists],
                         random_returns=[r.get("random_returns") for r in lists],
                         controls=[r.get("controls") for r in lists])
    return out[out["random_returns"].notna() & out["episode_returns"].notna()]


def verdict_text(table: pd.DataFrame) -> str:
    n = len(table)
    learnt, above = table[table["learnt"]]["game"].tolist(), table[table["above_random"]]["game"].tolist()
    parts = [f"The agent's 95 % CI lies above every control's on {len(learnt)} of {n} games"
             + (f" ({', '.join(learnt)})." if learnt else ".")]
    decided = [g for g in above if g not in learnt]
    if decided:
        parts.append(f"It lies above the uniform random policy's but not above every control's on {', '.join(decided)}"
                     ": there, a screen-blind or reward-blind control does as well, so beating uniform play is not "
                     "evidence of learning.")
    missing = sorted(set(", ".join(table["missing"]).split(", ")) - {""})
    if missing:
        parts.append(f"Not measured for some games: {', '.join(missing)} (runs made before the control existed, or "
                     "the suite run without --controls); those games cannot count as learnt.")
    return " ".join(parts)


def _ci(row: dict, policy: str) -> str:
    """`mean [low, high]` of one policy in a controls_table row; '–' where it was not measured."""
    value = row.get(policy, np.nan)
    return format_ci(value, row[f"{policy}_low"], row[f"{policy}_high"], "{:.1f}") if np.isfinite(value) else "–"


def learning_section(report: Report, results: pd.DataFrame, out: Path, reps: int,
                     blind: pd.DataFrame | None = None, model: str | None = None) -> None:
    """Append the section; silently nothing when no run carries a measured control (older runs). `blind`: the
    reward-blind twins' finished runs. `model`: the world model whose runs these are, where a report has several
    (named in the headings, and in the tables' and figures' file names)."""
    runs = _with_returns(results)
    if runs.empty:
        return
    of = f" ({model})" if model else ""
    suffix = "-" + name_key(model) if model else ""
    report.heading(f"Does the agent learn?{of}")
    episodes = learning.episode_table(runs, None if blind is None or blind.empty else _with_returns(blind))
    table = learning.controls_table(episodes, reps)
    ci = lambda policy: [_ci(row, policy) for row in table.to_dict("records")]  # noqa: E731
    shown = pd.DataFrame({"game": table["game"], "seeds": table["seeds"], "agent [95 % CI]": ci("agent"),
                          **{c: ci(c) for c in learning.CONTROLS},
                          "learnt": ["yes" if x else "no" for x in table["learnt"]]})
    report.table(shown, f"agent_vs_controls{suffix}", float_fmt="{:.1f}",
                 caption=f"Mean return of the agent's final evaluation and of its controls on the same evaluation "
                         "envs and seeds (full games, raw rewards): uniform random; random with the agent's own "
                         "final action frequencies (matched), also repeating its previous action as often as the "
                         "agent does (sticky); the same agent trained with its imagined rewards shuffled "
                         f"(reward-blind). 95 % CI: two-level percentile bootstrap ({reps} repetitions) resampling "
                         "seeds, then episodes within each seed. 'learnt': the agent's CI lies wholly above every "
                         "control's. Per-episode returns: tables/episodes.csv.")
    report.paragraph(verdict_text(table))
    per_seed = episodes.pivot_table(index=["game", "seed"], columns="policy", values="return", aggfunc="mean")
    per_seed = per_seed[[p for p in ("agent", *learning.CONTROLS) if p in per_seed]].reset_index()
    report.table(per_seed, f"per_seed{suffix}", float_fmt="{:.1f}",
                 caption="Mean return per seed of the agent and of each control (the reward-blind column: that "
                         "seed's twin). A control that matches the agent on a seed explains that seed's gain.")
    atomic_write_text(out / "tables" / f"agent_vs_controls_long{suffix}.csv", table.to_csv(index=False))
    atomic_write_text(out / "tables" / f"episodes{suffix}.csv", episodes.to_csv(index=False))

    metrics = learning.curves(runs)
    if metrics.empty or "eval/return" not in metrics:
        return
    reference = {r["game"]: {c: r[c] for c in learning.CONTROLS if c in r and np.isfinite(r[c])}
                 for r in table.to_dict("records")}
    report.figure(plots.plot_learning_curves(metrics, out / "figures" / f"learning_curves{suffix}.png", reference),
                  caption="Evaluation return against environment steps (intermediate evaluations of a few episodes, "
                          "the last point: the final evaluation), on the returns' own scale. Horizontal lines: the "
                          "controls' mean returns measured here.")
    atomic_write_text(out / "tables" / f"metrics_long{suffix}.csv", metrics.to_csv(index=False))
    report.heading(f"Diagnostics: which stage works{of}")
    if not metrics.filter(like="diag/").notna().to_numpy().any():  # no epoch ran them: say why, no table of dashes
        report.paragraph(f"No epoch of these runs ran the diagnostics: they run every training.diag_every epochs, "
                         f"and the runs stopped after {int(metrics['epoch'].max())} epoch(s). Set "
                         "training.diag_every to at most the number of epochs (e.g. --set training.diag_every=1) "
                         "to measure them.")
        return
    diag = learning.diagnostics_table(metrics)
    report.table(diag, f"diagnostics{suffix}", float_fmt="{:.3g}",
                 caption="Second half of training, per game (seeds pooled). World model: one-step MSE (pixels in "
                         "[-1, 1]) on real transitions collected in that epoch, before any learner trained on them, "
                         "against copying the last frame (wm/copy < 1: the model predicts dynamics). Reward/end "
                         "model (R_ψ): precision and recall of its most likely class for non-zero rewards (sign must "
                         "match) and terminations on the same held-out transitions, and, where logged, the mean "
                         "probability it gives a reward on reward and on no-reward transitions, and the AUROC of that "
                         "probability (0.5: it cannot tell reward steps from others). "
                         + ("imag rew AUROC: the same AUROC with R_ψ scoring the world model's open-loop imagination "
                            "of those transitions (same context, same real actions); near 0.5, imagined rewards say "
                            "nothing about the actions. " if "imag rew AUROC" in diag else "")
                         + "Imagined vs real: "
                         "reward and termination per step of the current policy in imagination and in the real "
                         "environment (sign-clipped rewards); entropy: of the policy in imagination.")
    if "diag/wm_over_copy" in metrics:
        report.figure(plots.plot_diagnostics(metrics, out / "figures" / f"diagnostics{suffix}.png"),
                      caption="Diagnostics against environment steps, seeds averaged.")
