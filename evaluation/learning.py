"""Does an agent learn? Per-game returns against the controls measured under the same protocol, and the
per-epoch diagnostics of each run (metrics.jsonl) gathered into tidy tables for the report.

The controls are measured, not taken from Table 1: each run plays the uniform random policy and two random
policies matched to its agent's final action frequencies (i.i.d. and sticky) on the same evaluation envs and seeds
(result.json `controls`), and the suite's --controls trains each run's reward-blind twin; so every side has a CI
and shares the protocol (episode cap, no-ops, full games). Learnt = the agent's CI above every control's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from diamond.run.io import read_jsonl

DIAG_KEYS = ("diag/wm_mse", "diag/copy_last_mse", "diag/wm_over_copy", "diag/reward_tp", "diag/reward_fp",
             "diag/reward_fn", "diag/end_tp", "diag/end_fp", "diag/end_fn", "imagination/reward_mean",
             "collect/reward_rate", "imagination/end_rate", "collect/end_rate", "actor_critic/entropy",
             "eval/return", "diag/reward_p_event", "diag/reward_p_nonevent", "diag/end_p_event",
             "diag/end_p_nonevent", "diag/reward_auroc", "diag/end_auroc", "diag/imagined_reward_auroc")


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


CONTROLS = ("uniform", "matched", "sticky", "reward-blind")  # diamond/loop/controls.py; reward-blind: the twin runs


def episode_table(results: pd.DataFrame, blind: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every evaluation episode, long: (game, seed, policy, episode, return). `results` are agent runs with
    `episode_returns` and `controls` ({name: returns}; older runs: only `random_returns`, read as uniform);
    `blind` the reward-blind twins' runs (their agent's returns are that control's)."""
    rows = []
    for r in results.itertuples():
        controls = r.controls if isinstance(getattr(r, "controls", None), dict) else {"uniform": r.random_returns}
        for policy, returns in {"agent": r.episode_returns, **controls}.items():
            rows += [(r.game, int(r.seed), policy, i, float(x)) for i, x in enumerate(returns)]
    for r in (blind.itertuples() if blind is not None else ()):
        rows += [(r.game, int(r.seed), "reward-blind", i, float(x)) for i, x in enumerate(r.episode_returns)]
    return pd.DataFrame(rows, columns=["game", "seed", "policy", "episode", "return"])


def controls_table(episodes: pd.DataFrame, reps: int = 2_000) -> pd.DataFrame:
    """One row per game: the agent's and each measured control's mean return with 95 % CIs (two-level bootstrap
    over seeds, then episodes), `above_random` (the agent's CI wholly above the uniform policy's) and `learnt`
    (wholly above every control's; False while a control is unmeasured, named in `missing`)."""
    rows = []
    for game, g in episodes.groupby("game", sort=False):
        row: dict = {"game": game}
        for policy in ("agent", *CONTROLS):
            p = g[g["policy"] == policy]
            if p.empty:
                continue
            per_seed = [list(s["return"]) for _, s in p.groupby("seed")]
            mean, low, high = cluster_bootstrap_mean(per_seed, reps)
            row.update({policy: mean, f"{policy}_low": low, f"{policy}_high": high})
            if policy == "agent":
                row.update(seeds=len(per_seed), episodes=len(p))
        missing = [c for c in CONTROLS if c not in row]
        row["above_random"] = "uniform" in row and row["agent_low"] > row["uniform_high"]
        row["learnt"] = not missing and all(row["agent_low"] > row[f"{c}_high"] for c in CONTROLS)
        row["missing"] = ", ".join(missing)
        rows.append(row)
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
            "rew AUROC": g("diag/reward_auroc"), "imag rew AUROC": g("diag/imagined_reward_auroc"),
            "end prec": _ratio(t("diag/end_tp"), t("diag/end_tp") + t("diag/end_fp")),
            "end rec": _ratio(t("diag/end_tp"), t("diag/end_tp") + t("diag/end_fn")),
            "imag rew/step": g("imagination/reward_mean"), "real rew/step": g("collect/reward_rate"),
            "imag end/step": g("imagination/end_rate"), "real end/step": g("collect/end_rate"),
            "entropy": g("actor_critic/entropy"),
        }
        if "diag/reward_p_event" not in late:  # runs made before these were logged
            del row["P(rew|rew)"], row["P(rew|none)"]
        if "diag/reward_auroc" not in late:
            del row["rew AUROC"]
        if "diag/imagined_reward_auroc" not in late:
            del row["imag rew AUROC"]
        rows.append(row)
    return pd.DataFrame(rows)
