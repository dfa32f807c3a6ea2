"""Reference scores of the 26 Atari 100k games and the human-normalized score (HNS).

The random and human scores are read from the package's transcription of the paper's Table 1
(first two columns, `data/table1.csv`), so there is exactly one copy of those numbers.
"""

from __future__ import annotations

import difflib
import io
from importlib import resources
from types import MappingProxyType
from typing import Mapping

import numpy as np
import pandas as pd

from diamond.io import CorruptFileError

TABLE1_FILE = "table1.csv"


def read_package_csv(name: str) -> pd.DataFrame:
    """Read a CSV shipped in `evaluation/data/`; a malformed file raises one error naming it."""
    ref = resources.files("evaluation").joinpath("data", name)
    try:
        return pd.read_csv(io.StringIO(ref.read_text(encoding="utf-8")))
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise CorruptFileError(f"{ref}: not a readable CSV ({e})") from e


def _reference_scores() -> tuple[tuple[str, ...], Mapping[str, float], Mapping[str, float]]:
    table = read_package_csv(TABLE1_FILE)
    missing = {"game", "Random", "Human"} - set(table.columns)
    if missing or len(table) != 26 or table[["Random", "Human"]].isna().any().any():
        raise CorruptFileError(f"evaluation/data/{TABLE1_FILE}: expected 26 games with columns game, Random, "
                               f"Human and no empty cells (missing columns: {sorted(missing)}, rows: {len(table)})")
    games = tuple(str(g) for g in table["game"])
    random = MappingProxyType({g: float(s) for g, s in zip(games, table["Random"])})
    human = MappingProxyType({g: float(s) for g, s in zip(games, table["Human"])})
    return games, random, human


GAMES, RANDOM_SCORES, HUMAN_SCORES = _reference_scores()


def check_game(game: str) -> str:
    """Return `game` if it is one of the 26 Atari 100k games, else raise naming close matches."""
    if game in RANDOM_SCORES:
        return game
    close = difflib.get_close_matches(str(game), GAMES, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"Unknown Atari 100k game {game!r}.{hint} Valid games: {', '.join(GAMES)}.")


def human_normalized_score(game: str, score: float | np.ndarray) -> float | np.ndarray:
    """HNS = (score - random) / (human - random) (Wang et al., 2016; the paper's Table 1 metric)."""
    check_game(game)
    random, human = RANDOM_SCORES[game], HUMAN_SCORES[game]
    hns = (np.asarray(score, dtype=np.float64) - random) / (human - random)
    return float(hns) if hns.ndim == 0 else hns


def add_hns(df: pd.DataFrame, score_col: str = "score", out_col: str = "hns") -> pd.DataFrame:
    """Return a copy of a tidy table with an HNS column computed row-wise from `game` and `score_col`."""
    for col in ("game", score_col):
        if col not in df.columns:
            raise ValueError(f"add_hns needs a {col!r} column; the table has {list(df.columns)}.")
    unknown = sorted(set(df["game"]) - set(GAMES))
    if unknown:
        raise ValueError(f"Unknown Atari 100k game(s) {unknown}. Valid games: {', '.join(GAMES)}.")
    random = df["game"].map(RANDOM_SCORES).astype(np.float64)
    human = df["game"].map(HUMAN_SCORES).astype(np.float64)
    out = df.copy()
    out[out_col] = (df[score_col].astype(np.float64) - random) / (human - random)
    return out
