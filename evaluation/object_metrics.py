"""Object-level fidelity of world-model rollouts on Breakout: do the walls, the paddle and a moving ball persist, and
do paddle, ball and brick count follow the real game under the same actions (docs/world-model-metrics.md)?

From each real probe state (evaluation/emulator_wm.Probes) a policy plays the real game; its actions are replayed
open loop in the world model, through the same door as every other metric (`num_history`, `predict_next`), and the
state read from each imagined frame (evaluation/objects.frame_state) is compared with the RAM state of the real
future at the same step. Three reference rows go through the same door: the emulator (ceiling: what is left is the
read-out's own error), repeat-last-frame (objects kept, dynamics lost) and an empty playfield (walls and score kept,
bricks, paddle and ball removed: what a nearest-real-frame distance scores ×2.76 the real frames').
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from evaluation.decision import PolicyFactory, bootstrap_ci, rollout
from evaluation.emulator_wm import CopyLastFrame, EmulatorWorldModel, Probes, emulator_env, restore
from evaluation.objects import MISS_PX, PLAYFIELD, SCREEN, frame_state, ram_state, readout_accuracy

CEILING, REPEAT, EMPTY = "emulator (ceiling)", "repeat last frame", "empty playfield"
METRICS = ("persistence", "paddle_error", "ball_error", "brick_count_error")  # persistence: higher is better
MOVED_PX = 1.0  # a ball that moved less than this since the previous frame is frozen, not in play


@dataclass
class ObjectSetup:
    """The real futures every model is compared with: actions [K, T], their RAM states (`ram_state` fields, [K, T]
    each) and the read-out's accuracy on their frames (the ceiling of every metric)."""

    probes: Probes
    actions: np.ndarray
    truth: dict[str, np.ndarray]
    readout: dict[str, float]


def prepare_objects(probes: Probes, policy: PolicyFactory, horizon: int, seed: int) -> ObjectSetup:
    """Play `policy` (a fresh one per probe) for `horizon` steps from every probe in the real game, keeping its
    actions, the RAM after each step and the frames (for the read-out's accuracy)."""
    if horizon < 1:
        raise ValueError(f"the object metrics need a horizon >= 1, got {horizon}.")
    env = emulator_env(probes.game)
    k = len(probes)
    actions, rams = np.zeros((k, horizon), np.int64), np.zeros((k, horizon, 128), np.uint8)
    frames = np.zeros((k, horizon, *probes.obs.shape[2:]), np.uint8)
    for i, state in enumerate(probes.states):
        restore(env, state)
        play = policy(np.random.default_rng([seed, i]))
        for t in range(horizon):
            actions[i, t] = play(env)
            frames[i, t] = env.step(int(actions[i, t]))[0]
            rams[i, t] = env.ale.getRAM()
    accuracy = readout_accuracy(frames.reshape(-1, *frames.shape[2:]), rams.reshape(-1, 128))
    return ObjectSetup(probes, actions, ram_state(rams), accuracy)


class EmptyPlayfield:
    """Floor: the last frame with everything inside the walls blacked out (bricks, paddle, ball); walls and score
    stay, so pixel distances find it close to real frames."""

    def __init__(self, num_history: int) -> None:
        self.num_history = num_history

    def predict_next(self, obs_hist: torch.Tensor, act_hist: torch.Tensor, **_: Any) -> torch.Tensor:
        frame = obs_hist[:, -1].clone()
        size = frame.shape[-1]
        top = int(np.ceil(PLAYFIELD[0] * size / SCREEN[0]))
        left, right = int(PLAYFIELD[2] * size / SCREEN[1]), int(np.ceil(PLAYFIELD[3] * size / SCREEN[1]))
        frame[:, :, top:, left:right] = -1.0  # black on the [-1, 1] scale
        return frame


def references(probes: Probes) -> dict[str, Any]:
    """The ceiling and the two floors, as world models."""
    num_history = probes.obs.shape[1]
    return {CEILING: EmulatorWorldModel(probes), REPEAT: CopyLastFrame(num_history), EMPTY: EmptyPlayfield(num_history)}


def _miss(distance: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Error in [0, 1]: the distance over MISS_PX, capped; an object not seen is a miss (1)."""
    return np.where(seen, np.minimum(np.nan_to_num(distance, nan=MISS_PX) / MISS_PX, 1.0), 1.0)


def step_errors(seen: Mapping[str, np.ndarray], previous: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray]
                ) -> dict[str, np.ndarray]:
    """Each metric per rollout and step ([K, T]) from the read-out of the imagined frames (`seen`), of the frame
    before each (`previous`) and the real future's RAM state (`truth`).

    persistence: the share of the objects the real game shows that the frame shows: walls, paddle, and, while the
    real ball is in play, a ball that moved since the previous frame (a frozen ball is a picture, not a ball in
    play). paddle_error, ball_error: the distance to the real one over MISS_PX, capped at 1, a missing paddle 1; a
    ball where the real game has none, or none where it has one, 1. brick_count_error: |bricks seen - real|."""
    moved = ~previous["ball"] | (np.hypot(seen["ball_x"] - previous["ball_x"], seen["ball_y"] - previous["ball_y"])
                                 >= MOVED_PX)
    in_play = truth["ball"]
    ball_kept = in_play & seen["ball"] & moved
    persistence = (seen["walls"].astype(float) + seen["paddle"] + ball_kept) / (2.0 + in_play)
    ball_dist = np.hypot(seen["ball_x"] - truth["ball_x"], seen["ball_y"] - truth["ball_y"])
    ball_error = np.where(in_play, _miss(ball_dist, seen["ball"]), seen["ball"].astype(float))
    return {"persistence": persistence,
            "paddle_error": _miss(np.abs(seen["paddle_x"] - truth["paddle_x"]), seen["paddle"]),
            "ball_error": ball_error,
            "brick_count_error": np.abs(seen["bricks"].sum((-2, -1)) - truth["bricks"].sum((-2, -1))).astype(float)}


def score_objects(model: Any, setup: ObjectSetup) -> dict[str, np.ndarray]:
    """The metrics of one world model per rollout and step, [K, T] each."""
    frames = rollout(model, setup.probes, setup.actions[:, None])[:, 0]  # [K, T, 3, H, W]
    seen = frame_state(frames)
    first = frame_state(setup.probes.obs[:, -1])
    previous = {k: np.concatenate([first[k][:, None], v[:, :-1]], axis=1) for k, v in seen.items()}
    return step_errors(seen, previous, setup.truth)


def summary_row(name: str, errors: Mapping[str, np.ndarray], bootstrap: int, seed: int) -> dict[str, Any]:
    """Each metric's mean over steps and probes with a 95 % percentile bootstrap CI over probes (every metric is
    non-negative, so is every resampled mean: no interval below 0)."""
    row: dict[str, Any] = {"setting": name}
    for metric in METRICS:
        per_probe = errors[metric].mean(axis=1)
        stat: Callable[[np.ndarray], float] = lambda i, v=per_probe: float(v[i].mean())
        row[metric] = stat(np.arange(len(per_probe)))
        row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = bootstrap_ci(stat, len(per_probe), bootstrap, seed)
    return row


def object_fidelity(models: Mapping[str, Any], setup: ObjectSetup, bootstrap: int = 1000, seed: int = 0
                    ) -> dict[str, Any]:
    """JSON-ready: the reference rows then one row per model, the per-step curves (mean over probes), the per-probe
    means (so runs on the same probes can be pooled) and the read-out's accuracy on the real futures."""
    scores = {name: score_objects(m, setup) for name, m in {**references(setup.probes), **models}.items()}
    rows = [summary_row(name, e, bootstrap, seed) for name, e in scores.items()]
    curves = [{"setting": name, "step": t + 1, **{m: float(e[m][:, t].mean()) for m in METRICS}}
              for name, e in scores.items() for t in range(setup.actions.shape[1])]
    return {"rows": rows, "curves": curves, "readout_accuracy": setup.readout, "num_probes": len(setup.probes),
            "horizon": int(setup.actions.shape[1]), "probe_digest": setup.probes.digest(),
            "per_probe": {name: {m: e[m].mean(1).tolist() for m in METRICS} for name, e in scores.items()}}
