"""The scripted Breakout expert: its RAM map, its edge over random play, and the cached static dataset."""

import numpy as np
import pytest

import ablations.breakout_expert as be
from ablations.breakout_expert import BreakoutExpert, collect_static_dataset
from diamond.loop.data import ReplayBuffer
from diamond.loop.envs import make_env


def test_ram_addresses_match_the_screen():
    env = make_env("Breakout", train=False, seed=0)
    env.reset()
    ale, rng = env.ale, np.random.default_rng(0)
    checked = paddles = 0
    for t in range(150):
        env.step(1 if t % 40 == 0 else int(rng.integers(4)))
        ram, screen = ale.getRAM().astype(int), ale.getScreenRGB()
        paddle = np.flatnonzero(screen[190, 8:152].sum(-1) > 0) + 8  # paddle rows are 189..192
        if len(paddle) == 16:  # not clipped by a wall
            assert paddle.mean() + 0.5 == ram[be.RAM_PADDLE_X] + be.PADDLE_CENTER_OFFSET
            paddles += 1
        rows, cols = np.nonzero(screen[93:188, 8:152].sum(-1) > 0)  # below the bricks, above the paddle
        if len(cols) and ram[be.RAM_BALL_Y] > 0:
            assert cols.min() + 8 + 1 == ram[be.RAM_BALL_X] + be.BALL_CENTER_OFFSET  # ball is 2 columns wide
            assert rows.min() + 93 == ram[be.RAM_BALL_Y] + 9
            checked += 1
    assert checked > 20 and paddles > 20


def test_reflect_folds_into_the_walls():
    assert be._reflect(100, 57, 199) == 100
    assert be._reflect(50, 57, 199) == 64
    assert be._reflect(210, 57, 199) == 188
    assert be._reflect(57 + 2 * 142 + 5, 57, 199) == 62


def test_expert_validates_its_inputs():
    with pytest.raises(ValueError, match="epsilon"):
        BreakoutExpert(["NOOP", "FIRE", "RIGHT", "LEFT"], epsilon=1.5)
    with pytest.raises(ValueError, match="FIRE"):
        BreakoutExpert(["NOOP", "UP", "RIGHT", "LEFT"])


def _score_within(policy, env, expert=None, steps=600):
    env.reset()
    total = 0.0
    for _ in range(steps):
        _, r, terminated, truncated, _ = env.step(policy(env))
        total += r
        if terminated or truncated:
            env.reset()
            if expert is not None:
                expert.reset()
    return total


def test_expert_clearly_beats_random():
    env = make_env("Breakout", train=False, seed=0)
    expert = BreakoutExpert.for_env(env, rng=np.random.default_rng(0))
    expert_score = _score_within(lambda e: expert(e.ale.getRAM()), env, expert)
    rng = np.random.default_rng(0)
    random_score = _score_within(lambda e: int(rng.integers(4)), make_env("Breakout", train=False, seed=0))
    print(f"600 steps: expert {expert_score}, random {random_score}")
    assert expert_score >= 10 and expert_score >= 3 * random_score


def test_epsilon_mixes_in_random_actions():
    ram = np.zeros(128, np.uint8)  # no ball in play: the greedy action is always FIRE
    greedy = BreakoutExpert(["NOOP", "FIRE", "RIGHT", "LEFT"], rng=np.random.default_rng(0))
    assert {greedy(ram) for _ in range(50)} == {1}
    noisy = BreakoutExpert(["NOOP", "FIRE", "RIGHT", "LEFT"], epsilon=0.5, rng=np.random.default_rng(0))
    actions = [noisy(ram) for _ in range(400)]
    assert set(actions) == {0, 1, 2, 3} and 0.55 < np.mean(np.array(actions) == 1) < 0.75


def test_static_dataset_is_written_loadable_and_cached(tmp_path, monkeypatch):
    out = tmp_path / "breakout"
    summary = collect_static_dataset(out, num_frames=300, seed=0, epsilon=0.03, random_games=2)
    buf = ReplayBuffer.load(out)
    assert buf.num_steps == summary["num_steps"] == 300
    assert buf.num_episodes == summary["num_episodes"] >= 1
    assert len(summary["random_game_returns"]) == 2 and summary["train_env"]
    for ep in buf.episodes[:-1]:  # training episodes end exactly at a life loss or game over
        assert ep.end[-1] and not ep.end[:-1].any()
    assert buf[0].obs.shape[1:] == (3, 64, 64)
    assert sum(ep.rew.sum() for ep in buf.episodes) > 0

    def no_env(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(be, "make_env", no_env)
    assert collect_static_dataset(out, num_frames=300, seed=0, epsilon=0.03, random_games=2) == summary
    with pytest.raises(ValueError, match="other settings"):
        collect_static_dataset(out, num_frames=400, seed=0, epsilon=0.03, random_games=2)
