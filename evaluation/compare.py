"""Statistical comparison of ablation arms: agent scores (IQM differences, probability of improvement) and
world-model metrics (bootstrap over clips), plus the one-paragraph verdict every ablation report opens with.

Agent arms are independent training runs, so an IQM difference is bootstrapped the rliable way: each arm's
[runs, games] matrix is resampled within each game, independently of the other arm
(`rliable.library.StratifiedIndependentBootstrap`, through `get_interval_estimates`).

World-model arms are evaluated on the *same* real clips, so their metrics are paired: every model and
setting is bootstrapped with the same resampled clip indices (`clip_resamples`, a function of the number
of clips and a seed only). A difference of two arms is then computed replicate by replicate, for per-clip
metrics (MSE, LPIPS) and for set metrics (FID, FVD: a Fréchet distance per resample) alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from rliable import library as rly
from rliable import metrics as rlm
from tqdm.auto import tqdm

from evaluation import aggregate
from evaluation.atari import GAMES
from evaluation.video import frechet_distance

CONFIDENCE = 0.95
DIFF_REPS = 2_000  # bootstrap repetitions of an IQM difference (rliable's README uses 2,000 for pairwise tests)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap confidence interval (NaN bounds: no CI could be computed)."""

    value: float
    ci_low: float = math.nan
    ci_high: float = math.nan

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.ci_low) and math.isfinite(self.ci_high)

    def excludes(self, x: float = 0.0) -> bool:
        """True when the whole interval lies on one side of x (for a difference: a detectable effect)."""
        return self.has_ci and (self.ci_low > x or self.ci_high < x)


seeded = aggregate.seeded  # one seeding convention for every rliable bootstrap


def _check_matrices(x: np.ndarray, y: np.ndarray) -> None:
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(x.shape[0], y.shape[0]) < 1:
        raise ValueError(f"score matrices must be [runs, games] with the same games, got {x.shape} and {y.shape}.")


def iqm_difference(x: np.ndarray, y: np.ndarray, reps: int = DIFF_REPS, seed: int = 0,
                   confidence: float = CONFIDENCE) -> Interval:
    """IQM(x) − IQM(y) of two [runs, games] score matrices, with a stratified bootstrap CI.

    Each matrix is resampled over its runs within every game, independently of the other (the arms'
    runs are unrelated training runs); a side with a single run has no run-to-run spread to resample,
    so the result then has no CI."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    _check_matrices(x, y)
    value = float(rlm.aggregate_iqm(x) - rlm.aggregate_iqm(y))
    if min(x.shape[0], y.shape[0]) < 2:
        return Interval(value)

    def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.array([rlm.aggregate_iqm(a) - rlm.aggregate_iqm(b)])

    with seeded(seed):
        _, cis = rly.get_interval_estimates({"diff": (x, y)}, difference, reps=reps,
                                            confidence_interval_size=confidence)
    low, high = np.ravel(cis["diff"])
    return Interval(value, float(low), float(high))


def compare_agent_arms(tidy: pd.DataFrame, reference: str, arms: Sequence[str], reps: int = DIFF_REPS,
                       poi_reps: int = aggregate.POI_REPS, seed: int = 0) -> pd.DataFrame:
    """Every arm against `reference` on human-normalized scores: IQM of both, the IQM difference with its CI,
    and the probability of improvement P(arm > reference) with its CI.

    `tidy` has columns algorithm (the arm label), game, seed, score. Games are those both arms ran; unequal
    seeds per game keep the lowest common number (as aggregate.score_matrix does with 'truncate')."""
    rows = []
    for arm in arms:
        if arm == reference:
            continue
        games = [g for g in GAMES if g in set(tidy.loc[tidy["algorithm"] == arm, "game"])
                 and g in set(tidy.loc[tidy["algorithm"] == reference, "game"])]
        if not games:
            raise ValueError(f"arm {arm!r} and reference {reference!r} share no game.")
        x = aggregate.score_matrix(tidy, arm, games, on_unequal="truncate")
        y = aggregate.score_matrix(tidy, reference, games, on_unequal="truncate")
        diff = iqm_difference(x, y, reps, seed)
        poi = aggregate.probability_of_improvement(tidy, arm, reference, reps=poi_reps, seed=seed,
                                                   on_unequal="truncate").iloc[0]
        rows.append({"arm": arm, "reference": reference, "iqm_arm": float(rlm.aggregate_iqm(x)),
                     "iqm_reference": float(rlm.aggregate_iqm(y)), "iqm_diff": diff.value,
                     "iqm_diff_ci_low": diff.ci_low, "iqm_diff_ci_high": diff.ci_high, "poi": float(poi["value"]),
                     "poi_ci_low": float(poi["ci_low"]), "poi_ci_high": float(poi["ci_high"]),
                     "n_games": len(games), "n_runs_arm": x.shape[0], "n_runs_reference": y.shape[0]})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ bootstrap over clips


def clip_resamples(num_clips: int, reps: int, seed: int = 0) -> np.ndarray:
    """[reps, num_clips] clip indices drawn with replacement. They depend on (num_clips, reps, seed) only, so
    every model and sampler evaluated on the same clips is resampled identically: differences are paired."""
    if num_clips < 2 or reps < 1:
        raise ValueError(f"a bootstrap over clips needs at least 2 clips and 1 repetition, got {num_clips} and {reps}.")
    return np.random.default_rng(seed).integers(0, num_clips, size=(reps, num_clips))


def percentile_interval(point: float, replicates: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Percentile bootstrap interval around `point` (NaN replicates, e.g. a failed resample, are dropped)."""
    replicates = np.asarray(replicates, np.float64)
    replicates = replicates[np.isfinite(replicates)]
    if len(replicates) < 2:
        return Interval(float(point))
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha])
    return Interval(float(point), float(low), float(high))


def clip_mean(values: np.ndarray, resamples: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Mean of a per-clip metric over clips, with a bootstrap CI over clips."""
    values = np.asarray(values, np.float64)
    return percentile_interval(float(values.mean()), values[resamples].mean(axis=1), confidence)


def paired_clip_difference(a: np.ndarray, b: np.ndarray, resamples: np.ndarray,
                           confidence: float = CONFIDENCE) -> Interval:
    """mean(a) − mean(b) of a per-clip metric measured on the same clips, with a paired bootstrap CI."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired per-clip values need equal shapes, got {a.shape} and {b.shape}.")
    return clip_mean(a - b, resamples, confidence)


def clip_ratio(num: np.ndarray, den: np.ndarray, resamples: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """mean(num) / mean(den) over the same clips (e.g. generated over real sharpness), with a bootstrap CI.

    With a common denominator, the difference of two ratios is clip_ratio(num_a − num_b, den)."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    if num.shape != den.shape:
        raise ValueError(f"a per-clip ratio needs equal shapes, got {num.shape} and {den.shape}.")
    with np.errstate(divide="ignore", invalid="ignore"):
        replicates = num[resamples].mean(axis=1) / den[resamples].mean(axis=1)
        return percentile_interval(float(num.mean() / den.mean()), replicates, confidence)


def frechet_replicates(real_feats: np.ndarray, gen_feats: np.ndarray, resamples: np.ndarray) -> np.ndarray:
    """Fréchet distance (FID, FVD) recomputed on every resample of clips: [reps].

    Features are [num_clips * k, D] in clip order (k = frames per clip for FID, 1 for FVD); a resampled clip
    brings all its k rows, of the real and of the generated set alike."""
    num_clips = resamples.shape[1]
    if len(real_feats) != len(gen_feats) or len(real_feats) % num_clips:
        raise ValueError(f"features of {len(real_feats)} real and {len(gen_feats)} generated rows do not split into "
                         f"{num_clips} clips.")
    k = len(real_feats) // num_clips
    rows = (resamples[:, :, None] * k + np.arange(k)).reshape(len(resamples), -1)
    return np.array([frechet_distance(real_feats[r], gen_feats[r])
                     for r in tqdm(rows, desc="Fréchet bootstrap", leave=False, disable=None)])


def replicate_difference(point_a: float, point_b: float, replicates_a: np.ndarray, replicates_b: np.ndarray,
                         confidence: float = CONFIDENCE) -> Interval:
    """a − b of a set metric bootstrapped on the same resamples (replicate i of a pairs with replicate i of b)."""
    replicates_a, replicates_b = np.asarray(replicates_a, np.float64), np.asarray(replicates_b, np.float64)
    if replicates_a.shape != replicates_b.shape:
        raise ValueError(f"paired replicates need equal shapes, got {replicates_a.shape} and {replicates_b.shape}.")
    return percentile_interval(point_a - point_b, replicates_a - replicates_b, confidence)


@dataclass(frozen=True)
class WMMetric:
    name: str
    kind: str  # "set": Fréchet distance with stored replicates; "clip": mean over clips; "ratio": generated / real


# keys as in ablations.arms.evaluate_world_model: result rows hold point values, the clips file per-clip arrays
WM_METRICS = {"fid": WMMetric("FID", "set"), "fvd": WMMetric("FVD", "set"), "lpips": WMMetric("LPIPS", "clip"),
              "mse": WMMetric("MSE", "clip"), "sharpness": WMMetric("relative sharpness", "ratio")}
Measured = tuple[dict, dict]  # (point values of one model and setting, its per-clip arrays)


def wm_interval(metric: str, row: dict, arrays: dict, resamples: np.ndarray) -> Interval:
    """A world-model metric of one model and setting with its bootstrap CI over clips.

    arrays: '<metric>' per-clip values, '<metric>_reps' Fréchet replicates on `resamples`, 'sharpness' and
    'real.sharpness' per clip (relative sharpness = their ratio of means)."""
    kind = WM_METRICS[metric].kind
    if kind == "set":
        return percentile_interval(row[metric], arrays[f"{metric}_reps"])
    if kind == "ratio":
        return clip_ratio(arrays["sharpness"], arrays["real.sharpness"], resamples)
    return clip_mean(arrays[metric], resamples)


def wm_difference(metric: str, a: Measured, b: Measured, resamples: np.ndarray) -> Interval:
    """a − b of a world-model metric, paired: both were measured on the same real clips."""
    (row_a, arr_a), (row_b, arr_b) = a, b
    if not np.array_equal(arr_a["real.sharpness"], arr_b["real.sharpness"]):
        raise ValueError("the two world models were not evaluated on the same real clips; a paired comparison needs "
                         "the same dataset, protocol and seed.")
    kind = WM_METRICS[metric].kind
    if kind == "set":
        return replicate_difference(row_a[metric], row_b[metric], arr_a[f"{metric}_reps"], arr_b[f"{metric}_reps"])
    if kind == "ratio":
        return clip_ratio(arr_a["sharpness"] - arr_b["sharpness"], arr_a["real.sharpness"], resamples)
    return paired_clip_difference(arr_a[metric], arr_b[metric], resamples)


# ------------------------------------------------------------------------------------------------ verdict


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def describe_difference(diff: Interval, higher_is_better: bool) -> str:
    """'better'/'worse' with whether the CI of the difference excludes 0, in words a reader can act on."""
    if not math.isfinite(diff.value):
        return "not comparable (no value)"
    sign = "+" if diff.value >= 0 else ""
    if not diff.has_ci:
        return f"{sign}{_fmt(diff.value)} (no CI: too few runs or clips to tell)"
    ci = f"{sign}{_fmt(diff.value)} [{_fmt(diff.ci_low)}, {_fmt(diff.ci_high)}]"
    if not diff.excludes(0.0):
        return f"{ci}, the CI includes 0: no detectable difference"
    better = (diff.value > 0) == higher_is_better
    return f"{ci}, the CI excludes 0: significantly {'better' if better else 'worse'}"


def summary_paragraph(metric: str, values: Mapping[str, float], diffs: Mapping[str, Interval], reference: str,
                      higher_is_better: bool, confidence: float = CONFIDENCE) -> str:
    """One paragraph: which arm is best on `metric`, and whether its lead over the reference is real.

    `values`: arm -> point estimate (the reference included); `diffs`: arm -> (arm − reference) with CI."""
    if reference not in values:
        raise ValueError(f"the reference arm {reference!r} has no value of {metric}; arms: {list(values)}.")
    finite = {arm: v for arm, v in values.items() if math.isfinite(v)}
    if not finite:
        return f"{metric}: no arm has a value, so no comparison is possible."
    pick = max if higher_is_better else min
    winner = pick(finite, key=finite.get)
    if finite.get(reference) == finite[winner]:  # a tie is no win over the reference
        winner = reference
    direction = "higher" if higher_is_better else "lower"
    text = (f"On {metric} ({direction} is better), **{winner}** comes out best ({_fmt(finite[winner])}; "
            f"reference {reference}: {_fmt(values[reference])}).")
    others = [arm for arm in diffs if arm != reference]
    if others:
        text += f" Difference to {reference} with {round(confidence * 100)} % CI: " + "; ".join(
            f"{arm} {describe_difference(diffs[arm], higher_is_better)}" for arm in others) + "."
    if winner == reference:
        beaten = [arm for arm in others if diffs[arm].excludes(0.0)]
        if others and len(beaten) == len(others):
            verdict = f"the reference {reference} wins, and every other arm is significantly worse"
        elif beaten:
            verdict = (f"the reference {reference} wins; only {', '.join(beaten)} "
                       f"{'is' if len(beaten) == 1 else 'are'} significantly worse, the rest are within noise")
        else:
            verdict = f"the reference {reference} has the best point estimate, but no arm differs detectably from it"
    else:
        lead = diffs.get(winner, Interval(math.nan))
        verdict = (f"{winner} wins, and the CI of its difference to {reference} excludes 0: the gain is detectable"
                   if lead.excludes(0.0) else
                   f"{winner} has the best point estimate, but its CI against {reference} includes 0: "
                   "no detectable difference")
    return f"{text} Verdict: {verdict}."
