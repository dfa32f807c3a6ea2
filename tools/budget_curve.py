"""How the agent-vs-controls result moves with the update budget (issue 27): one atari100k report per budget, each
built by `run_suite.py --report-only` from runs that differ only in their update counts, merged into one table.

    python tools/budget_curve.py --point 1=docs/results/atari100k-cpu-controls --point 4=reports/x4/atari100k \
        --out docs/results/atari100k-cpu-budget

A point is `MULTIPLIER=REPORT_FOLDER`: every update count of the `cpu` profile (first epoch and later epochs, for
D_θ, R_ψ and the actor-critic) times MULTIPLIER, env steps unchanged. Each folder's tables/episodes.csv (every
evaluation episode of the agent and of each control) and tables/metrics_long.csv (per-epoch diagnostics) are read;
out/tables gets episodes.csv (the same, with a `multiplier` column), budget_vs_controls.csv (mean return with 95 %
CIs per multiplier and policy, the atari100k report's two-level bootstrap and 'learnt' rule), per_seed.csv and
final_diagnostics.csv (each run's last epoch: world model over copying, R_ψ's AUROC, policy entropy), and
out/figures/budget_curve.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from diamond.loop.config import build_config  # noqa: E402
from diamond.loop.trainer import schedule  # noqa: E402
from diamond.run.io import atomic_write_text  # noqa: E402
from evaluation.learning import CONTROLS, controls_table  # noqa: E402

FINAL = {"diag/wm_over_copy": "wm_over_copy", "diag/reward_auroc": "reward_auroc",
         "actor_critic/entropy": "entropy", "env_steps": "env_steps"}


def parse_point(text: str) -> tuple[float, Path]:
    """`MULTIPLIER=FOLDER`; one sentence naming the flag on anything else."""
    multiplier, sep, folder = text.partition("=")
    try:
        value = float(multiplier)
    except ValueError:
        value = 0.0
    if not sep or value <= 0:
        raise SystemExit(f"--point wants MULTIPLIER=REPORT_FOLDER with a positive multiplier, got {text!r}")
    for name in ("episodes.csv", "metrics_long.csv"):
        if not (Path(folder) / "tables" / name).is_file():
            raise SystemExit(f"--point {text}: {Path(folder) / 'tables' / name} is missing (build the report first)")
    return value, Path(folder)


def updates(multiplier: float, profile: str) -> dict[str, int]:
    """Whole-run update counts of each learner at `multiplier` times the profile's schedule."""
    counts = schedule(build_config(profile), eval_episode_steps=0)
    return {k: round(counts[f"{k}_update"] * multiplier) for k in ("denoiser", "reward_end", "actor_critic")}


def merge(points: list[tuple[float, Path]], reps: int, profile: str) -> dict[str, pd.DataFrame]:
    episodes = pd.concat([pd.read_csv(f / "tables" / "episodes.csv").assign(multiplier=m) for m, f in points])
    rows = []
    for m, g in episodes.groupby("multiplier"):
        counts = {f"{k}_updates": v for k, v in updates(m, profile).items()}
        rows.append(controls_table(g, reps).assign(multiplier=m, **counts))
    table = pd.concat(rows, ignore_index=True)
    per_seed = episodes.pivot_table(index=["multiplier", "game", "seed"], columns="policy", values="return",
                                    aggfunc="mean").reset_index()
    last = []
    for m, f in points:
        metrics = pd.read_csv(f / "tables" / "metrics_long.csv")
        ends = metrics.sort_values("epoch").groupby(["game", "seed"]).last().reset_index()
        last.append(ends[["game", "seed", *[k for k in FINAL if k in ends]]].rename(columns=FINAL).assign(multiplier=m))
    return {"episodes": episodes, "budget_vs_controls": table, "per_seed": per_seed,
            "final_diagnostics": pd.concat(last, ignore_index=True)}


def plot(table: pd.DataFrame, path: Path) -> Path:
    """Mean return with 95 % CI against the update multiplier, one line per policy (log2 x axis)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, policy in enumerate(("agent", *CONTROLS)):
        if policy not in table:
            continue
        t = table.dropna(subset=[policy]).sort_values("multiplier")
        x = t["multiplier"] * (1 + 0.03 * (i - 2))  # a small offset so that overlapping CIs stay readable
        low, high = (t[policy] - t[f"{policy}_low"]).to_numpy(), (t[f"{policy}_high"] - t[policy]).to_numpy()
        ax.errorbar(x.to_numpy(), t[policy].to_numpy(), yerr=[low, high],
                    marker="o", capsize=3, lw=2.5 if policy == "agent" else 1.2, label=policy)
    ax.set_xscale("log", base=2)
    points = table.drop_duplicates("multiplier").sort_values("multiplier")
    ax.set_xticks(points["multiplier"].tolist(),
                  [f"{m:g}×\n{s} seed{'s' * (s > 1)}" for m, s in zip(points["multiplier"], points["seeds"])])
    ax.set_xlabel("update budget (× the cpu profile's update counts, same env steps)")
    ax.set_ylabel("mean return (raw, full games)")
    ax.set_title(", ".join(table["game"].unique()))
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--point", action="append", required=True, help="MULTIPLIER=REPORT_FOLDER (repeatable)")
    parser.add_argument("--out", required=True, type=Path, help="folder for tables/ and figures/")
    parser.add_argument("--profile", default="cpu", help="profile whose update counts the multipliers scale (cpu)")
    parser.add_argument("--reps", type=int, default=2_000, help="bootstrap repetitions (2000)")
    args = parser.parse_args(argv)
    tables = merge([parse_point(p) for p in args.point], args.reps, args.profile)
    for name, df in tables.items():
        atomic_write_text(args.out / "tables" / f"{name}.csv", df.to_csv(index=False))
    plot(tables["budget_vs_controls"], args.out / "figures" / "budget_curve.png")
    shown = tables["budget_vs_controls"]
    print(shown[["multiplier", "agent", "agent_low", "agent_high", *[c for c in CONTROLS if c in shown], "learnt"]]
          .to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
