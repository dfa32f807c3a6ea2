"""Report figures: interval estimates (Fig. 2), performance profiles (Fig. 6), per-game bars,
error-vs-horizon curves and rollout image grids (Fig. 3).

Figures are built on `matplotlib.figure.Figure` objects rendered by Agg, never through pyplot's
global state, so plotting works headless and from several threads. Each function writes one PNG
atomically and returns its path.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rliable import plot_utils

from diamond.run.io import atomic_write_bytes
from evaluation.aggregate import tidy_hns
from evaluation.atari import GAMES

DPI = 150
METRIC_LABELS = {"mean": "Mean", "median": "Median", "iqm": "IQM", "optimality_gap": "Optimality Gap"}
POINT_ONLY_SUFFIX = " (means only)"
SYMLOG_TICKS = (-5, -2, -1, -0.5, 0, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500)


def _save(fig: Figure, path: str | Path) -> Path:
    """Render with Agg and write atomically, so a report never embeds a half-written image."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"Plot path {path} must end in .png; every plot is written as a PNG.")
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return atomic_write_bytes(path, buffer.getvalue())


def _colors(names: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    return dict(zip(names, sns.color_palette("colorblind", n_colors=max(len(names), 1))))


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs column(s) {missing}; the table has {list(df.columns)}.")
    if df.empty:
        raise ValueError(f"{what} got an empty table.")


def _pick(present: Sequence[str], wanted: Sequence[str] | None, what: str) -> list[str]:
    present = list(pd.unique(pd.Series(present)))
    if wanted is None:
        return present
    unknown = [w for w in wanted if w not in present]
    if unknown:
        raise ValueError(f"{what} {unknown} not in the table; present: {present}.")
    return list(wanted)


def plot_interval_estimates(aggregates: pd.DataFrame, path: str | Path, metrics: Sequence[str] = ("mean", "iqm"),
                            algorithms: Sequence[str] | None = None,
                            xlabel: str = "Human Normalized Score") -> Path:
    """One panel per metric, one row per algorithm: CI bar and point estimate (the paper's Figure 2).

    Input: `aggregate.aggregate_metrics` output. Algorithms without CI are drawn as a hollow diamond.
    """
    return _save(interval_figure(aggregates, metrics, algorithms, xlabel), path)


def interval_figure(aggregates: pd.DataFrame, metrics: Sequence[str] = ("mean", "iqm"),
                    algorithms: Sequence[str] | None = None, xlabel: str = "Human Normalized Score") -> Figure:
    """The figure of `plot_interval_estimates`, unsaved."""
    _require(aggregates, ["algorithm", "metric", "value", "ci_low", "ci_high"], "plot_interval_estimates")
    metrics = _pick(aggregates["metric"], metrics, "Metric(s)")
    algorithms = _pick(aggregates["algorithm"], algorithms, "Algorithm(s)")
    colors = _colors(algorithms)
    fig = Figure(figsize=(3.2 * len(metrics), 0.45 * len(algorithms) + 1.2), layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        rows = aggregates[aggregates["metric"] == metric].set_index("algorithm")
        for y, algorithm in enumerate(algorithms):
            if algorithm not in rows.index:
                continue
            r, c = rows.loc[algorithm], colors[algorithm]
            if np.isfinite(r["ci_low"]) and np.isfinite(r["ci_high"]):
                ax.barh(y, r["ci_high"] - r["ci_low"], left=r["ci_low"], height=0.6, color=c, alpha=0.75)
                ax.vlines(r["value"], y - 0.3, y + 0.3, color="black", linewidth=1.5)
            else:
                ax.plot(r["value"], y, marker="D", markersize=7, markerfacecolor="none", markeredgecolor=c,
                        markeredgewidth=2, linestyle="none")
        ax.set_title(METRIC_LABELS.get(metric, metric))
        _pad_x(ax)
        ax.grid(True, axis="x", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_yticks(range(len(algorithms)), algorithms)
    axes[0].invert_yaxis()
    fig.supxlabel(xlabel)
    shown = aggregates[aggregates["metric"].isin(metrics) & aggregates["algorithm"].isin(algorithms)]
    if not np.isfinite(shown[["ci_low", "ci_high"]].to_numpy(np.float64)).all():
        fig.text(0.01, -0.02, "hollow diamond: point estimate, no per-run scores (no CI)", fontsize=8)
    return fig


def _pad_x(ax) -> None:
    """Leave room on both sides of the data: a bar starting at 0 pins the axis there (a sticky edge), which cut
    markers at 0 in half; a panel whose values are all equal gets a unit-wide window."""
    ax.use_sticky_edges = False
    ax.margins(x=0.08)
    ax.autoscale_view()
    low, high = ax.get_xlim()
    if high - low < 1e-9:
        ax.set_xlim(low - 0.5, high + 0.5)


def plot_performance_profiles(profiles: pd.DataFrame, path: str | Path,
                              algorithms: Sequence[str] | None = None) -> Path:
    """Fraction of runs above each HNS threshold with CI bands (the paper's Figure 6), drawn by rliable.

    Input: `aggregate.performance_profiles` output. Algorithms without CI are dashed, labelled '(means only)'.
    """
    _require(profiles, ["algorithm", "tau", "fraction", "ci_low", "ci_high"], "plot_performance_profiles")
    algorithms = _pick(profiles["algorithm"], algorithms, "Algorithm(s)")
    curves, cis, styles, taus = {}, {}, {}, None
    for algorithm in algorithms:
        rows = profiles[profiles["algorithm"] == algorithm].sort_values("tau")
        if taus is None:
            taus = rows["tau"].to_numpy(np.float64)
        elif not np.array_equal(taus, rows["tau"].to_numpy(np.float64)):
            raise ValueError(f"Profiles use different tau grids ({algorithm!r} differs from {algorithms[0]!r}).")
        has_ci = bool(np.isfinite(rows[["ci_low", "ci_high"]].to_numpy(np.float64)).all())
        label = algorithm if has_ci else algorithm + POINT_ONLY_SUFFIX
        curves[label] = rows["fraction"].to_numpy(np.float64)
        styles[label] = "solid" if has_ci else "dashed"
        if has_ci:
            cis[label] = rows[["ci_low", "ci_high"]].to_numpy(np.float64).T
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    plot_utils.plot_performance_profiles(curves, taus, performance_profile_cis=cis, ax=ax, linestyles=styles,
                                         colors=dict(zip(curves, _colors(algorithms).values())),
                                         xlabel=r"Human Normalized Score ($\tau$)",
                                         ylabel=r"Fraction of runs with score $> \tau$", legend=True,
                                         legendsize="medium", labelsize="large", ticklabelsize="medium")
    return _save(fig, path)


def plot_per_game(scores: pd.DataFrame, path: str | Path, algorithms: Sequence[str] | None = None) -> Path:
    """Per-game HNS (mean over seeds, whiskers = min..max over seeds) of each algorithm, human level at 1.

    Input: a tidy score table (algorithm, game, [seed], score), e.g. our runs concatenated with
    `baselines.table1()` or `baselines.published_runs()`.
    """
    table = tidy_hns(scores)
    algorithms = _pick(table["algorithm"], algorithms, "Algorithm(s)")
    table = table[table["algorithm"].isin(algorithms)]
    games = [g for g in GAMES if g in set(table["game"])]
    stats = table.groupby(["algorithm", "game"])["hns"].agg(["mean", "min", "max"])
    colors = _colors(algorithms)
    width = 0.8 / len(algorithms)
    fig = Figure(figsize=(max(6.0, 0.45 * len(games) * max(1.0, len(algorithms) / 3)), 4.5))
    ax = fig.subplots()
    x = np.arange(len(games))
    for i, algorithm in enumerate(algorithms):
        s = stats.loc[algorithm].reindex(games)
        err = np.vstack([s["mean"] - s["min"], s["max"] - s["mean"]])
        ax.bar(x + (i - (len(algorithms) - 1) / 2) * width, s["mean"], width, yerr=err, capsize=1.5,
               color=colors[algorithm], label=algorithm, error_kw={"linewidth": 0.8})
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="human")
    ax.set_yscale("symlog", linthresh=1.0)
    low, high = min(stats["min"].min(), 0.0), max(stats["max"].max(), 1.0)
    ticks = [t for t in SYMLOG_TICKS if low <= t <= high]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_ylim(bottom=low - 0.05)
    ax.set_xticks(x, games, rotation=60, ha="right")
    ax.set_ylabel("Human Normalized Score (symlog)")
    ax.set_xlim(-0.6, len(games) - 0.4)
    ax.legend(fontsize="small", ncols=min(len(algorithms) + 1, 6), loc="lower left", bbox_to_anchor=(0.0, 1.01))
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def plot_error_vs_horizon(curves: pd.DataFrame, path: str | Path, x: str = "step", hue: str = "setting",
                          value: str = "value", metric: str = "metric", logx: bool = False,
                          logy: bool = False) -> Path:
    """Compounding error: one line per setting over rollout step, one panel per metric, optional CI band.

    Input: tidy rows (setting, step, value) with optional `metric` (one panel each) and ci_low/ci_high.
    """
    _require(curves, [x, hue, value], "plot_error_vs_horizon")
    panels = list(pd.unique(curves[metric])) if metric in curves.columns else [None]
    settings = list(pd.unique(curves[hue]))
    colors = _colors([str(s) for s in settings])
    has_ci = {"ci_low", "ci_high"} <= set(curves.columns)
    fig = Figure(figsize=(4.8 * len(panels), 3.8))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        rows = curves if panel is None else curves[curves[metric] == panel]
        for setting in settings:
            r = rows[rows[hue] == setting].sort_values(x)
            if r.empty:
                continue
            ax.plot(r[x], r[value], color=colors[str(setting)], label=str(setting), linewidth=1.6)
            if has_ci:
                ax.fill_between(r[x], r["ci_low"], r["ci_high"], color=colors[str(setting)], alpha=0.2)
        ax.set_xlabel(x)
        ax.set_ylabel(value if panel is None else str(panel))
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    # outside the panels, right of the last one: inside, it hid the curves' start (where they differ most)
    axes[-1].legend(fontsize="small", title=hue, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    return _save(fig, path)


def _as_hwc(label: str, frames: np.ndarray) -> np.ndarray:
    """Accept [T,3,H,W] or [T,H,W,3] uint8 frames and return [T,H,W,3]."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4:
        raise ValueError(f"Rollout {label!r} must be a uint8 array [T,3,H,W] or [T,H,W,3]; "
                         f"got dtype {frames.dtype} and shape {frames.shape}.")
    if frames.shape[-1] == 3:
        return frames
    if frames.shape[1] == 3:
        return frames.transpose(0, 2, 3, 1)
    raise ValueError(f"Rollout {label!r} has shape {frames.shape}; expected 3 channels in axis 1 or 3.")


def plot_rollout_grid(rollouts: Mapping[str, np.ndarray], times: Sequence[int], path: str | Path,
                      time_labels: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Image grid, rows = settings (e.g. 'EDM n=1', 'DDPM n=10'), columns = frames at `times` (Figure 3).

    `times` index axis 0 of every rollout; `time_labels` (default 't=<time>') title the columns.
    """
    if not rollouts or not len(times):
        raise ValueError("plot_rollout_grid needs at least one rollout and one time index.")
    grids = {label: _as_hwc(label, frames) for label, frames in rollouts.items()}
    for label, frames in grids.items():
        bad = [t for t in times if not 0 <= int(t) < len(frames)]
        if bad:
            raise ValueError(f"Time index(es) {bad} out of range for rollout {label!r} of {len(frames)} frames.")
    time_labels = [f"t={t}" for t in times] if time_labels is None else list(time_labels)
    if len(time_labels) != len(times):
        raise ValueError(f"{len(time_labels)} time labels for {len(times)} time indices.")
    fig = Figure(figsize=(1.1 * len(times) + 1.2, 1.1 * len(grids) + 0.4))
    axes = fig.subplots(len(grids), len(times), squeeze=False)
    for i, (label, frames) in enumerate(grids.items()):
        for j, t in enumerate(times):
            ax = axes[i, j]
            ax.imshow(frames[int(t)], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(time_labels[j], fontsize=9)
            if j == 0:
                ax.set_ylabel(label, fontsize=9, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return _save(fig, path)


def plot_sampler_errors(table: pd.DataFrame, path: str | Path, panels: Mapping[str, str],
                        labels: Mapping[str, str] | None = None) -> Path:
    """Error against cost of each sampler: W2 / data std (log scale) over NFE, one marker per n, one panel per
    starting distribution (`panels`: init -> title). Input: `evaluation.exact_denoiser.exact_denoiser_table`."""
    _require(table, ["init", "sampler", "num_steps", "nfe", "w2"], "plot_sampler_errors")
    samplers = list(pd.unique(table["sampler"]))
    labels = dict(labels or {})
    colors = _colors(samplers)
    fig = Figure(figsize=(4.6 * len(panels), 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (init, title) in zip(axes, panels.items()):
        for sampler in samplers:
            r = table[(table["init"] == init) & (table["sampler"] == sampler)].sort_values("nfe")
            ax.plot(r["nfe"], r["w2"], marker="o", markersize=3, linewidth=1.4, color=colors[sampler],
                    label=labels.get(sampler, sampler))
        ax.set_yscale("log")
        ax.set_xlabel("NFE (network evaluations per frame)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_ylabel("W2(sample, data) / data std")
    axes[-1].legend(fontsize="small", loc="upper right")
    return _save(fig, path)


def plot_learning_curves(metrics: pd.DataFrame, path: str | Path, reference: Mapping[str, Mapping[str, float]]) -> Path:
    """Evaluation return against env steps, one panel per game, one line per seed, on the returns' own scale;
    horizontal lines: the reference returns `reference[game][name]` (the measured controls), one style each."""
    _require(metrics, ["game", "seed", "env_steps", "eval/return"], "learning curves")
    games = list(dict.fromkeys(metrics["game"]))
    cols = min(3, len(games))
    rows = (len(games) + cols - 1) // cols
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows))
    for i, game in enumerate(games):
        ax = fig.add_subplot(rows, cols, i + 1)
        df = metrics[(metrics["game"] == game) & metrics["eval/return"].notna()]
        for seed, run in df.groupby("seed"):
            ax.plot(run["env_steps"], run["eval/return"], marker="o", ms=3, label=f"seed {seed}")
        styles = (("grey", "--"), ("black", ":"), ("tab:olive", "-."), ("tab:cyan", (0, (5, 1, 1, 1))))  # not seeds' colours
        for (key, value), (colour, style) in zip(reference.get(game, {}).items(), styles * 4):
            if value is not None and np.isfinite(value):
                ax.axhline(value, color=colour, ls=style, lw=1.2, label=key)
        ax.set_title(game)
        ax.set_xlabel("env steps")
        ax.set_ylabel("return")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_diagnostics(metrics: pd.DataFrame, path: str | Path) -> Path:
    """Per-epoch diagnostics against env steps, one line per game (seeds averaged): world model MSE over
    copy-last-frame, R_ψ's reward AUROC (runs that logged it), imagined minus real reward per step, policy
    entropy."""
    panels = {"diag/wm_over_copy": "world model / copy-last MSE (held-out)",
              "diag/reward_auroc": "R_ψ reward AUROC (held-out)",
              "reward_gap": "imagined - real reward per step", "actor_critic/entropy": "policy entropy"}
    if "diag/reward_auroc" not in metrics:  # runs made before it was logged
        del panels["diag/reward_auroc"]
    df = metrics.copy()
    if {"imagination/reward_mean", "collect/reward_rate"} <= set(df):
        df["reward_gap"] = df["imagination/reward_mean"] - df["collect/reward_rate"]
    fig = Figure(figsize=(4.2 * len(panels), 3.2))
    for i, (key, title) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), i + 1)
        if key in df:
            for game, g in df[df[key].notna()].groupby("game", sort=False):
                curve = g.groupby("env_steps")[key].mean()
                ax.plot(curve.index, curve.values, marker=".", label=game)
        if key == "diag/wm_over_copy":
            ax.axhline(1.0, color="grey", ls="--", lw=1)
        if key == "diag/reward_auroc":
            ax.axhline(0.5, color="grey", ls="--", lw=1)
            imagined = "diag/imagined_reward_auroc"
            for game, g in (df[df[imagined].notna()].groupby("game", sort=False) if imagined in df else ()):
                curve = g.groupby("env_steps")[imagined].mean()  # runs that logged it: R_ψ on imagined frames
                ax.plot(curve.index, curve.values, ls=":", marker="x", label=f"{game}, imagined")
        if key == "reward_gap":
            ax.axhline(0.0, color="grey", ls="--", lw=1)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("env steps")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
