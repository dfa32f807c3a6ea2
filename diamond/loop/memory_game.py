"""The delayed-cue game: a memory test whose answer exists only before the occlusion.

Why it exists: in Breakout the frame before an occlusion already holds almost everything the frame after it
shows, so whole-frame error measures layout, not memory (issue 30). Here one thing must be remembered and
nothing else tells it: a coloured cue block is shown for `cue_frames` frames, then hidden for a delay of d
frames, then the answer region takes the cue's colour. Every other pixel is a deterministic function of the
newest frame: two countdown bars say how many frames remain until the cue hides and until the answer comes,
so a model that sees only its newest frame predicts the answer frame exactly except for the answer's colour.

A probe context of C = cue_frames frames ending just before the answer holds C - d cue frames and d delay
frames: the delay is the occlusion k, and with d = C the whole context is cue-free (every model's blind
point). Episodes draw d uniformly in 0..max_delay (max_delay = C by default), so every probed k, the
fully cue-free context included, is in the training data of every model trained on it.

Actions never change a frame (as in diamond.loop.toy_env's cue game, whose colours this game uses): the action
taken on the last frame before the answer pays +1 when it equals the cue, and the answer frame ends the
episode (terminated). Same reset/step/action_space/close interface as diamond.loop.toy_env.CueEnv.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from diamond.loop.data import DATASET_SUMMARY as SUMMARY_FILE
from diamond.loop.data import ReplayBuffer, reuse_dataset
from diamond.loop.toy_env import CUE_COLOURS
from diamond.run.io import atomic_write_json

GAME = "DelayedCue"  # the dataset's game name (not an ALE game: the suite gives its action count itself)


class DelayedCueEnv(gym.Env):
    """The delayed-cue game; `reset(options={"cue": c, "delay": d})` fixes an episode (the probe's starts)."""

    def __init__(self, *, num_actions: int = 3, seed: int | None = None, size: int = 64, cue_frames: int = 16,
                 max_delay: int | None = None) -> None:
        max_delay = cue_frames if max_delay is None else max_delay
        if not 2 <= num_actions <= len(CUE_COLOURS):
            raise ValueError(f"the delayed-cue game has 2 to {len(CUE_COLOURS)} actions, got {num_actions}.")
        if size < 16 or cue_frames < 1 or max_delay < 0:
            raise ValueError(f"invalid delayed-cue game: size={size} (>= 16), cue_frames={cue_frames} (>= 1), "
                             f"max_delay={max_delay} (>= 0).")
        self.num_actions, self.size, self.cue_frames, self.max_delay = num_actions, size, cue_frames, max_delay
        self.action_space = gym.spaces.Discrete(num_actions)
        self.observation_space = gym.spaces.Box(0, 255, (3, size, size), np.uint8)
        self._rng = np.random.default_rng(seed)
        self._cue = self._delay = self._t = 0

    def _box(self, top: int, bottom: int) -> tuple[slice, slice]:
        s = self.size
        return slice(top * s // 16, bottom * s // 16), slice(s // 4, s - s // 4)

    @property
    def answer_region(self) -> tuple[slice, slice]:
        """Rows and columns of the answer block: the pixels that must be remembered."""
        return self._box(10, 14)

    def _bar(self, frame: np.ndarray, row: int, remaining: int, grey: int) -> None:
        rows = slice(row * self.size // 16, (row + 1) * self.size // 16)
        length = round(self.size * remaining / (self.cue_frames + self.max_delay))
        frame[:, rows, :length] = grey

    def render(self, t: int, cue: int, delay: int) -> np.ndarray:
        """uint8 [3, size, size] of frame t of the episode (cue, delay): the cue block while t < cue_frames, the
        two countdown bars, and at t = cue_frames + delay the answer block in the cue's colour."""
        frame = np.zeros((3, self.size, self.size), np.uint8)
        colour = np.asarray(CUE_COLOURS[cue], np.uint8)[:, None, None]
        answer_at = self.cue_frames + delay
        if t < self.cue_frames:
            frame[(slice(None), *self._box(1, 6))] = colour
        self._bar(frame, 7, max(0, self.cue_frames - t), 255)
        self._bar(frame, 8, answer_at - t, 128)
        if t == answer_at:
            frame[(slice(None), *self.answer_region)] = colour
        return frame

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        options = options or {}
        self._cue = int(options.get("cue", self._rng.integers(self.num_actions)))
        self._delay = int(options.get("delay", self._rng.integers(self.max_delay + 1)))
        if not (0 <= self._cue < self.num_actions and 0 <= self._delay):
            raise ValueError(f"cue {self._cue} must be in 0..{self.num_actions - 1} and delay {self._delay} >= 0.")
        self._t = 0
        return self.render(0, self._cue, self._delay), {"cue": self._cue, "delay": self._delay}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if not 0 <= int(action) < self.num_actions:
            raise ValueError(f"action {action} is outside the delayed-cue game's {self.num_actions} actions.")
        self._t += 1
        answer = self._t == self.cue_frames + self._delay
        reward = float(answer and int(action) == self._cue)
        return self.render(self._t, self._cue, self._delay), reward, answer, False, {"cue": self._cue,
                                                                                     "delay": self._delay}

    def read_cue(self, frame: np.ndarray) -> int | None:
        """The cue a frame shows in its cue block, or None while the cue is hidden."""
        block = frame[(slice(None), *self._box(1, 6))].reshape(3, -1)[:, 0]
        return next((c for c in range(self.num_actions) if tuple(block) == CUE_COLOURS[c]), None)

    def answer(self, colour: np.ndarray) -> np.ndarray:
        """float [3, size, size] on the uint8 scale: the answer frame (whatever the delay) with the answer block in
        `colour` (RGB, possibly no cue's, e.g. the mean of the cues: the best guess of a model blind to the cue)."""
        frame = np.zeros((3, self.size, self.size))
        frame[(slice(None), *self.answer_region)] = np.asarray(colour, float)[:, None, None]
        return frame

    @property
    def mean_colour(self) -> np.ndarray:
        """The cues' mean colour: the answer block that minimises the expected squared error without the cue."""
        return np.mean(CUE_COLOURS[: self.num_actions], axis=0)

    def episode(self, cue: int, delay: int) -> np.ndarray:
        """Every frame [cue_frames + delay + 1, 3, H, W] of the episode (cue, delay), the answer last."""
        return np.stack([self.render(t, cue, delay) for t in range(self.cue_frames + delay + 1)])


def collect_delayed_cue_dataset(out_dir: str | Path, *, num_frames: int, seed: int, num_actions: int = 3,
                                size: int = 64, cue_frames: int = 16, max_delay: int | None = None) -> dict:
    """Play uniformly random actions for `num_frames` steps into a ReplayBuffer at `out_dir`, plus summary.json
    (written last: its presence means complete; a complete dataset with the same settings is reused)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}.")
    env = DelayedCueEnv(num_actions=num_actions, seed=seed, size=size, cue_frames=cue_frames, max_delay=max_delay)
    out_dir = Path(out_dir)
    settings = {"game": GAME, "num_frames": num_frames, "seed": seed, "num_actions": num_actions, "size": size,
                "cue_frames": cue_frames, "max_delay": env.max_delay}
    summary = reuse_dataset(out_dir, settings)
    if summary is not None:
        return summary
    buffer, rng, delays = ReplayBuffer(out_dir), np.random.default_rng(seed + 1), []
    steps = 0
    while steps < num_frames:  # whole episodes only: a cut one would hide its answer
        obs, info = env.reset()
        buffer.start_episode(obs)
        delays.append(info["delay"])
        done = False
        while not done:
            action = int(rng.integers(num_actions))
            obs, reward, done, _, _ = env.step(action)
            buffer.add_step(action, reward, done, False, obs)
            steps += 1
    buffer.save()
    summary = {**settings, "num_steps": buffer.num_steps, "num_episodes": buffer.num_episodes,
               "delay_counts": np.bincount(delays, minlength=env.max_delay + 1).tolist()}
    atomic_write_json(out_dir / SUMMARY_FILE, summary)
    return summary
