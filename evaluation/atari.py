"""Reference scores of the 26 Atari 100k games and the human-normalized score (HNS).

The games, random and human scores are diamond/loop/games.py's (the trainer needs them too, and layers import
downward); this module re-exports them and checks at import that the package's transcription of the paper's
Table 1 (`data/table1.csv`, whose first two columns are those scores) agrees, so the two cannot drift apart.
"""

from __future__ import annotations

import io
from importlib import resources

import numpy as np
import pandas as pd

from diamond.loop.games import GAMES, HUMAN_SCORES, RANDOM_SCORES, check_game, human_normalized_score
from diamond.run.io import CorruptFileError

__all__ = ["GAMES", "HUMAN_SCORES", "RANDOM_SCORES", "TABLE1_FILE", "add_hns", "check_game",
           "human_normalized_score", "read_package_csv"]

TABLE1_FILE = "table1.csv"


def read_package_csv(name: str) -> pd.DataFrame:
    """Read a CSV shipped in `evaluation/data/`; a malformed file raises one error naming it."""
    ref = resources.files("evaluation").joinpath("data", name)
    try:
        return pd.read_csv(io.StringIO(ref.read_text(encoding="utf-8")))
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise CorruptFileError(f"{ref}: not a readable CSV ({e})") from e


def _check_table1() -> None:
    """table1.csv's game, Random and Human columns must equal diamond/loop/games.py's, in the same order."""
    table = read_package_csv(TABLE1_FILE)
    missing = {"game", "Random", "Human"} - set(table.columns)
    if missing or tuple(str(g) for g in table["game"]) != GAMES or [
            (RANDOM_SCORES[g], HUMAN_SCORES[g]) for g in GAMES] != list(zip(table["Random"], table["Human"])):
        raise CorruptFileError(f"evaluation/data/{TABLE1_FILE}: its game, Random and Human columns must equal "
                               f"diamond/loop/games.py's 26 games and scores (missing columns: {sorted(missing)})")


_check_table1()


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
