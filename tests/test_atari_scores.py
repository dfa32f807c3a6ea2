"""Reference scores of the 26 Atari 100k games and the human-normalized score."""

import numpy as np
import pandas as pd
import pytest

from evaluation import atari


def test_26_games_in_table_order_with_paper_reference_scores():
    assert len(atari.GAMES) == 26 and len(set(atari.GAMES)) == 26
    assert atari.GAMES[0] == "Alien" and atari.GAMES[-1] == "UpNDown"
    assert list(atari.GAMES) == sorted(atari.GAMES, key=str.lower)
    # Spot values from Table 1's Random and Human columns.
    assert atari.RANDOM_SCORES["Alien"] == 227.8 and atari.HUMAN_SCORES["Alien"] == 7127.7
    assert atari.RANDOM_SCORES["Pong"] == -20.7 and atari.HUMAN_SCORES["Pong"] == 14.6
    assert atari.RANDOM_SCORES["Freeway"] == 0.0 and atari.HUMAN_SCORES["Freeway"] == 29.6
    assert atari.HUMAN_SCORES["PrivateEye"] == 69571.3
    assert all(atari.HUMAN_SCORES[g] > atari.RANDOM_SCORES[g] for g in atari.GAMES)


def test_reference_scores_are_read_only():
    with pytest.raises(TypeError):
        atari.HUMAN_SCORES["Pong"] = 0.0  # type: ignore[index]


def test_hns_of_random_is_0_and_of_human_is_1():
    for game in atari.GAMES:
        assert atari.human_normalized_score(game, atari.RANDOM_SCORES[game]) == pytest.approx(0.0, abs=1e-12)
        assert atari.human_normalized_score(game, atari.HUMAN_SCORES[game]) == pytest.approx(1.0, abs=1e-12)


def test_hns_known_value_and_vectorised():
    # DIAMOND's Breakout 132.5: (132.5 - 1.7) / (30.5 - 1.7)
    assert atari.human_normalized_score("Breakout", 132.5) == pytest.approx(4.541666666, rel=1e-9)
    assert isinstance(atari.human_normalized_score("Breakout", 132.5), float)
    out = atari.human_normalized_score("Pong", np.array([-20.7, 14.6, 20.4]))
    np.testing.assert_allclose(out, [0.0, 1.0, 41.1 / 35.3])


def test_add_hns_on_a_tidy_table():
    df = pd.DataFrame({"algorithm": ["a", "a", "b"], "game": ["Pong", "Breakout", "Pong"],
                       "seed": [0, 0, 0], "score": [14.6, 1.7, -3.05]})
    out = atari.add_hns(df)
    np.testing.assert_allclose(out["hns"], [1.0, 0.0, 0.5])
    assert "hns" not in df.columns  # input left untouched


def test_unknown_game_is_a_clear_error():
    with pytest.raises(ValueError, match=r"Unknown Atari 100k game 'breakout'.*Breakout"):
        atari.human_normalized_score("breakout", 1.0)
    with pytest.raises(ValueError, match=r"Unknown Atari 100k game\(s\) \['Tetris'\]"):
        atari.add_hns(pd.DataFrame({"game": ["Pong", "Tetris"], "score": [0.0, 1.0]}))
    with pytest.raises(ValueError, match="needs a 'score' column"):
        atari.add_hns(pd.DataFrame({"game": ["Pong"], "return": [0.0]}))
