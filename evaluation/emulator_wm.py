"""The reference world models of the decision metrics (evaluation/decision.py): the emulator as a world model (the
ceiling) and action-blind models (the floor), plus the real states ("probes") every metric starts from.

All of them follow the duck-typed world-model interface of evaluation/wm_protocol.py: `num_history` (L) and
`predict_next(obs_hist [B, L, 3, H, W] in [-1, 1], act_hist [B, L]) -> [B, 3, H, W]`, a_t last.

The emulator model is a pure function of what it is given: it finds the Atari state behind each row of a call by
its L frames, either a probe it was built with or what the same row became on its previous call, restores that state (ALE cloneState/restoreState plus the wrapper's two raw frames), steps the emulator
with a_t and returns the real next frame. Asked to continue anything else, it refuses: it is a ceiling, not a
guess.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from diamond.loop.data import to_float, to_uint8
from diamond.loop.envs import AtariPreprocess, make_env

Policy = Callable[[AtariPreprocess], int]


@dataclass(frozen=True)
class Snapshot:
    """Everything the preprocessing env needs to step on exactly as it would have: emulator + last two raw frames."""

    ale: Any  # ale_py.ALEState
    prev_frame: np.ndarray
    frame: np.ndarray
    lives: int


def snapshot(env: AtariPreprocess) -> Snapshot:
    return Snapshot(env.ale.cloneState(), env._prev_frame.copy(), env._frame.copy(), env._lives)


def restore(env: AtariPreprocess, snap: Snapshot) -> None:
    env.ale.restoreState(snap.ale)
    env._prev_frame, env._frame, env._lives = snap.prev_frame.copy(), snap.frame.copy(), snap.lives


@dataclass
class Probes:
    """Real states of fresh games: contexts [K, L, 3, H, W] uint8, the L actions taken at those frames [K, L] (the
    last one is the action the real player took next), and the emulator snapshot at each context's last frame."""

    game: str
    obs: np.ndarray
    act: np.ndarray
    states: list[Snapshot]

    def __len__(self) -> int:
        return len(self.states)

    def digest(self) -> str:
        """A short fingerprint of the contexts and actions: runs with equal digests were measured on the same
        states."""
        return hashlib.sha1(self.obs.tobytes() + self.act.tobytes()).hexdigest()[:12]


def collect_probes(game: str, count: int, num_history: int, policy: Policy, seed: int, every: int = 20,
                   warmup: int = 40) -> Probes:
    """`count` real states, one every `every` steps after `warmup` steps, of games played by `policy` in a test
    env (lives continue; a new game after a game over). The env's seed differs from the dataset's, so the probes
    are held out."""
    if count < 1 or num_history < 1 or every < 1:
        raise ValueError(f"need count, num_history and every >= 1, got {count}, {num_history}, {every}.")
    env = make_env(game, train=False, seed=seed)
    frames: deque[np.ndarray] = deque(maxlen=num_history)
    acts: deque[int] = deque(maxlen=num_history)
    obs_out, act_out, states = [], [], []
    obs, _ = env.reset()
    step = 0
    while len(states) < count:
        action = policy(env)
        frames.append(obs)
        acts.append(action)
        if len(frames) == num_history and step >= warmup and step % every == 0:
            obs_out.append(np.stack(frames))
            act_out.append(np.array(acts, np.int64))
            states.append(snapshot(env))
        obs, _, terminated, truncated, _ = env.step(action)
        step += 1
        if terminated or truncated:
            obs, _ = env.reset()
            frames.clear()
            acts.clear()
    env.close()
    return Probes(game, np.stack(obs_out), np.stack(act_out), states)


def _key(frames: np.ndarray) -> bytes:
    return frames.tobytes()


def _transition(before: np.ndarray, after: np.ndarray) -> bytes:
    return hashlib.sha1(before.tobytes() + after.tobytes()).digest()


@lru_cache(maxsize=None)
def emulator_env(game: str) -> AtariPreprocess:
    """One env per game for every user that restores a snapshot before each step (loading a ROM is the slow part)."""
    env = make_env(game, train=False, seed=0)
    env.reset()
    return env


class EmulatorWorldModel:
    """The real game as a world model: the ceiling every decision metric is checked against."""

    def __init__(self, probes: Probes) -> None:
        self.num_history = probes.obs.shape[1]
        self.env = emulator_env(probes.game)
        self._starts = {_key(o): s for o, s in zip(probes.obs, probes.states)}
        self._rows: list[tuple[bytes, Snapshot]] = []
        self.outcomes: dict[bytes, tuple[float, bool]] = {}  # (frame, next frame) -> (raw reward, life lost)

    def _find(self, row: int, key: bytes) -> Snapshot:
        if row < len(self._rows) and self._rows[row][0] == key:
            return self._rows[row][1]
        if key in self._starts:
            return self._starts[key]
        raise ValueError("the emulator world model can only continue from its probes or from its own last "
                         "prediction; this context is neither.")

    @torch.no_grad()
    def predict_next(self, obs_hist: Tensor, act_hist: Tensor, **_: Any) -> Tensor:
        frames = to_uint8(obs_hist).cpu().numpy()
        acts = act_hist.cpu().numpy().astype(np.int64)
        rows, out = [], []
        for b in range(len(frames)):
            restore(self.env, self._find(b, _key(frames[b])))
            lives = self.env.ale.lives()
            nxt, reward, _, _, _ = self.env.step(int(acts[b, -1]))
            self.outcomes[_transition(frames[b, -1], nxt)] = (reward, self.env.ale.lives() < lives)
            rows.append((_key(np.concatenate([frames[b, 1:], nxt[None]])), snapshot(self.env)))
            out.append(nxt)
        self._rows = rows
        return to_float(torch.from_numpy(np.stack(out))).to(obs_hist.device)


class EmulatorRewardEnd:
    """The emulator's own reward sign and life loss for the transitions it produced, in R_ψ's interface (logits
    [B, T, 3] and [B, T, 2]); a transition it never produced (frames another model made) gets reward 0, no end."""

    BIG = 30.0  # a logit gap that makes the softmax one-hot to float precision

    def __init__(self, emulator: EmulatorWorldModel) -> None:
        self.emulator = emulator

    def __call__(self, obs: Tensor, act: Tensor, next_obs: Tensor, state: Any = None) -> tuple[Tensor, Tensor, Any]:
        before, after = to_uint8(obs).cpu().numpy(), to_uint8(next_obs).cpu().numpy()
        rew, end = torch.zeros(*act.shape, 3), torch.zeros(*act.shape, 2)
        for b, t in np.ndindex(*act.shape):
            reward, loss = self.emulator.outcomes.get(_transition(before[b, t], after[b, t]), (0.0, False))
            rew[b, t, int(np.sign(reward)) + 1] = self.BIG
            end[b, t, int(loss)] = self.BIG
        return rew, end, state


class CopyLastFrame:
    """Action-blind floor: the next frame is the last one (what a model that ignores everything but pixels
    repeating would predict)."""

    def __init__(self, num_history: int) -> None:
        self.num_history = num_history

    def predict_next(self, obs_hist: Tensor, act_hist: Tensor, **_: Any) -> Tensor:
        return obs_hist[:, -1].clone()


class ActionsWithheld:
    """Action-blind floor built from any model: it always receives action 0 (NOOP), whatever was asked, so its
    frames are as realistic as the model's but carry no information about the action (released repo, issue #33)."""

    def __init__(self, model: Any) -> None:
        self.model, self.num_history = model, model.num_history

    def predict_next(self, obs_hist: Tensor, act_hist: Tensor, **kwargs: Any) -> Tensor:
        return self.model.predict_next(obs_hist, torch.zeros_like(act_hist), **kwargs)
