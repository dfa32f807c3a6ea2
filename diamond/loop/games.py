"""The 26 Atari 100k games with their random and human reference scores, and the human-normalised score.

The numbers are the first two columns of the paper's Table 1. They live here, at the bottom layer, because the
trainer writes a run's HNS into result.json; evaluation/atari.py re-exports them and checks that its full
transcription of Table 1 (evaluation/data/table1.csv) agrees.
"""

from __future__ import annotations

import difflib
from types import MappingProxyType

import numpy as np

_TABLE1_RANDOM_HUMAN: dict[str, tuple[float, float]] = {
    "Alien": (227.8, 7127.7),
    "Amidar": (5.8, 1719.5),
    "Assault": (222.4, 742.0),
    "Asterix": (210.0, 8503.3),
    "BankHeist": (14.2, 753.1),
    "BattleZone": (2360.0, 37187.5),
    "Boxing": (0.1, 12.1),
    "Breakout": (1.7, 30.5),
    "ChopperCommand": (811.0, 7387.8),
    "CrazyClimber": (10780.5, 35829.4),
    "DemonAttack": (152.1, 1971.0),
    "Freeway": (0.0, 29.6),
    "Frostbite": (65.2, 4334.7),
    "Gopher": (257.6, 2412.5),
    "Hero": (1027.0, 30826.4),
    "Jamesbond": (29.0, 302.8),
    "Kangaroo": (52.0, 3035.0),
    "Krull": (1598.0, 2665.5),
    "KungFuMaster": (258.5, 22736.3),
    "MsPacman": (307.3, 6951.6),
    "Pong": (-20.7, 14.6),
    "PrivateEye": (24.9, 69571.3),
    "Qbert": (163.9, 13455.0),
    "RoadRunner": (11.5, 7845.0),
    "Seaquest": (68.4, 42054.7),
    "UpNDown": (533.4, 11693.2),
}

GAMES: tuple[str, ...] = tuple(_TABLE1_RANDOM_HUMAN)
RANDOM_SCORES = MappingProxyType({g: r for g, (r, _) in _TABLE1_RANDOM_HUMAN.items()})
HUMAN_SCORES = MappingProxyType({g: h for g, (_, h) in _TABLE1_RANDOM_HUMAN.items()})


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
