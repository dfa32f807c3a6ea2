"""A tiny deterministic pixel game behind the Atari env interface, for tests that the whole loop learns.

Why it exists: no Atari game lets a CPU test tell in seconds whether Algorithm 1 (collect → D_θ → R_ψ →
(π, V) in imagination) learns; a 100k-step Atari run takes hours and its optimum is unknown. Here the
optimal policy and the random policy's return are known exactly, and the dynamics are simple enough for
tiny networks to model in a few hundred updates: a test can demand that the whole loop beats random.

The cue game: the frame shows a coloured block (black background); its colour c ∈ {0, …, A-1} is the
action that pays. Whatever the action, the block then turns to the next colour, (c + 1) mod A: the next
frame never depends on the action, so D_θ has a deterministic, action-free rule to learn and R_ψ must read
the reward from (x_t, a_t). Playing a = c earns +1; any other action earns 0 and ends the episode
(terminated). An episode is also truncated after `episode_steps` steps, or when `max_episode_frames` raw
frames (steps × frameskip) have passed, as the Atari cap. The first
colour of each episode is drawn from the env's own generator, seeded once at construction (like
diamond.loop.envs.make_env; `reset(seed=…)` reseeds). The optimal return is `episode_steps`; a uniform random
policy's expected return is Σ_{k=1..T} A^-k (0.5 for A = 3 and a long T). `noop_max` has no meaning here and
is accepted for the interface only.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

# Colours of the cue block (RGB): red, green, blue, yellow.
CUE_COLOURS: tuple[tuple[int, int, int], ...] = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0))


class CueEnv(gym.Env):
    """The cue game; the same reset/step/action_space/close interface as diamond.loop.envs.AtariPreprocess."""

    def __init__(self, *, num_actions: int = 3, seed: int | None = None, size: int = 64, frameskip: int = 4,
                 max_episode_frames: int = 108_000, episode_steps: int = 20) -> None:
        if not 2 <= num_actions <= len(CUE_COLOURS):
            raise ValueError(f"the cue game has 2 to {len(CUE_COLOURS)} actions, got {num_actions}.")
        if size < 4 or frameskip < 1 or episode_steps < 1 or max_episode_frames < frameskip:
            raise ValueError(f"invalid cue game: size={size} (>= 4), frameskip={frameskip} (>= 1), "
                             f"episode_steps={episode_steps} (>= 1), max_episode_frames={max_episode_frames} "
                             f"(>= frameskip).")
        self.num_actions, self.size = num_actions, size
        self.max_steps = min(episode_steps, max_episode_frames // frameskip)
        self.action_space = gym.spaces.Discrete(num_actions)
        self.observation_space = gym.spaces.Box(0, 255, (3, size, size), np.uint8)
        self._rng = np.random.default_rng(seed)
        self._cue = 0
        self._steps = 0

    def render_cue(self, cue: int) -> np.ndarray:
        """uint8 [3, size, size]: a centred block of half the frame's side in the cue's colour, black around it."""
        frame = np.zeros((3, self.size, self.size), np.uint8)
        lo, hi = self.size // 4, self.size - self.size // 4
        frame[:, lo:hi, lo:hi] = np.asarray(CUE_COLOURS[cue], np.uint8)[:, None, None]
        return frame

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._cue, self._steps = int(self._rng.integers(self.num_actions)), 0
        return self.render_cue(self._cue), {"cue": self._cue}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if not 0 <= int(action) < self.num_actions:
            raise ValueError(f"action {action} is outside the cue game's {self.num_actions} actions.")
        self._steps += 1
        hit = int(action) == self._cue
        self._cue = (self._cue + 1) % self.num_actions
        truncated = hit and self._steps >= self.max_steps
        return self.render_cue(self._cue), float(hit), not hit, truncated, {"cue": self._cue}


def make_cue_env(game: str, *, train: bool, seed: int | None, size: int, frameskip: int, noop_max: int,
                 max_episode_frames: int, pool_first_frame: bool = True, num_actions: int = 3,
                 episode_steps: int = 20) -> CueEnv:
    """diamond.loop.envs.make_env's signature (a Trainer's `env_factory`); `game`, `train`, `noop_max` and
    `pool_first_frame` are ignored: the cue game has no lives, no no-op starts and no frame pooling."""
    return CueEnv(num_actions=num_actions, seed=seed, size=size, frameskip=frameskip,
                  max_episode_frames=max_episode_frames, episode_steps=episode_steps)


def random_policy_return(num_actions: int, episode_steps: int) -> float:
    """Expected return of the uniform random policy: each step survives with probability 1/A, Σ_{k=1..T} A^-k."""
    p = 1.0 / num_actions
    return float(sum(p ** k for k in range(1, episode_steps + 1)))
