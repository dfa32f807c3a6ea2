"""Does an agent learn? Per-game returns against the random policy measured under the same protocol, and the
per-epoch diagnostics of each run (metrics.jsonl) gathered into tidy tables for the report.

The random baseline is measured, not taken from Table 1: each run plays the uniform random policy on the same
evaluation envs and seeds as its agent (result.json `random_returns`), so both sides have a CI and share the
protocol (episode cap, no-ops, full games).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from diamond.io import read_jsonl

DIAG_KEYS = ("diag/wm_mse", "diag/copy_last_mse", "diag/wm_over_copy", "diag/reward_tp", "diag/reward_fp",
             "diag/reward_fn", "diag/end_tp", "diag/end_fp", "diag/end_fn", "imagination/reward_mean",
             "collect/reward_rate", "imagination/end_rate", "collect/end_rate", "actor_critic/entropy",
             "eval/return", "diag/reward_p_event", "diag/reward_p_nonevent", "diag/end_p_event",
             "diag/end_p_nonevent")


def cluster_bootstrap_mean(per_seed: Sequence[Sequence[float]], reps: int = 2_000, seed: int = 0
                           ) -> tuple[float, float, float]:
    """Mean return over seeds and episodes with a 95 % two-level percentile bootstrap CI: resample seeds, then
    episodes within each resampled seed. With few seeds this is wider than pooling episodes, which would treat
    the episodes of one trained agent as independent agents."""
    groups = [np.asarray(g, float) for g in per_seed if len(g)]
    if not groups:
        raise ValueError("no episode returns to bootstrap")
    point = float(np.mean([g.mean() for g in groups]))
    rng = np.random.default_rng(seed)
    means = np.empty(reps)
    for r in range(reps):
        chosen = rng.integers(len(groups), size=len(groups))
        means[r] = np.mean([rng.choice(groups[i], size=len(groups[i])).mean() for i in chosen])
    low, high = np.percentile(means, [2.5, 97.5])
    return point, float(low), float(high)


def beats_random(results: pd.DataFrame, reps: int = 2_000) -> pd.DataFrame:
    """One row per game: the agent's and the measured random policy's mean return with 95 % CIs (two-level
    bootstrap over seeds and episodes), and whether the agent's CI lies wholly above the random one."""
    rows = []
    for game, runs in results.groupby("game", sort=False):
        agent = cluster_bootstrap_mean(list(runs["episode_returns"]), reps)
        random = cluster_bootstrap_mean(list(runs["random_returns"]), reps)
        rows.append({"game": game, "seeds": len(runs), "episodes": int(sum(map(len, runs["episode_returns"]))),
                     "agent": agent[0], "agent_low": agent[1], "agent_high": agent[2],
                     "random": random[0], "random_low": random[1], "random_high": random[2],
                     "above_random": agent[1] > random[2]})
    return pd.DataFrame(rows)


def run_metrics(run_dir: Path, game: str, seed: int) -> pd.DataFrame:
    """A run's metrics.jsonl as a table (one row per epoch line), tagged with its game and seed."""
    lines = [r for r in read_jsonl(Path(run_dir) / "metrics.jsonl") if isinstance(r, dict)]
    df = pd.DataFrame(lines)
    return df.assign(game=game, seed=int(seed)) if not df.empty else df


def curves(results: pd.DataFrame) -> pd.DataFrame:
    """Every finished run's per-epoch metrics, stacked (columns: game, seed, epoch, env_steps, metrics...)."""
    frames = [run_metrics(Path(r.run_dir), r.game, r.seed) for r in results.itertuples()]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


def diagnostics_table(metrics: pd.DataFrame, late_fraction: float = 0.5) -> pd.DataFrame:
    """One row per game over the second half of training (epochs past `late_fraction` of the run): world-model
    one-step MSE against copy-last-frame on held-out transitions, R_ψ precision/recall of non-zero rewards and
    terminations (counts pooled over epochs and seeds), imagined against real reward and end rates of the current
    policy, and policy entropy."""
    rows = []
    for game, df in metrics.groupby("game", sort=False):
        if "final" in df:
            df = df[df["final"].ne(True)]
        late = df[df["epoch"] > late_fraction * df["epoch"].max()]
        s = {k: late[k].dropna() for k in DIAG_KEYS if k in late}
        total = {k: float(v.sum()) for k, v in s.items() if k.endswith(("_tp", "_fp", "_fn"))}
        mean = {k: float(v.mean()) if len(v) else float("nan") for k, v in s.items()}
        g = lambda k: mean.get(k, float("nan"))  # noqa: E731
        t = lambda k: total.get(k, 0.0)  # noqa: E731
        row = {
            "game": game, "wm MSE": g("diag/wm_mse"), "copy MSE": g("diag/copy_last_mse"),
            "wm/copy": g("diag/wm_over_copy"),
            "rew prec": _ratio(t("diag/reward_tp"), t("diag/reward_tp") + t("diag/reward_fp")),
            "rew rec": _ratio(t("diag/reward_tp"), t("diag/reward_tp") + t("diag/reward_fn")),
            "rew events": t("diag/reward_tp") + t("diag/reward_fn"),
            "P(rew|rew)": g("diag/reward_p_event"), "P(rew|none)": g("diag/reward_p_nonevent"),
            "end prec": _ratio(t("diag/end_tp"), t("diag/end_tp") + t("diag/end_fp")),
            "end rec": _ratio(t("diag/end_tp"), t("diag/end_tp") + t("diag/end_fn")),
            "imag rew/step": g("imagination/reward_mean"), "real rew/step": g("collect/reward_rate"),
            "imag end/step": g("imagination/end_rate"), "real end/step": g("collect/end_rate"),
            "entropy": g("actor_critic/entropy"),
        }
        if "diag/reward_p_event" not in late:  # runs made before these were logged
            del row["P(rew|rew)"], row["P(rew|none)"]
        rows.append(row)
    return pd.DataFrame(rows)
