"""One player's game for diamond.play: the world model's imagined game and the real emulator, started from the
same real context and stepped with the same actions; the keys that make each ALE action; the per-step error.

The imagined step is the one of diamond.models.world_model.imagine: the new action fills the last slot beside the
newest frame, D_θ samples the next frame from the L-frame window (and the world model's memory of earlier
frames, diamond/models/registry.py), R_ψ scores the transition, and both windows slide together."""

from __future__ import annotations

import base64
import itertools
import threading
import time
from typing import Any

import cv2
import numpy as np
import torch

from diamond.loop.agent import Agent
from diamond.loop.config import Config
from diamond.loop.data import to_float, to_uint8
from diamond.loop.envs import make_env
from diamond.models.registry import declarations
from diamond.models.world_model import burn_in

KEYS = ("up", "down", "left", "right", "fire")  # what the page sends: arrows / WASD and Space
MAX_STEPS = 50  # denoising steps the page may ask for
MAX_CONTEXT = 2**31 - 1  # a context number seeds the emulator, which takes 31-bit seeds
WARMUP_MAX = 60  # a new context starts after 0..60 random real steps past the first L frames, so contexts differ
_MODEL_LOCK = threading.Lock()  # pages share one agent; a step sets its sampler, samples, restores it


def action_for_keys(meanings: list[str], keys: set[str]) -> int:
    """The game action the held keys make: vertical + horizontal + FIRE, as ALE composes its meanings
    (UPRIGHTFIRE); a combination the game lacks drops keys (fewest first) until one exists, else NOOP (0)."""
    parts = [p for p in (_pick(keys, "up", "down"), _pick(keys, "right", "left")) if p]
    parts += ["fire"] if "fire" in keys else []
    for size in range(len(parts), 0, -1):
        for kept in itertools.combinations(parts, size):
            name = "".join(kept).upper()
            if name in meanings:
                return meanings.index(name)
    return 0


def _pick(keys: set[str], a: str, b: str) -> str:
    """a or b when exactly one of the opposite pair is held."""
    return a if a in keys and b not in keys else b if b in keys and a not in keys else ""


def keys_for_action(meaning: str) -> list[str]:
    """The keys that make an ALE action meaning (the page's key table): 'UPLEFTFIRE' -> [up, left, fire]."""
    return [k for k in KEYS if k.upper() in meaning]


def png_data_url(frame: np.ndarray) -> str:
    """A [3, H, W] uint8 RGB frame as a PNG data URL the page shows as is."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(frame.transpose(1, 2, 0)[:, :, ::-1]))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def frame_mse(imagined: np.ndarray, real: np.ndarray) -> float:
    """Per-step error between the two panels: mean squared difference of pixels in [0, 1]."""
    return float(np.mean((imagined.astype(np.float64) / 255.0 - real.astype(np.float64) / 255.0) ** 2))


class PlaySession:
    """One page's game: the imagined state (L frames and actions, R_ψ's and the policy's LSTM states) and the
    real emulator, started from the same real context and stepped with the same actions.

    A context number seeds everything random in it (the emulator's no-ops and warm-up actions, the sampler's
    noise, the policy's choices), so one context replayed with the same actions gives the same frames."""

    def __init__(self, agent: Agent, cfg: Config, device: torch.device) -> None:
        self.agent, self.cfg, self.device = agent, cfg, device
        wm = agent.world_model
        self.env = make_env(cfg.env.game, train=False, size=cfg.env.size, frameskip=cfg.env.frameskip,
                            noop_max=cfg.env.noop_max, max_episode_frames=cfg.env.eval_max_episode_frames,
                            pool_first_frame=cfg.env.pool_first_frame)
        self.meanings: list[str] = list(self.env.unwrapped.get_action_meanings())
        self.samplers: list[str] = list(declarations(wm).samplers)  # the model's declaration (docs/plugins.md)
        self.sampler: str | None = wm.sampler if self.samplers else None
        self.num_steps: int = int(getattr(wm, "num_steps", 1))
        self.context, self.t, self.over = 0, 0, False
        self.end_at: int | None = None  # the first step of this context where R_ψ predicted the episode's end

    def configure(self, num_steps: int, sampler: str | None) -> None:
        """Denoising steps (1..MAX_STEPS) and sampler (one the world model declares) for the next frames."""
        if not 1 <= num_steps <= MAX_STEPS:
            raise ValueError(f"denoising steps must be 1..{MAX_STEPS}, got {num_steps}")
        if sampler is not None and sampler not in self.samplers:
            raise ValueError(f"sampler {sampler!r} is not one of {self.samplers}")
        self.num_steps, self.sampler = num_steps, sampler if self.samplers else None

    def restart(self, context: int) -> dict[str, Any]:
        """Reset the emulator (seeded by `context`), play random actions to a random point, and take its last
        L frames and actions as the shared start; burn in R_ψ and the policy on them (as imagination does)."""
        if not 0 <= context <= MAX_CONTEXT:
            raise ValueError(f"a context number is 0..{MAX_CONTEXT}, got {context}")
        L = self.agent.world_model.num_history
        rng = np.random.default_rng(context)
        self.context, self.t, self.over, self.end_at = context, 0, False, None
        self.generator = torch.Generator(self.device).manual_seed(context)
        self.policy_generator = torch.Generator().manual_seed(context)
        frames, acts = [self.env.reset(seed=context)[0]], []
        for _ in range(L - 1 + int(rng.integers(0, WARMUP_MAX + 1))):
            action = int(rng.integers(len(self.meanings)))
            obs, _, terminated, truncated, _ = self.env.step(action)
            if terminated or truncated:  # a game over while warming up: start that game again
                frames, acts = [self.env.reset()[0]], []
                continue
            frames.append(obs)
            acts.append(action)
        frames, acts = frames[-L:], acts[max(0, len(acts) - (L - 1)):] if L > 1 else []
        while len(frames) < L:  # only if the warm-up ended in a game over: pad with the first frame and NOOPs
            frames.insert(0, frames[0])
            acts.insert(0, 0)
        self.hist_obs = to_float(torch.from_numpy(np.stack(frames))).to(self.device)[None]
        self.hist_act = torch.tensor([acts + [0]], dtype=torch.long, device=self.device)  # last slot: next action
        with torch.no_grad():
            self.ac_state, self.re_state = burn_in(self.agent.actor_critic, self.agent.reward_end,
                                                   self.hist_obs, self.hist_act)
        self.memory = None  # the world model's memory of frames before the window (diamond/models/registry.py)
        return self._frame(frames[-1], frames[-1], action=None, by="context", reward=0, end=False, real_reward=0.0,
                           step_s=0.0)

    @torch.no_grad()
    def step(self, action: int | None) -> dict[str, Any]:
        """One step of both games with `action` (None: the policy picks it from the imagined frame)."""
        if self.over:
            raise RuntimeError("the real game is over; restart from a new context")
        start = time.perf_counter()
        logits, _, self.ac_state = self.agent.actor_critic(self.hist_obs[:, -1], self.ac_state)
        by = "you"
        if action is None:
            probs = logits.float().softmax(-1).cpu()
            action, by = int(torch.multinomial(probs, 1, generator=self.policy_generator)), "policy"
        self.hist_act[:, -1] = action  # the new action beside the newest frame (world_model.imagine)
        wm = self.agent.world_model
        with _MODEL_LOCK:
            loaded = getattr(wm, "sampler", None)
            if self.sampler is not None:
                wm.sampler = self.sampler
            try:
                nxt = wm.predict_next(self.hist_obs, self.hist_act, self.num_steps, generator=self.generator,
                                      state=self.memory)
            finally:  # the shared model keeps the sampler it was loaded with
                if self.sampler is not None:
                    wm.sampler = loaded
            rl, el, self.re_state = self.agent.reward_end(self.hist_obs[:, -1:], self.hist_act[:, -1:], nxt[:, None],
                                                          self.re_state)
            self.memory = wm.memory(self.hist_obs[:, :1], self.hist_act[:, :1], self.memory)  # leaves the window
        step_s = time.perf_counter() - start
        self.hist_obs = torch.cat([self.hist_obs[:, 1:], nxt[:, None]], dim=1)
        self.hist_act = torch.cat([self.hist_act[:, 1:], self.hist_act[:, -1:]], dim=1)
        real, real_reward, _, truncated, info = self.env.step(action)
        self.t += 1
        self.over = bool(info["game_over"] or truncated)
        imagined = to_uint8(nxt[0]).cpu().numpy()
        end = bool(el[0, 0].argmax())
        if end and self.end_at is None:  # imagination in training stops here; the page marks it and plays on
            self.end_at = self.t
        return self._frame(imagined, real, action=action, by=by, reward=int(rl[0, 0].argmax()) - 1, end=end,
                           real_reward=real_reward, step_s=step_s)

    def _frame(self, imagined: np.ndarray, real: np.ndarray, *, action: int | None, by: str, reward: int, end: bool,
               real_reward: float, step_s: float) -> dict[str, Any]:
        """The page's message for one step: both frames, the error between them, and what each game said.
        reward/end are R_ψ's most likely classes, end_at the first step it predicted the end (None: not yet);
        real_reward is the emulator's raw reward."""
        return {"type": "frame", "t": self.t, "context": self.context, "imagined": png_data_url(imagined),
                "real": png_data_url(real), "mse": frame_mse(imagined, real), "action": action,
                "meaning": None if action is None else self.meanings[action], "by": by, "reward": reward,
                "end": end, "end_at": self.end_at, "real_reward": real_reward, "real_over": self.over,
                "step_ms": 1000.0 * step_s, "num_steps": self.num_steps, "sampler": self.sampler}

    def hello(self, source: str, fps: float) -> dict[str, Any]:
        """The page's first message: the game, its actions with their keys, and the settings it may change."""
        actions = [{"action": i, "meaning": m, "keys": keys_for_action(m)} for i, m in enumerate(self.meanings)]
        return {"type": "hello", "game": self.cfg.env.game, "source": source, "fps_cap": fps, "actions": actions,
                "samplers": self.samplers, "sampler": self.sampler, "num_steps": self.num_steps, "max_steps": MAX_STEPS}

    def close(self) -> None:
        self.env.close()
