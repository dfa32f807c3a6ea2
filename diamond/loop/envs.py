"""Atari 100k environments (paper Table 3): 64x64 RGB, frameskip 4, up to 30 no-ops, no sticky actions.

The preprocessing is our own wrapper rather than gymnasium's AtariPreprocessing, because the latter
resets the whole game on a life loss. Here a training episode is one life: a life loss sets
`terminated`, and the next `reset()` continues the same game from where it stopped (the emulator is
reset, with random no-ops, only after a real game over or a truncation). Call `reset()` without a
seed to continue: an explicit seed always starts a new game (the construction seed covers the first).
Rewards are returned raw in both modes; the learner sign-clips them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import ale_py
import cv2
import gymnasium as gym
import numpy as np

from diamond.loop.games import GAMES

gym.register_envs(ale_py)

ATARI_100K_GAMES: tuple[str, ...] = GAMES  # the 26 games of Table 1, one list for the env and the scores


def _ale_games() -> list[str]:
    """Every game with an `ALE/<Game>-v5` id (the ROMs ship with ale-py)."""
    return sorted(k[len("ALE/"):-len("-v5")] for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5"))


def validate_game(game: str) -> str:
    """Return the gymnasium id of `game`, or raise one sentence listing the valid names (config checks use it)."""
    env_id = f"ALE/{game}-v5"
    if env_id not in gym.registry:
        others = [g for g in _ale_games() if g not in ATARI_100K_GAMES]
        raise ValueError(
            f"unknown Atari game {game!r}: choose one of the Atari 100k games ({', '.join(ATARI_100K_GAMES)}) "
            f"or another ALE game ({', '.join(others)})."
        )
    return env_id


class AtariPreprocess(gym.Wrapper):
    """Frameskip with max over the last two raw frames, random no-ops at reset, area-resized CHW uint8 RGB.

    info of every step: `raw_reward`, `life_loss`, `game_over` (emulator terminal), `lives`,
    `episode_frame_number` (raw frames since the emulator reset).

    `pool_first_frame`: the first observation of a game is the max of the last two raw frames (of the no-ops),
    like every later one; False gives the released code's, the last raw frame alone (it pools with a zeroed
    second buffer).
    """

    def __init__(
        self, env: gym.Env, *, train: bool, seed: int | None, size: int, frameskip: int, noop_max: int,
        pool_first_frame: bool = True,
    ) -> None:
        super().__init__(env)
        if frameskip < 1 or noop_max < 0 or size < 1:
            raise ValueError(
                f"invalid preprocessing: frameskip={frameskip} (>= 1), noop_max={noop_max} (>= 0), size={size} (>= 1)."
            )
        if env.unwrapped.get_action_meanings()[0] != "NOOP":
            raise ValueError(f"the no-op resets need action 0 to be NOOP in {env.spec.id}.")
        self.train = train
        self.size = size
        self.frameskip = frameskip
        self.noop_max = noop_max
        self.pool_first_frame = pool_first_frame
        self._seed = seed
        self._continue_game = False  # True only right after a life-loss termination that was not a game over
        self._lives = 0
        self._last_obs: np.ndarray | None = None
        self._prev_frame = self._frame = np.zeros(env.observation_space.shape, np.uint8)  # last two raw frames
        self.observation_space = gym.spaces.Box(0, 255, (3, size, size), np.uint8)

    @property
    def ale(self) -> ale_py.ALEInterface:
        return self.env.unwrapped.ale

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """After a life loss (train mode) continue the same game; otherwise reset the emulator + no-ops."""
        if self._continue_game and seed is None:
            self._continue_game = False
            return self._last_obs.copy(), self._info(0.0, life_loss=False, game_over=False)
        self._continue_game = False
        seed, self._seed = (self._seed if seed is None else seed), None  # the construction seed: first reset only
        self._frame = self._prev_frame = self.env.reset(seed=seed, options=options)[0]
        noops = int(self.env.unwrapped.np_random.integers(1, self.noop_max + 1)) if self.noop_max > 0 else 0
        for _ in range(noops):
            frame, _, terminated, truncated, _ = self.env.step(0)
            self._prev_frame, self._frame = self._frame, frame
            if terminated or truncated:  # vanishingly rare: the game ended during the no-ops
                self._frame = self._prev_frame = self.env.reset()[0]
        if not self.pool_first_frame:
            self._prev_frame = self._frame
        self._lives = self.ale.lives()
        self._last_obs = self._observation()
        return self._last_obs.copy(), self._info(0.0, life_loss=False, game_over=False)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward, game_over, truncated = 0.0, False, False
        for _ in range(self.frameskip):
            frame, r, game_over, truncated, _ = self.env.step(action)
            self._prev_frame, self._frame = self._frame, frame
            reward += float(r)
            if game_over or truncated:
                break
        lives = self.ale.lives()
        life_loss = lives < self._lives
        self._lives = lives
        terminated = game_over or (self.train and life_loss)
        self._continue_game = terminated and not game_over and not truncated
        self._last_obs = self._observation()
        return self._last_obs.copy(), reward, terminated, truncated, self._info(reward, life_loss, game_over)

    def _observation(self) -> np.ndarray:
        frame = np.maximum(self._prev_frame, self._frame)
        frame = cv2.resize(frame, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(frame.transpose(2, 0, 1))

    def _info(self, reward: float, life_loss: bool, game_over: bool) -> dict[str, Any]:
        return {
            "raw_reward": reward, "life_loss": life_loss, "game_over": game_over, "lives": self._lives,
            "episode_frame_number": self.ale.getEpisodeFrameNumber(),
        }


def make_env(
    game: str, *, train: bool, seed: int | None = None, size: int = 64, frameskip: int = 4, noop_max: int = 30,
    max_episode_frames: int = 108_000, pool_first_frame: bool = True,
) -> AtariPreprocess:
    """One Atari env under the Atari 100k protocol; `train=True` ends an episode at every life loss.

    The emulator itself truncates a game at `max_episode_frames` raw frames (no-ops included); for
    `pool_first_frame` see AtariPreprocess.
    """
    if max_episode_frames < 1:
        raise ValueError(f"max_episode_frames must be >= 1, got {max_episode_frames}.")
    env_id = validate_game(game)
    inner = gym.make(
        env_id, repeat_action_probability=0.0, frameskip=1, full_action_space=False,
        max_num_frames_per_episode=max_episode_frames,
    )
    ale_env = inner.unwrapped
    sticky = ale_env.ale.getFloat("repeat_action_probability")
    if sticky != 0.0 or ale_env._frameskip != 1:
        raise RuntimeError(
            f"{env_id} was created with repeat_action_probability={sticky} and frameskip={ale_env._frameskip}; "
            "the Atari 100k protocol needs 0 and 1 (our wrapper does the frameskip)."
        )
    return AtariPreprocess(inner, train=train, seed=seed, size=size, frameskip=frameskip, noop_max=noop_max,
                           pool_first_frame=pool_first_frame)


@lru_cache(maxsize=None)
def num_actions(game: str) -> int:
    """Size of the game's minimal action set (what the policy outputs)."""
    env = gym.make(validate_game(game), full_action_space=False)
    n = int(env.action_space.n)
    env.close()
    return n


class EnvBatch:
    """N envs stepped in lock-step; finished envs auto-reset and their true last frame goes to info["final_obs"]."""

    def __init__(self, envs: list[AtariPreprocess]) -> None:
        if not envs:
            raise ValueError("EnvBatch needs at least one env, got an empty list.")
        self.envs = envs
        self.num_actions = int(envs[0].action_space.n)

    @classmethod
    def make(cls, game: str, num_envs: int, *, train: bool, seed: int | None = None, **kwargs: Any) -> EnvBatch:
        """Env i gets seed + i, so a batch is deterministic given its seed."""
        return cls([
            make_env(game, train=train, seed=None if seed is None else seed + i, **kwargs) for i in range(num_envs)
        ])

    def __len__(self) -> int:
        return len(self.envs)

    def reset(self) -> np.ndarray:
        return np.stack([env.reset()[0] for env in self.envs])

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        """Returns (next_obs [N,3,H,W] uint8, rew [N] float32, terminated [N], truncated [N], infos)."""
        if len(actions) != len(self.envs):
            raise ValueError(f"expected {len(self.envs)} actions, got {len(actions)}.")
        obs, rew, term, trunc, infos = [], [], [], [], []
        for env, a in zip(self.envs, actions):
            o, r, te, tr, info = env.step(int(a))
            if te or tr:
                info["final_obs"] = o
                o = env.reset()[0]
            obs.append(o)
            rew.append(r)
            term.append(te)
            trunc.append(tr)
            infos.append(info)
        return np.stack(obs), np.asarray(rew, np.float32), np.asarray(term), np.asarray(trunc), infos

    def close(self) -> None:
        for env in self.envs:
            env.close()
