"""Published Atari 100k baselines, shipped inside the package so reports work without anything beside it.

Two kinds of numbers, kept apart because they support different statistics:
- per-game means printed in the paper's Table 1 and Table 5 (`table1()`, `table5()`): point estimates
  only, since one number per game carries no run-to-run variability;
- per-run returns released by the methods' authors (`published_runs()`): these give real stratified
  bootstrap CIs and can enter probability-of-improvement comparisons.
Where each number comes from (paper table, or repository + path + commit + sha256) is in
`data/PROVENANCE.json` (machine-readable) and `data/PROVENANCE.md` (for people).
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from diamond.run.io import CorruptFileError
from evaluation.atari import GAMES, HUMAN_SCORES, RANDOM_SCORES, read_package_csv

PROVENANCE_FILE = "PROVENANCE.json"
TABLES = {1: ("table1.csv", "table1_aggregates.csv"), 5: ("table5.csv", "table5_aggregates.csv")}
PRINTED_METRICS = ("superhuman", "mean", "iqm")


def _data_ref(name: str) -> Any:
    return resources.files("evaluation").joinpath("data", name)


def _load_provenance() -> dict[str, Any]:
    ref = _data_ref(PROVENANCE_FILE)
    try:
        prov = json.loads(ref.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CorruptFileError(f"{ref}: not valid JSON ({e})") from e
    required = {"sources", "tables", "published", "reference_scores"}
    if not isinstance(prov, dict) or not required <= set(prov):
        raise CorruptFileError(f"{ref}: expected a JSON object with keys {sorted(required)}")
    return prov


PROVENANCE: Mapping[str, Any] = MappingProxyType(_load_provenance())
SOURCES: Mapping[str, str] = MappingProxyType(dict(PROVENANCE["sources"]))
PUBLISHED: tuple[str, ...] = tuple(PROVENANCE["published"])
PER_RUN: tuple[str, ...] = tuple(k for k, v in PROVENANCE["published"].items() if v["runs_per_game"] > 1)


def _wide_table(number: int) -> pd.DataFrame:
    if number not in TABLES:
        raise ValueError(f"Unknown paper table {number!r}; valid choices: {sorted(TABLES)}.")
    name = TABLES[number][0]
    wide = read_package_csv(name)
    if "game" not in wide.columns or tuple(wide["game"]) != GAMES or wide.isna().any().any():
        raise CorruptFileError(f"evaluation/data/{name}: expected the 26 games in order {GAMES} and no empty cell")
    return wide


def _tidy(number: int) -> pd.DataFrame:
    """Wide paper table (one column per algorithm) -> tidy (game, algorithm, score)."""
    wide = _wide_table(number)
    algorithms = [c for c in wide.columns if c != "game"]
    tidy = wide.melt(id_vars="game", value_vars=algorithms, var_name="algorithm", value_name="score")
    tidy["score"] = tidy["score"].astype(np.float64)
    return tidy[["game", "algorithm", "score"]]


def table1() -> pd.DataFrame:
    """Per-game returns of Table 1 (Random, Human, SimPLe, TWM, IRIS, DreamerV3, STORM, DIAMOND), tidy."""
    return _tidy(1)


def table5() -> pd.DataFrame:
    """Per-game returns of Table 5 (Human, MuZero, EfficientZero, CURL, SPR, SR-SPR, BBF, DIAMOND), tidy."""
    return _tidy(5)


def printed_aggregates(number: int) -> pd.DataFrame:
    """The aggregate rows the paper prints under Table 1 or 5: (algorithm, metric, value); N/A is NaN."""
    if number not in TABLES:
        raise ValueError(f"Unknown paper table {number!r}; valid choices: {sorted(TABLES)}.")
    name = TABLES[number][1]
    rows = read_package_csv(name)
    if list(rows.columns) != ["algorithm", "metric", "value"] or not set(rows["metric"]) <= set(PRINTED_METRICS):
        raise CorruptFileError(f"evaluation/data/{name}: expected columns algorithm, metric, value with "
                               f"metrics among {PRINTED_METRICS}")
    rows["value"] = rows["value"].astype(np.float64)
    return rows


def _read_verified(entry: Mapping[str, Any]) -> Any:
    """Parse one released JSON after checking it is byte-identical to the copy recorded in PROVENANCE."""
    ref = _data_ref(entry["file"])
    try:
        raw = ref.read_bytes()
    except OSError as e:
        raise CorruptFileError(f"{ref}: cannot be read ({e})") from e
    if hashlib.sha256(raw).hexdigest() != entry["sha256"]:
        raise CorruptFileError(f"{ref}: sha256 differs from {PROVENANCE_FILE}; the file is not the released copy "
                               f"of {entry['repo']}/{entry['path']}@{entry['commit']}")
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError as e:
        raise CorruptFileError(f"{ref}: not valid JSON ({e})") from e


def _returns_rows(name: str, entry: Mapping[str, Any], data: Any) -> list[tuple[str, str, int, float]]:
    """{game: [returns]} -> rows; seed = position in the released list (upstream keeps one entry per seed)."""
    n = entry["runs_per_game"]
    if not isinstance(data, dict) or set(data) != set(GAMES) or any(
            not isinstance(v, list) or len(v) != n for v in data.values()):
        raise CorruptFileError(f"evaluation/data/{entry['file']}: expected {{game: [{n} returns]}} for the 26 games")
    return [(name, g, i, float(s)) for g in GAMES for i, s in enumerate(data[g])]


def _hns_record_rows(name: str, entry: Mapping[str, Any], data: Any) -> list[tuple[str, str, int, float]]:
    """CURL's release holds HNS per (game, seed); invert HNS with the same reference scores to get returns."""
    try:
        rows = [(name, str(r["game"]), int(r["seed"]), float(r["HNS"])) for r in data]
    except (TypeError, KeyError, ValueError) as e:
        raise CorruptFileError(f"evaluation/data/{entry['file']}: expected records with game, seed, HNS ({e})") from e
    counts = pd.Series([r[1] for r in rows]).value_counts()
    if set(counts.index) != set(GAMES) or (counts != entry["runs_per_game"]).any():
        raise CorruptFileError(f"evaluation/data/{entry['file']}: expected {entry['runs_per_game']} records "
                               f"for each of the 26 games")
    return [(a, g, s, h * (HUMAN_SCORES[g] - RANDOM_SCORES[g]) + RANDOM_SCORES[g]) for a, g, s, h in rows]


_PARSERS = {"returns": _returns_rows, "means": _returns_rows, "hns_records": _hns_record_rows}


def published_runs(names: Iterable[str] | None = None) -> pd.DataFrame:
    """Released scores as a tidy (algorithm, game, seed, score) table, the shape our suites produce.

    `names` defaults to every released file (see PUBLISHED); EfficientZero and MuZero hold per-game
    means only (one 'run' each), so aggregates over them are point estimates without CIs.
    """
    names = list(PUBLISHED if names is None else names)
    unknown = [n for n in names if n not in PUBLISHED]
    if unknown:
        raise ValueError(f"No published scores for {unknown}; valid choices: {', '.join(PUBLISHED)}.")
    rows: list[tuple[str, str, int, float]] = []
    for name in names:
        entry = PROVENANCE["published"][name]
        rows += _PARSERS[entry["format"]](name, entry, _read_verified(entry))
    df = pd.DataFrame(rows, columns=["algorithm", "game", "seed", "score"])
    if not np.isfinite(df["score"]).all():
        raise CorruptFileError(f"evaluation/data: non-finite scores among {names}")
    return df


def reference_scores(kind: str) -> dict[str, float]:
    """Human or Random scores as released in the IRIS repository, to cross-check the Table 1 transcription."""
    if kind not in PROVENANCE["reference_scores"]:
        raise ValueError(f"Unknown reference {kind!r}; valid choices: {sorted(PROVENANCE['reference_scores'])}.")
    entry = PROVENANCE["reference_scores"][kind]
    return {g: s for _, g, _, s in _returns_rows(kind, entry, _read_verified(entry))}
