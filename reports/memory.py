"""Report of ablation_memory: the fraction of a hidden cue's information each memory mechanism keeps after k
frames (evaluation/memory.py), between the probe's ceiling and floor, how much each model uses its context, and
whether each beats copying the last frame before its memory is judged."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from evaluation import plots
from evaluation.memory import CEILING, FLOOR, MODEL, context_use, kept_fraction, mean_error
from evaluation.wm_protocol import COPY_SETTING
from reports.builder import Report
from reports.common import ReportContext, format_ci, profile_banner, read_result
from slurm.launcher import RunSpec


def _finished(models: Sequence[RunSpec]) -> list[tuple[RunSpec, dict]]:
    return [(s, read_result(s.run_dir)) for s in models if (s.run_dir / "result.json").is_file()]


def pooled_probes(done: Sequence[tuple[RunSpec, dict]], labels: Mapping[str, str]) -> dict[str, pd.DataFrame]:
    """{arm label: its seeds' probe rows, a `seed` column added}, in the order of `labels`."""
    tables: dict[str, list[pd.DataFrame]] = {}
    for spec, result in done:
        probe = pd.read_csv(spec.run_dir / result["probe_file"]).assign(seed=result["seed"])
        tables.setdefault(spec.group, []).append(probe)
    return {labels[g]: pd.concat(tables[g], ignore_index=True) for g in labels if g in tables}


def curves(probes: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Tidy rows (setting, metric, k, value, ci_low, ci_high): information kept and answer-block MSE of every arm
    (seeds pooled), then the ceiling and the floor (model-free: read from the first arm's probe)."""
    first = next(iter(probes.values()))
    rows = []
    for name, table, setting in [*((n, t, MODEL) for n, t in probes.items()), (CEILING, first, CEILING),
                                 (FLOOR, first, FLOOR)]:
        if setting != MODEL:
            table = table[table["seed"] == table["seed"].iloc[0]]
        rows.append(kept_fraction(table, setting).assign(setting=name, metric="information kept"))
        rows.append(mean_error(table, setting).assign(setting=name, metric="answer-block MSE"))
    return pd.concat(rows, ignore_index=True)


def separations(kept: pd.DataFrame) -> pd.DataFrame:
    """Every ordered pair of settings (models, ceiling, floor) with the k at which the first keeps more information
    than the second with non-overlapping 95 % CIs: the pairs the probe tells apart, and where."""
    by = {name: t.set_index("k") for name, t in kept.groupby("setting", sort=False)}
    rows = []
    for high, a in by.items():
        for low, b in by.items():
            ks = [int(k) for k in a.index.intersection(b.index) if a.loc[k, "ci_low"] > b.loc[k, "ci_high"]]
            if high != low and ks:
                rows.append({"keeps more": high, "than": low, "k (CIs apart)": ", ".join(map(str, ks))})
    return pd.DataFrame(rows, columns=["keeps more", "than", "k (CIs apart)"])


def answer_sentence(tidy: pd.DataFrame, models: Sequence[str], context: int) -> str:
    """Whether each model draws the cue's colour with the cue in view (k = 0): its answer-block error there against
    blind (the floor's error with no cue in sight, k = context). Information kept is defined only for a model
    below blind at k = 0; one that is not cannot show memory at any k, whatever its mechanism."""
    err = tidy[tidy["metric"] == "answer-block MSE"].set_index(["setting", "k"])
    blind = float(err.loc[(FLOOR, context), "value"])
    below = [m for m in models if err.loc[(m, 0), "ci_high"] < blind]
    above = [m for m in models if m not in below]
    text = f"Answer-block error with the cue in view (k = 0) against blind ({blind:.4f}, no cue in sight): "
    text += "; ".join(f"{m} {format_ci(*err.loc[(m, 0), ['value', 'ci_low', 'ci_high']], '{:.4f}')}" for m in models)
    if not above:
        return text + ". Every model draws the cue's colour when it sees the cue, so information kept is measured."
    return (text + f". {', '.join(above)} {'does' if len(above) == 1 else 'do'} not draw the cue's colour even with "
            "the cue in view (error not below blind): for such a model no k can show memory, and its information "
            "kept is left out (–); the probe says nothing about its mechanism until it learns the answer.")


def _cells(df: pd.DataFrame, fmt: str) -> pd.DataFrame:
    """k rows, one column per setting, `value [low, high]` cells."""
    cells = df.assign(cell=[format_ci(v, lo, hi, fmt) for v, lo, hi in zip(df["value"], df["ci_low"], df["ci_high"])])
    return cells.pivot(index="k", columns="setting", values="cell")[list(pd.unique(df["setting"]))].reset_index()


def build_memory_report(ctx: ReportContext, models: Sequence[RunSpec], labels: Mapping[str, str],
                        context: int) -> tuple[Path, Path]:
    """Information kept, answer-block error, context use, error against copying, and costs, from finished runs."""
    done = _finished(models)
    if not done:
        raise FileNotFoundError(f"no finished model run under {ctx.runs_dir}; run the suite first.")
    out = ctx.out_dir
    report = Report("Memory probe: what a world model keeps of a cue it no longer sees", out)
    banner = profile_banner(ctx.profile)
    if banner:
        report.banner(banner)
    seeds = sorted({r["seed"] for _, r in done})
    report.paragraph(
        f"The delayed-cue game (diamond/loop/memory_game.py): a cue shown for {context} frames, hidden for k frames, "
        "then "
        "an answer block in the cue's colour. Each model predicts the answer from the "
        f"{context} frames before it ({context} - k show the cue) and is scored on the answer block, the only pixels "
        "that need the past. Information kept at k = (blind - error at k) / (blind - error at 0), blind being the "
        f"floor's error with no cue in sight (k = {context}). Ceiling: the env, which knows the cue (1 at every k). "
        "Floor: a model that sees only its newest frame (0 from k = 1). All models trained on the same data, where "
        f"every k in 0..{context} occurs; one denoising step; seeds {seeds} pooled; 95 % hierarchical bootstrap CI "
        "(seeds, then starts within each seed).")
    probes = pooled_probes(done, labels)
    tidy = curves(probes)
    kept = tidy[tidy["metric"] == "information kept"]
    report.paragraph(answer_sentence(tidy, list(probes), context))
    report.heading("Information kept against k")
    report.table(_cells(kept, "{:.2f}"), "kept", caption="Fraction of the cue's information kept after k hidden "
                 "frames [95 % CI]; – where a model is no better than blind even at k = 0.")
    report.table(separations(kept), "separations", caption="The pairs the probe tells apart: the k at which the "
                 "first keeps more of the cue's information than the second, their 95 % CIs not overlapping.")
    report.figure(plots.plot_error_vs_horizon(tidy, out / "figures" / "probe.png", x="k"),
                  caption="Information kept and answer-block MSE against k (band: 95 % CI).")
    report.table(_cells(tidy[tidy["metric"] == "answer-block MSE"], "{:.4f}"), "answer_error",
                 caption="MSE on the answer block ([0, 1] pixel scale) [95 % CI].")
    report.heading("Context use: the same context showing another cue")
    use = pd.concat([context_use(t, MODEL).assign(setting=n) for n, t in probes.items()], ignore_index=True)
    report.table(_cells(use, "{:.2f}"), "context_use",
                 caption="(answer-block error with the context's cue swapped for the next cue - with the true cue) / "
                         "the two answers' distance: 1, the answer follows the cue in the context; 0, it ignores it.")
    report.paragraph(_context_sentence(use, labels.get("cross_attention"), 8))
    report.heading("Unoccluded one-step error against copying the last frame")
    rows = []
    for spec, result in done:
        at = result["rollouts"]["error_at"]
        model = next(s for s in at if s.startswith("n="))
        mse, copy = at[model]["1"]["mse"], at[COPY_SETTING]["1"]["mse"]
        rows.append({"model": f"{labels[spec.group]} s{result['seed']}", "updates": result["train_steps"],
                     "MSE step 1": mse, "copy last frame": copy, "beats copy": mse < copy})
    report.table(pd.DataFrame(rows), "vs_copy", caption="Open loop from real held-out contexts, real actions, no "
                 "hidden frame: a model's memory means something only once it beats copying the last frame.")
    report.heading("Models and cost")
    report.table(pd.DataFrame([{
        "model": f"{labels[s.group]} s{r['seed']}", "factory": r["factory"], "history": r["history"],
        "L": r["num_history"], "segment frames": r["segment_length"], "parameters": r["num_parameters"],
        "updates": r["train_steps"], "s per update": r["train_time_s"] / max(1, r["train_steps"]),
        "train min": r["train_time_s"] / 60, "probe ms per frame": 1000 * r["probe_time_s"] / r["probe_frames"],
        "test loss": r["test_loss"]} for s, r in done]), "models",
        caption="Same data, batch and updates; each model's network is its factory's (the built-in mechanisms share "
                "DIAMOND's U-Net); times measured on the run's device.")
    return report.write()


def _context_sentence(use: pd.DataFrame, label: str | None, window: int) -> str:
    """Whether cross-attention's answer follows the cue in its context while the cue is in its window but not in
    its newest frame (0 < k < L): the measurement issue 30 asks for."""
    if label is None or label not in set(use["setting"]):
        return "No cross-attention model finished."
    rows = use[(use["setting"] == label) & use["k"].between(1, window - 1)]
    used = rows[rows["ci_low"] > 0]["k"].tolist()
    values = ", ".join(f"k = {k}: {v:.2f}" for k, v in zip(rows["k"], rows["value"]))
    verdict = (f"its answer follows the cue in its context at k = {used}" if used else
               "its answer does not follow the cue in its context at any such k (every CI reaches 0): it does not "
               "use its older frames")
    return f"Cross-attention with the cue in its window but not in its newest frame ({values}): {verdict}."
