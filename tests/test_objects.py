"""Object-level fidelity (evaluation/objects.py, evaluation/object_metrics.py): the RAM map checked against the
emulator's screen, the frame read-out's accuracy on real frames, the reference rows apart on every metric, and the
metrics' arithmetic on hand-made states."""

import numpy as np
import pytest
import torch

from ablations.static_decision import _expert, action_meanings, expert_family
from diamond.loop.data import to_float, to_uint8
from diamond.loop.envs import make_env
from evaluation.emulator_wm import collect_probes
from evaluation.object_metrics import (
    CEILING,
    EMPTY,
    METRICS,
    REPEAT,
    EmptyPlayfield,
    object_fidelity,
    prepare_objects,
    step_errors,
    summary_row,
)
from evaluation.objects import MISS_PX, frame_state, ram_state, readout_accuracy


@pytest.fixture(scope="module")
def expert_play():
    """2,000 steps of two expert games (ε = 0.1): frames, RAM after each step, raw screens, game scores and lives."""
    frames, rams, screens, scores, lives = [], [], [], [], []
    for seed in (21, 22):
        env = make_env("Breakout", train=False, seed=seed)
        env.reset()
        play, score = _expert(action_meanings(), 0.1, np.random.default_rng(seed)), 0.0
        for _ in range(1000):
            obs, reward, terminated, truncated, _ = env.step(play(env))
            score += reward
            frames.append(obs), rams.append(env.ale.getRAM().copy()), screens.append(env.ale.getScreenRGB())
            scores.append(score), lives.append(env.ale.lives())
            if terminated or truncated:
                env.reset()
                score = 0.0
    return np.stack(frames), np.stack(rams), np.stack(screens), np.array(scores), np.array(lives)


def test_ram_map_matches_the_screen_score_and_lives(expert_play):
    _, rams, screens, scores, lives = expert_play
    state = ram_state(rams)
    assert (state["score"] == scores).all() and (state["lives"] == lives).all()
    rows, cols = 57 + 6 * np.arange(6)[:, None] + 2, 8 + 8 * np.arange(18)[None] + 4
    shown = screens[:, rows, cols].sum(-1) > 0  # [N, 6, 18]
    assert (shown == state["bricks"]).mean() > 0.999 and shown.sum((1, 2)).min() < 100  # bricks were hit
    paddle = (screens[:, 190, 8:152, 0] == 200).astype(float)  # paddle row, inside the walls
    whole = paddle.sum(1) == 16
    centre = (paddle * (np.arange(8, 152) + 0.5)).sum(1) / np.maximum(paddle.sum(1), 1)
    assert whole.sum() > 500 and np.array_equal(centre[whole], state["paddle_x"][whole])
    for i in np.flatnonzero(state["ball"])[::50]:  # ball rows y-2..y (a fourth some frames), columns x-1, x
        y, x = int(state["ball_y"][i]), int(state["ball_x"][i])
        assert screens[i, y - 2 : y + 1, x - 1 : x + 1].sum(-1).all()


def test_frame_readout_on_real_frames(expert_play):
    frames, rams = expert_play[:2]
    acc = readout_accuracy(frames, rams)
    print(acc)
    assert acc["walls"] == 1.0 and acc["paddle"] >= 0.99 and acc["ball_presence"] >= 0.98
    assert acc["ball_position"] >= 0.98 and acc["bricks"] >= 0.999 and acc["brick_count_exact"] >= 0.97


def test_readout_of_an_empty_and_a_black_screen(expert_play):
    frame = expert_play[0][:1]
    empty = to_uint8(EmptyPlayfield(1).predict_next(to_float(torch.from_numpy(frame))[:, None], torch.zeros(1, 1)))
    seen = frame_state(empty.numpy())
    assert seen["walls"].all() and not seen["paddle"].any() and not seen["ball"].any() and seen["bricks"].sum() == 0
    black = frame_state(np.zeros_like(frame))
    assert not black["walls"].any() and not black["paddle"].any() and black["bricks"].sum() == 0


@pytest.fixture(scope="module")
def references():
    meanings = action_meanings()
    probes = collect_probes("Breakout", 8, 4, _expert(meanings, 0.03, np.random.default_rng(0)), seed=10_000)
    setup = prepare_objects(probes, expert_family(meanings, (0.03,))["expert ε=0.03"], 40, 0)
    return setup, object_fidelity({}, setup, bootstrap=200)


def test_reference_rows_apart_on_every_metric(references):
    setup, out = references
    rows = {r["setting"]: r for r in out["rows"]}
    for m in METRICS:
        ceiling, repeat, empty = (rows[s] for s in (CEILING, REPEAT, EMPTY))
        better = (lambda a, b: a[f"{m}_ci_low"] > b[f"{m}_ci_high"]) if m == "persistence" else \
            (lambda a, b: a[f"{m}_ci_high"] < b[f"{m}_ci_low"])
        assert better(ceiling, repeat) and better(repeat, empty), m
        assert all(r[f"{m}_ci_low"] >= 0 for r in rows.values())
    assert rows[CEILING]["persistence"] > 0.99 and rows[EMPTY]["persistence"] == pytest.approx(1 / 3)
    assert rows[REPEAT]["persistence"] == pytest.approx(2 / 3)  # walls and paddle kept, the ball frozen
    assert rows[EMPTY]["brick_count_error"] == pytest.approx(setup.truth["bricks"].sum((2, 3)).mean())
    assert out["readout_accuracy"]["paddle"] >= 0.99


def _state(**fields):
    base = {"walls": True, "paddle": True, "paddle_x": 80.0, "ball": True, "ball_x": 50.0, "ball_y": 120.0,
            "bricks": np.ones((6, 18), bool)}
    base.update(fields)
    return {k: np.asarray(v)[None, None] for k, v in base.items()}


def test_step_errors_arithmetic():
    truth = _state()
    bricks = np.ones((6, 18), bool)
    bricks[0, :5] = False
    seen = _state(paddle_x=88.0, ball_x=53.0, ball_y=124.0, bricks=bricks)
    e = {k: float(v[0, 0]) for k, v in step_errors(seen, _state(ball_y=110.0), truth).items()}
    assert e == {"persistence": 1.0, "paddle_error": pytest.approx(8 / MISS_PX),
                 "ball_error": pytest.approx(5 / MISS_PX), "brick_count_error": 5.0}
    frozen = {k: float(v[0, 0]) for k, v in step_errors(seen, seen, truth).items()}
    assert frozen["persistence"] == pytest.approx(2 / 3)  # a ball that did not move is not in play
    gone = _state(paddle=False, paddle_x=np.nan, ball=False, ball_x=np.nan, ball_y=np.nan, walls=False)
    lost = {k: float(v[0, 0]) for k, v in step_errors(gone, _state(), truth).items()}
    assert lost["persistence"] == 0.0 and lost["paddle_error"] == 1.0 and lost["ball_error"] == 1.0
    no_ball = _state(ball=False, ball_x=np.nan, ball_y=np.nan)
    phantom = {k: float(v[0, 0]) for k, v in step_errors(_state(), _state(ball_y=100.0), no_ball).items()}
    assert phantom["persistence"] == 1.0 and phantom["ball_error"] == 1.0  # walls + paddle of 2; a ball where none
    far = step_errors(_state(ball_x=150.0), _state(ball_y=100.0), truth)
    assert float(far["ball_error"][0, 0]) == 1.0  # capped


def test_summary_row_means_and_nonnegative_ci():
    errors = {m: np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 2.0]]) for m in METRICS}
    row = summary_row("x", errors, bootstrap=500, seed=0)
    assert row["paddle_error"] == pytest.approx(2 / 3)
    assert 0.0 <= row["paddle_error_ci_low"] <= row["paddle_error"] <= row["paddle_error_ci_high"] <= 1.0
