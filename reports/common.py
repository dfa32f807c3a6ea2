"""Report helpers shared by every suite: run folders → one pandas table, banners that say when the
numbers are not the paper's protocol, and a settings table read back from each run's config.yaml.

A report only trusts what is on disk: result.json says a run finished, config.yaml says how it ran.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from diamond.loop.config import GAME_OVERRIDES
from diamond.run.io import CorruptFileError, read_yaml
from diamond.run.rundir import flatten
from slurm.launcher import RunSpec

PAPER_PROFILE = "paper"
REPS_ENV = "DIAMOND_REPORT_REPS"  # one number for every bootstrap of a report (tests set it small)
RUN_KEYS = ("run", "group", "run_dir")  # columns that come from the RunSpec, not from result.json
# config fields that differ between the runs of one grid by design: game, seed and the per-game settings of
# diamond.loop.profiles.GAME_OVERRIDES (Freeway's collection temperature), so they never read as mixed experiments
IDENTITY_KEYS = ("env.game", "seed", *sorted({key for keys in GAME_OVERRIDES.values() for key in keys}))


@dataclass(frozen=True)
class ReportContext:
    """What a suite hands its report builder: where its runs are and where the report goes. Suites pass this
    and their own constants in, so a report module never imports a suite module back."""

    suite: str
    profile: str
    runs_dir: Path  # runs/<suite>/<profile>/
    out_dir: Path  # reports/<suite>/


def bootstrap_reps(default: int) -> int:
    """`default`, unless $DIAMOND_REPORT_REPS asks for another number of bootstrap repetitions."""
    raw = os.environ.get(REPS_ENV)
    if raw is None or raw.strip() == "":
        return default
    try:
        reps = int(raw)
    except ValueError:
        reps = 0
    if reps < 1:
        raise ValueError(f"${REPS_ENV}={raw!r} must be a positive integer (bootstrap repetitions)")
    return reps


def name_key(label: str) -> str:
    """A world model's label as a run-name or file-name part: anything but letters, digits, '_', '.' and '-' made
    '-' (the suites' run names and the reports' per-model tables use the same key)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label)


def read_result(run_dir: Path) -> dict[str, Any]:
    """result.json of a finished run; anything but a non-empty JSON object is a corrupt file, named."""
    from diamond.run.rundir import read_result as checked

    return checked(run_dir)


def read_config(run_dir: Path) -> dict[str, Any]:
    """config.yaml of a run (the full resolved config); missing or malformed files raise, named."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise CorruptFileError(f"{path} is missing: every finished run must hold its resolved config")
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise CorruptFileError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def collect_results(specs: Sequence[RunSpec]) -> tuple[pd.DataFrame, list[RunSpec]]:
    """One row per finished run of the grid (result.json's scalar fields + run, group, run_dir), and the
    specs without a readable result.json. Lists in result.json (e.g. episode returns) stay in the file."""
    rows, missing = [], []
    for spec in specs:
        if not (spec.run_dir / "result.json").is_file():
            missing.append(spec)
            continue
        try:
            result = read_result(spec.run_dir)
        except CorruptFileError:  # run_suite.py reports it failed, naming the file; the other runs still count
            missing.append(spec)
            continue
        row = {k: v for k, v in result.items() if not isinstance(v, (list, dict))}
        row.update(run=spec.name, group=spec.group, run_dir=str(spec.run_dir))
        rows.append(row)
    columns = list(RUN_KEYS) + sorted({k for r in rows for k in r} - set(RUN_KEYS))
    return pd.DataFrame(rows, columns=columns), missing


def grid_config_hash(config: Mapping[str, Any], ignore: Iterable[str] = IDENTITY_KEYS) -> str:
    """Hash of a run's settings without the fields that differ by design (game, seed) and perf switches:
    equal across runs exactly when they ran the same experiment."""
    flat = {k: v for k, v in flatten(config).items() if k not in set(ignore) and not k.startswith("perf.")}
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _distinct(values: Iterable[Any]) -> str:
    """One value, or every distinct value in first-seen order, marked as differing between runs."""
    seen = list(dict.fromkeys(_show(v) for v in values))
    return seen[0] if len(seen) == 1 else f"{' | '.join(seen)} (differs between runs)"


def settings_table(configs: Sequence[Mapping[str, Any]], keys: Mapping[str, str]) -> pd.DataFrame:
    """Rows (setting, config key, value) for the labelled dotted keys, read from the runs' configs."""
    if not configs:
        raise ValueError("settings_table needs at least one run config")
    flats = [flatten(c) for c in configs]
    rows = []
    for label, key in keys.items():
        absent = [i for i, f in enumerate(flats) if key not in f]
        if absent:
            raise KeyError(f"config key {key!r} ({label}) is absent from {len(absent)} of {len(flats)} run configs")
        rows.append({"setting": label, "key": key, "value": _distinct(f[key] for f in flats)})
    return pd.DataFrame(rows, columns=["setting", "key", "value"])


def differences(configs: Sequence[Mapping[str, Any]], reference: Mapping[str, Any],
                ignore: Iterable[str] = IDENTITY_KEYS) -> pd.DataFrame:
    """Settings where the runs differ from `reference` (e.g. the profile's defaults): the effect of
    --set overrides, made visible in the report instead of hidden in config files."""
    skip = set(ignore)
    ref = flatten(reference)
    flats = [flatten(c) for c in configs]
    keys = sorted({k for f in flats for k in f} | set(ref))
    rows = []
    for key in keys:
        if key in skip:
            continue
        values = [f.get(key, "(absent)") for f in flats]
        if any(v != ref.get(key, "(absent)") for v in values):
            rows.append({"key": key, "default": _show(ref.get(key, "(absent)")), "runs": _distinct(values)})
    return pd.DataFrame(rows, columns=["key", "default", "runs"])


def profile_banner(profile: str) -> str | None:
    """A warning unless the runs used the paper's settings (Tables 2-3)."""
    if profile == PAPER_PROFILE:
        return None
    return (f"Profile **{profile}**: shortened schedule and/or smaller networks, not the paper's settings "
            f"(profile `{PAPER_PROFILE}`, Tables 2-3). These numbers check that the pipeline works end to end; "
            "they are **not comparable** to the published results beside them.")


def subset_banner(games: Sequence[str], all_games: Sequence[str], seeds: int, all_seeds: int) -> str | None:
    """A warning when fewer games or seeds than the benchmark were asked for."""
    parts = []
    if set(all_games) - set(games):
        parts.append(f"{len(games)} of the {len(all_games)} games ({', '.join(games)})")
    if seeds < all_seeds:
        parts.append(f"{seeds} of the {all_seeds} seeds per game")
    if not parts:
        return None
    return (f"Subset of the benchmark: {' and '.join(parts)}. Aggregates are over this subset only and "
            "differ from aggregates over the full benchmark.")


def completion_banner(finished: int, missing: Sequence[RunSpec]) -> str | None:
    """A warning naming the runs of the grid without a readable result.json (not run yet, running or failed);
    a run whose result.json exists but cannot be read is named as failed."""
    if not missing:
        return None
    labels = [f"{s.name} (failed: unreadable {s.run_dir / 'result.json'})" if (s.run_dir / "result.json").is_file()
              else s.name for s in missing]
    names = ", ".join(labels[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
    return (f"Only {finished} of {finished + len(missing)} runs of the grid have finished; missing: {names}. "
            "Everything below is computed from the finished runs.")


def settings_banner(hashes: Sequence[str]) -> str | None:
    """A warning when the finished runs do not share one experiment configuration."""
    distinct = sorted(set(hashes))
    if len(distinct) <= 1:
        return None
    return (f"The runs were trained with {len(distinct)} different configurations (grid hashes "
            f"{', '.join(distinct)}): see the settings section; results may mix experiments.")


def format_ci(value: float, low: float, high: float, fmt: str = "{:.3f}") -> str:
    """`value [low, high]`, or the value alone where there is no interval."""
    if not math.isfinite(value):
        return "–"
    if math.isfinite(low) and math.isfinite(high):
        return f"{fmt.format(value)} [{fmt.format(low)}, {fmt.format(high)}]"
    return f"{fmt.format(value)} (no CI)"


def format_hours(seconds: float) -> str:
    """Human-readable duration: seconds, minutes or hours."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def wall_time_rows(results: pd.DataFrame) -> list[dict[str, str]]:
    """Total and per-run wall time (mean, min, max) and the devices used, as settings-table rows."""
    wall = results["wall_time_s"].astype(float)
    return [
        {"setting": "runs finished", "key": "result.json", "value": str(len(results))},
        {"setting": "run time summed over runs (not the suite's wall time)", "key": "wall_time_s",
         "value": format_hours(float(wall.sum()))},
        {"setting": "wall time per run (mean, min, max)", "key": "wall_time_s",
         "value": ", ".join(format_hours(float(x)) for x in (wall.mean(), wall.min(), wall.max()))},
        {"setting": "device", "key": "device", "value": _distinct(results["device"])},
    ]
