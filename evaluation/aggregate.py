"""Aggregate Atari 100k metrics with stratified bootstrap CIs, computed by rliable (Agarwal et al., 2021).

Input everywhere is a tidy table with columns algorithm, game, score and optionally seed (one row per
run and game, raw returns), the shape the suites and `baselines.published_runs()` produce. Scores are
human-normalized here (`atari.add_hns`). An algorithm with a single score per game (published
per-game means) has no run-to-run variability to resample: its metrics are point estimates with NaN
CIs and `ci_available=False`, never a zero-width interval that would look like certainty.

rliable draws its bootstrap indices from NumPy's global RNG (its `random_state` argument is not used
for resampling), so each bootstrap runs inside `seeded(seed)`, which restores the caller's RNG state.
Every algorithm is bootstrapped with the same seed, so its CI does not depend on which other
algorithms share the table.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from rliable import library as rly
from rliable import metrics as rlm
from tqdm.auto import tqdm

from evaluation.atari import GAMES, HUMAN_SCORES, add_hns

METRICS: dict[str, Callable[[np.ndarray], float]] = {
    "mean": rlm.aggregate_mean,
    "median": rlm.aggregate_median,  # median over games of the per-game mean over runs, as in the paper
    "iqm": rlm.aggregate_iqm,  # 25 % trimmed mean over all runs x games
    "optimality_gap": rlm.aggregate_optimality_gap,
}
# Bootstrap repetitions as rliable recommends: 50,000 for interval estimates (its default and README),
# 2,000 for performance profiles (its default) and probability of improvement (its README).
AGGREGATE_REPS = 50_000
PROFILE_REPS = 2_000
POI_REPS = 2_000
CONFIDENCE = 0.95
DEFAULT_TAUS = np.linspace(0.0, 8.0, 81)  # HNS thresholds of the paper's Figure 6 range
UNEQUAL_CHOICES = ("error", "truncate")
POINT_ESTIMATE_NOTE = ("one score per game (published per-game means only): point estimate without CI; "
                       "IQM and optimality gap are over game means, not over runs")


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed NumPy's global RNG (the one rliable resamples with) and restore it afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def tidy_hns(df: pd.DataFrame) -> pd.DataFrame:
    """Validate a tidy score table and return a copy with `seed` (0 where absent) and `hns` columns."""
    missing = [c for c in ("algorithm", "game", "score") if c not in df.columns]
    if missing:
        raise ValueError(f"Score table lacks column(s) {missing}; expected algorithm, game, score and "
                         f"optionally seed; it has {list(df.columns)}.")
    if df.empty:
        raise ValueError("Score table is empty.")
    out = df.copy() if "seed" in df.columns else df.assign(seed=0)
    if out["score"].isna().any():
        bad = out.loc[out["score"].isna(), ["algorithm", "game", "seed"]].head(5).to_dict("records")
        raise ValueError(f"Score table has missing scores, e.g. {bad}.")
    dup = out.duplicated(["algorithm", "game", "seed"])
    if dup.any():
        bad = out.loc[dup, ["algorithm", "game", "seed"]].head(5).to_dict("records")
        hint = "" if "seed" in df.columns else " (a table without a seed column must hold one score per game)"
        raise ValueError(f"Score table has several scores for the same (algorithm, game, seed), e.g. {bad}{hint}.")
    return add_hns(out)


def _algorithms(table: pd.DataFrame, algorithms: Sequence[str] | None) -> list[str]:
    present = list(pd.unique(table["algorithm"]))
    if algorithms is None:
        return present
    unknown = [a for a in algorithms if a not in present]
    if unknown:
        raise ValueError(f"Algorithm(s) {unknown} not in the score table; present: {present}.")
    return list(algorithms)


def _matrix(table: pd.DataFrame, algorithm: str, games: Sequence[str] | None, column: str,
            on_unequal: str) -> np.ndarray:
    if on_unequal not in UNEQUAL_CHOICES:
        raise ValueError(f"on_unequal={on_unequal!r}; valid choices: {UNEQUAL_CHOICES}.")
    _algorithms(table, [algorithm])
    rows = table[table["algorithm"] == algorithm]
    present = set(rows["game"])
    games = [g for g in GAMES if g in present] if games is None else list(games)
    lacking = [g for g in games if g not in present]
    if lacking:
        raise ValueError(f"Algorithm {algorithm!r} has no score on game(s) {lacking}.")
    per_game = {g: rows[rows["game"] == g].sort_values("seed")[column].to_numpy(np.float64) for g in games}
    counts = {g: len(v) for g, v in per_game.items()}
    n_runs = min(counts.values())
    if len(set(counts.values())) > 1:
        if on_unequal == "error":
            raise ValueError(f"Algorithm {algorithm!r} has unequal runs per game {counts}; a runs x games matrix "
                             f"needs the same number on every game (pass on_unequal='truncate' to keep the "
                             f"{n_runs} lowest seeds of each game).")
        warnings.warn(f"{algorithm}: unequal runs per game {counts}; keeping the {n_runs} lowest seeds of each game.")
    return np.stack([per_game[g][:n_runs] for g in games], axis=1)


def score_matrix(df: pd.DataFrame, algorithm: str, games: Sequence[str] | None = None,
                 normalized: bool = True, on_unequal: str = "error") -> np.ndarray:
    """The [runs, games] matrix rliable expects (HNS unless normalized=False); games in Table 1 order.

    Row i holds each game's i-th lowest seed. Unequal runs per game raise, or with
    on_unequal='truncate' keep the lowest common number of seeds per game (with a warning).
    """
    return _matrix(tidy_hns(df), algorithm, games, "hns" if normalized else "score", on_unequal)


def _aggregate_func(scores: np.ndarray) -> np.ndarray:
    return np.array([fn(scores) for fn in METRICS.values()])


def aggregate_metrics(df: pd.DataFrame, reps: int = AGGREGATE_REPS, seed: int = 0,
                      algorithms: Sequence[str] | None = None, on_unequal: str = "error",
                      confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Mean, median, IQM and optimality gap of HNS per algorithm with stratified bootstrap CIs.

    Returns one row per (algorithm, metric): value, ci_low, ci_high, n_runs (runs per game), n_games,
    ci_available and note (why a CI is missing).
    """
    table = tidy_hns(df)
    rows = []
    for algorithm in tqdm(_algorithms(table, algorithms), desc="bootstrap CIs", unit="algorithm", disable=None):
        m = _matrix(table, algorithm, None, "hns", on_unequal)
        ci_available = m.shape[0] > 1
        if ci_available:
            with seeded(seed):
                points, cis = rly.get_interval_estimates({algorithm: m}, _aggregate_func, reps=reps,
                                                         confidence_interval_size=confidence)
            value, (low, high) = points[algorithm], cis[algorithm]
        else:
            value, low, high = _aggregate_func(m), np.full(len(METRICS), np.nan), np.full(len(METRICS), np.nan)
        for i, metric in enumerate(METRICS):
            rows.append({"algorithm": algorithm, "metric": metric, "value": float(value[i]),
                         "ci_low": float(low[i]), "ci_high": float(high[i]), "n_runs": m.shape[0],
                         "n_games": m.shape[1], "ci_available": ci_available,
                         "note": "" if ci_available else POINT_ESTIMATE_NOTE})
    return pd.DataFrame(rows)


def performance_profiles(df: pd.DataFrame, taus: Sequence[float] | np.ndarray | None = None,
                         reps: int = PROFILE_REPS, seed: int = 0, algorithms: Sequence[str] | None = None,
                         on_unequal: str = "error", confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Score distributions (fraction of runs with HNS > tau) with bootstrap CIs, as in the paper's Figure 6.

    Returns one row per (algorithm, tau): fraction, ci_low, ci_high, ci_available.
    """
    taus = DEFAULT_TAUS if taus is None else np.asarray(taus, dtype=np.float64)
    table = tidy_hns(df)
    frames = []
    for algorithm in _algorithms(table, algorithms):
        m = _matrix(table, algorithm, None, "hns", on_unequal)
        ci_available = m.shape[0] > 1
        if ci_available:
            with seeded(seed):
                profiles, cis = rly.create_performance_profile({algorithm: m}, taus, reps=reps,
                                                               confidence_interval_size=confidence)
            fraction, (low, high) = profiles[algorithm], cis[algorithm]
        else:
            fraction, low, high = rly.score_distributions(m, taus), np.nan, np.nan
        frames.append(pd.DataFrame({"algorithm": algorithm, "tau": taus, "fraction": fraction,
                                    "ci_low": low, "ci_high": high, "ci_available": ci_available}))
    return pd.concat(frames, ignore_index=True)


def probability_of_improvement(df: pd.DataFrame, alg_x: str, alg_y: str, reps: int = POI_REPS, seed: int = 0,
                               on_unequal: str = "error", confidence: float = CONFIDENCE) -> pd.DataFrame:
    """P(X > Y): per-game Mann-Whitney probability averaged over the games both algorithms ran, with CI.

    Returns one row: algorithm_x, algorithm_y, value, ci_low, ci_high, n_games, n_runs_x, n_runs_y,
    ci_available, note. A side with one score per game gets no CI (its variability is unknown).
    """
    table = tidy_hns(df)
    _algorithms(table, [alg_x, alg_y])
    games_x = set(table.loc[table["algorithm"] == alg_x, "game"])
    games_y = set(table.loc[table["algorithm"] == alg_y, "game"])
    common = [g for g in GAMES if g in games_x & games_y]
    if not common:
        raise ValueError(f"{alg_x!r} and {alg_y!r} share no game; probability of improvement needs common games.")
    mx = _matrix(table, alg_x, common, "hns", on_unequal)
    my = _matrix(table, alg_y, common, "hns", on_unequal)
    ci_available = mx.shape[0] > 1 and my.shape[0] > 1
    if ci_available:
        with seeded(seed):
            points, cis = rly.get_interval_estimates({"pair": (mx, my)}, rlm.probability_of_improvement,
                                                     reps=reps, confidence_interval_size=confidence)
        value, low, high = float(points["pair"]), float(np.ravel(cis["pair"])[0]), float(np.ravel(cis["pair"])[1])
    else:
        value, low, high = float(rlm.probability_of_improvement(mx, my)), np.nan, np.nan
    notes = []
    if len(common) < max(len(games_x), len(games_y)):
        notes.append(f"restricted to the {len(common)} games both algorithms ran")
    if not ci_available:
        notes.append("one side has one score per game: point estimate without CI")
    return pd.DataFrame([{"algorithm_x": alg_x, "algorithm_y": alg_y, "value": value, "ci_low": low,
                          "ci_high": high, "n_games": len(common), "n_runs_x": mx.shape[0],
                          "n_runs_y": my.shape[0], "ci_available": ci_available, "note": "; ".join(notes)}])


def num_superhuman(df: pd.DataFrame, algorithms: Sequence[str] | None = None) -> pd.Series:
    """Games where the mean score over seeds is at least the human score, per algorithm.

    A mean exactly equal to the human score counts, as in the paper: IRIS's Pong 14.6 equals the
    human 14.6 and is among IRIS's 10 superhuman games in Table 1.
    """
    table = tidy_hns(df)
    means = table.groupby(["algorithm", "game"], sort=False)["score"].mean().reset_index()
    human = means["game"].map(HUMAN_SCORES).to_numpy(np.float64)
    score = means["score"].to_numpy(np.float64)
    means["superhuman"] = (score > human) | np.isclose(score, human, rtol=1e-12, atol=1e-9)
    counts = means.groupby("algorithm", sort=False)["superhuman"].sum().astype(int)
    return counts.loc[_algorithms(table, algorithms)].rename("superhuman")
