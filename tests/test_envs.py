"""Atari 100k protocol of diamond/loop/envs.py: preprocessing, life loss, truncation, seeding, batching."""

import cv2
import numpy as np
import pytest

from diamond.loop.envs import ATARI_100K_GAMES, EnvBatch, make_env, num_actions, validate_game

FIRE = 1  # Breakout minimal action set: NOOP, FIRE, RIGHT, LEFT


def _step_until(env, action, stop):
    """Step with a fixed action until stop(terminated, truncated, info); returns the last step."""
    for _ in range(5_000):
        out = env.step(action)
        if stop(*out[2:]):
            return out
    raise AssertionError("condition never reached")


def test_observation_shape_and_dtype():
    env = make_env("Breakout", train=True, seed=0)
    obs, _ = env.reset()
    assert obs.shape == (3, 64, 64) and obs.dtype == np.uint8
    assert env.observation_space.shape == (3, 64, 64)
    obs, *_ = env.step(FIRE)
    assert obs.shape == (3, 64, 64) and obs.dtype == np.uint8
    assert obs.max() > obs.min()  # a real picture, not a blank frame
    small = make_env("Breakout", train=True, seed=0, size=32)
    assert small.reset()[0].shape == (3, 32, 32)


def test_inner_ale_env_has_no_sticky_actions_and_no_frameskip():
    env = make_env("Breakout", train=True, seed=0)
    assert env.unwrapped._frameskip == 1
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    assert env.unwrapped.get_action_meanings() == ["NOOP", "FIRE", "RIGHT", "LEFT"]  # minimal set
    assert num_actions("Breakout") == 4 and num_actions("Pong") == 6 and num_actions("Alien") == 18


@pytest.mark.parametrize("frameskip", [4, 2])
def test_frameskip_advances_that_many_raw_frames(frameskip):
    env = make_env("Breakout", train=True, seed=0, frameskip=frameskip)
    _, info = env.reset()
    before = info["episode_frame_number"]
    for k in range(1, 4):
        _, _, _, _, info = env.step(FIRE)
        assert info["episode_frame_number"] == before + k * frameskip


def test_random_noops_at_reset():
    frames = {make_env("Breakout", train=True, seed=s).reset()[1]["episode_frame_number"] for s in range(8)}
    assert all(1 <= f <= 30 for f in frames) and len(frames) > 1
    assert make_env("Breakout", train=True, seed=0, noop_max=0).reset()[1]["episode_frame_number"] == 0


def test_train_env_ends_on_life_loss_and_reset_continues_the_game():
    env = make_env("Breakout", train=True, seed=0)
    obs, info = env.reset()
    assert info["lives"] == 5
    last_obs, _, terminated, truncated, info = _step_until(env, FIRE, lambda te, tr, i: te or tr)
    assert terminated and not truncated and info["life_loss"] and not info["game_over"] and info["lives"] == 4
    frame = info["episode_frame_number"]
    obs, info = env.reset()
    assert info["lives"] == 4 and info["episode_frame_number"] == frame  # same game, no emulator reset
    np.testing.assert_array_equal(obs, last_obs)
    _, _, terminated, _, info = _step_until(env, FIRE, lambda te, tr, i: te or tr)
    assert terminated and info["lives"] == 3 and info["episode_frame_number"] > frame
    _, info = env.reset(seed=1)  # an explicit seed always starts a new game
    assert info["lives"] == 5 and info["episode_frame_number"] <= 30


def test_train_env_resets_the_game_after_game_over():
    env = make_env("Breakout", train=True, seed=0)
    env.reset()
    for _ in range(5):
        _, _, terminated, _, info = _step_until(env, FIRE, lambda te, tr, i: te or tr)
        assert terminated
        if not info["game_over"]:
            env.reset()
    assert info["game_over"] and info["lives"] == 0
    _, info = env.reset()
    assert info["lives"] == 5 and info["episode_frame_number"] <= 30


def test_test_env_plays_full_games():
    env = make_env("Breakout", train=False, seed=0)
    env.reset()
    life_losses = 0
    for _ in range(5_000):
        _, _, terminated, truncated, info = env.step(FIRE)
        life_losses += info["life_loss"]
        if terminated or truncated:
            break
    assert terminated and info["game_over"] and life_losses == 5


def test_truncation_at_max_episode_frames():
    env = make_env("Breakout", train=True, seed=0, max_episode_frames=200)
    env.reset()
    _, _, terminated, truncated, info = _step_until(env, 0, lambda te, tr, i: te or tr)  # NOOP: no ball, no loss
    assert truncated and not terminated and info["episode_frame_number"] == 200
    _, info = env.reset()
    assert info["episode_frame_number"] <= 30 and info["lives"] == 5


def test_rewards_are_raw_and_frames_max_pooled_like_the_emulator():
    env = make_env("Assault", train=True, seed=0)  # Assault pays 21 points per kill: clipping would show
    env.reset()
    ale, action_set, rng = env.unwrapped.ale, env.unwrapped._action_set, np.random.default_rng(0)
    seen, pooling_mattered = [], 0
    for _ in range(60):
        a = int(rng.integers(env.action_space.n))
        state = ale.cloneState()
        expected, frames = 0.0, []
        for _ in range(4):
            expected += ale.act(action_set[a])
            frames.append(ale.getScreenRGB())
        ale.restoreState(state)
        pooled = cv2.resize(np.maximum(frames[-2], frames[-1]), (64, 64), interpolation=cv2.INTER_AREA)
        pooling_mattered += not np.array_equal(pooled, cv2.resize(frames[-1], (64, 64), interpolation=cv2.INTER_AREA))
        obs, reward, terminated, truncated, info = env.step(a)
        assert reward == expected == info["raw_reward"]
        np.testing.assert_array_equal(obs, pooled.transpose(2, 0, 1))
        seen.append(reward)
        if terminated or truncated:
            env.reset()
    assert max(seen) > 1 and pooling_mattered > 0


def test_unknown_game_error_lists_valid_names():
    assert validate_game("Breakout") == "ALE/Breakout-v5" and validate_game("Tetris") == "ALE/Tetris-v5"
    with pytest.raises(ValueError) as err:
        make_env("Breakoutt", train=True)
    msg = str(err.value)
    assert "\n" not in msg and "'Breakoutt'" in msg
    assert all(g in msg for g in ATARI_100K_GAMES)


def test_all_26_benchmark_games_construct():
    assert len(ATARI_100K_GAMES) == 26 and ATARI_100K_GAMES[0] == "Alien" and ATARI_100K_GAMES[-1] == "UpNDown"
    for game in ATARI_100K_GAMES:
        env = make_env(game, train=True, seed=0)
        obs, _ = env.reset()
        assert obs.shape == (3, 64, 64) and obs.dtype == np.uint8, game
        assert 2 <= env.action_space.n <= 18, game
        env.close()


def _rollout(seed, actions):
    env = make_env("Pong", train=True, seed=seed)  # Pong moves during the no-ops, so seeds show on screen
    frames = [env.reset()[0]]
    for a in actions:
        obs, _, terminated, truncated, _ = env.step(a)
        frames.append(obs)
        if terminated or truncated:
            frames.append(env.reset()[0])
    return np.stack(frames)


def test_seeded_env_is_deterministic():
    actions = np.random.default_rng(0).integers(0, 6, size=80)
    np.testing.assert_array_equal(_rollout(3, actions), _rollout(3, actions))
    assert any(not np.array_equal(_rollout(3, actions), _rollout(s, actions)) for s in (4, 5, 6))


def test_env_batch_autoresets_and_returns_the_final_frame():
    batch = EnvBatch.make("Breakout", 2, train=True, seed=3)
    singles = [make_env("Breakout", train=True, seed=3 + i) for i in range(2)]
    obs = batch.reset()
    assert obs.shape == (2, 3, 64, 64) and obs.dtype == np.uint8
    np.testing.assert_array_equal(obs, np.stack([e.reset()[0] for e in singles]))
    finished = 0
    while finished < 2:
        obs, rew, term, trunc, infos = batch.step(np.array([FIRE, FIRE]))
        assert rew.dtype == np.float32 and obs.shape == (2, 3, 64, 64)
        for i, env in enumerate(singles):
            o, r, te, tr, _ = env.step(FIRE)
            assert (r, te, tr) == (rew[i], term[i], trunc[i])
            if te or tr:
                finished += 1
                np.testing.assert_array_equal(infos[i]["final_obs"], o)
                o = env.reset()[0]
            else:
                assert "final_obs" not in infos[i]
            np.testing.assert_array_equal(obs[i], o)
    with pytest.raises(ValueError, match="expected 2 actions"):
        batch.step(np.array([0]))
