"""Is a world model useful for decisions? Action following, counterfactual fidelity and policy evaluation.

Pixel metrics (evaluation/video.py, evaluation/drift.py) ask whether frames look right; these ask whether an agent
could rely on them (docs/world-model-metrics.md: WorldModelGym's behavioural fidelity, WorldArena's policy
evaluator, MineWorld / GameWorld Score's inverse-dynamics action accuracy, the released repo's issue #33 about a
model that ignores its actions). Every metric starts from the same real states (evaluation/emulator_wm.Probes)
whose true futures the emulator gives for any action, and is read between a ceiling (the emulator as a world model)
and a floor (an action-blind model); a metric whose ceiling and floor are not `separated` is not reported.

A world model is anything with `num_history` (L) and `predict_next(obs_hist [B, L, 3, H, W] in [-1, 1],
act_hist [B, L]) -> [B, 3, H, W]` (a_t last); a reward model anything called like R_ψ
(diamond/models/nets/reward_end.py): `(obs, act, next_obs [B, T, ...], state) -> (reward logits [B, T, 3], end
logits [B, T, 2], state)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from diamond.loop.data import to_float, to_uint8
from evaluation.emulator_wm import Policy, Probes, emulator_env, restore

PolicyFactory = Callable[[np.random.Generator], Policy]  # a fresh policy (its own ε-stream) per real rollout


@dataclass(frozen=True)
class ActionMerge:
    """Actions grouped into classes an observer can tell apart; `agreement[a, b]` is the fraction of probed states
    where a and b gave the same next frame."""

    classes: tuple[tuple[int, ...], ...]
    agreement: np.ndarray

    def labels(self, actions: np.ndarray) -> np.ndarray:
        lookup = np.empty(sum(len(c) for c in self.classes), np.int64)
        for i, members in enumerate(self.classes):
            lookup[list(members)] = i
        return lookup[np.asarray(actions)]

    @property
    def representatives(self) -> np.ndarray:
        return np.array([c[0] for c in self.classes], np.int64)


def _device(model: Any) -> torch.device:
    params = model.parameters() if hasattr(model, "parameters") else iter(())
    return next(params, torch.empty(0)).device


def _step_all(model: Any, obs: np.ndarray, act: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """One predicted frame per context (uint8 [B, L, ...], real actions [B, L]) with its last action replaced."""
    hist = act.copy()
    hist[:, -1] = actions
    device = _device(model)
    out = model.predict_next(to_float(torch.from_numpy(obs).to(device)), torch.from_numpy(hist).to(device))
    return to_uint8(out).cpu().numpy()


def merge_actions_by_effect(emulator: Any, probes: Probes, num_actions: int, threshold: float = 0.5) -> ActionMerge:
    """Merge actions whose next frame is identical in at least `threshold` of the probed real states (transitively).

    Measured with the emulator, not assumed: Breakout's FIRE only differs from NOOP while no ball is in play, so
    the two merge; RIGHT at the right wall is a NOOP there only, so RIGHT stays its own class."""
    nxt = np.stack([_step_all(emulator, probes.obs, probes.act, np.full(len(probes), a)) for a in range(num_actions)])
    same = np.all(nxt[:, None] == nxt[None, :], axis=(3, 4, 5)).mean(axis=2)
    parent = list(range(num_actions))

    def root(a: int) -> int:
        while parent[a] != a:
            a = parent[a]
        return a

    for a in range(num_actions):
        for b in range(a + 1, num_actions):
            if same[a, b] >= threshold:
                parent[root(b)] = root(a)
    groups: dict[int, list[int]] = {}
    for a in range(num_actions):
        groups.setdefault(root(a), []).append(a)
    return ActionMerge(tuple(tuple(g) for g in groups.values()), same)


def idm_inputs(before: np.ndarray, current: np.ndarray, after: np.ndarray, gain: float = 4.0) -> torch.Tensor:
    """The inverse-dynamics model's input [B, 9, H, W]: frame t in [-1, 1] and the two frame differences (t+1 - t,
    t - t-1) amplified by `gain`: what moved is what tells the action, and it is a few pixels (Breakout's paddle)."""
    x = [to_float(torch.from_numpy(f)) for f in (before, current, after)]
    return torch.cat([x[1], gain * (x[2] - x[1]), gain * (x[1] - x[0])], dim=1)


@torch.no_grad()
def action_following(model: Any, idm: torch.nn.Module, probes: Probes, merge: ActionMerge) -> np.ndarray:
    """Inverse-dynamics accuracy on the model's next frame after each action class from each probe: [K, C] in {0, 1}.

    Every class is asked once per state, so the action cannot be guessed from the state (the expert's could), and
    chance is 1 / C. The emulator scores the ceiling; a model that ignores its action scores about chance."""
    k, c = len(probes), len(merge.classes)
    before = probes.obs[:, -2] if probes.obs.shape[1] > 1 else probes.obs[:, -1]
    correct = np.zeros((k, c))
    for j, action in enumerate(merge.representatives):
        nxt = _step_all(model, probes.obs, probes.act, np.full(k, action))
        pred = idm(idm_inputs(before, probes.obs[:, -1], nxt)).argmax(-1).numpy()
        correct[:, j] = pred == j
    return correct


@torch.no_grad()
def rollout(model: Any, probes: Probes, actions: np.ndarray) -> np.ndarray:
    """Open loop from every probe under each of its action sequences: actions [K, S, T] -> uint8 [K, S, T, 3, H, W]."""
    k, s, t = actions.shape
    device = _device(model)
    obs = to_float(torch.from_numpy(np.repeat(probes.obs, s, axis=0)).to(device))
    hist = torch.from_numpy(np.repeat(probes.act, s, axis=0)).to(device)
    flat = torch.from_numpy(actions.reshape(k * s, t)).to(device)
    out = np.empty((k * s, t, *probes.obs.shape[2:]), np.uint8)
    memory, state = getattr(model, "memory", None), None  # a recurrent model (docs/plugins.md) carries a state
    for i in range(t):
        hist = torch.cat([hist[:, :-1], flat[:, i : i + 1]], dim=1)
        nxt = model.predict_next(obs, hist, **({} if state is None else {"state": state}))
        out[:, i] = to_uint8(nxt).cpu().numpy()
        if memory is not None:
            state = memory(obs[:, :1], hist[:, :1], state)  # the frame leaving the window, with its action
        obs = torch.cat([obs[:, 1:], to_float(torch.from_numpy(out[:, i]).to(device))[:, None]], dim=1)
        hist = torch.cat([hist[:, 1:], hist[:, -1:]], dim=1)
    return out.reshape(k, s, t, *out.shape[2:])


def counterfactual_sequences(merge: ActionMerge, horizon: int) -> np.ndarray:
    """One sequence per action class, holding its representative: [C, T]; held actions drive futures furthest
    apart (Breakout: paddle to one wall, to the other, left alone)."""
    return np.repeat(merge.representatives[:, None], horizon, axis=1)


def frame_mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean squared error over the last three (pixel) axes, pixels scaled to [0, 1]."""
    d = (a.astype(np.float64) - b.astype(np.float64)) / 255.0
    return (d ** 2).mean(axis=(-3, -2, -1))


def counterfactual_error(imagined: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Per-step error of each imagined counterfactual against its real counterpart: [K, S, T]."""
    return frame_mse(imagined, real)


def counterfactual_spread(futures: np.ndarray) -> np.ndarray:
    """How far apart the futures of different action sequences from the same state are: the mean pairwise
    per-step MSE over the S sequences, [K, T]. Compare the imagined spread with the real one: an action-blind
    model has none; a model that follows its actions has as much as the game."""
    s = futures.shape[1]
    pairs = [frame_mse(futures[:, i], futures[:, j]) for i in range(s) for j in range(i + 1, s)]
    return np.mean(pairs, axis=0)


def counterfactual_match(imagined: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Does each imagined future resemble its own real counterpart more than the other sequences' real futures?
    [K, S] in [0, 1]: 1 when its nearest real future (MSE over the whole clip) is its own, 1/m for an m-way tie,
    so a model whose futures ignore the actions scores 1 / S."""
    dist = frame_mse(imagined[:, :, None], real[:, None, :]).mean(axis=-1)  # [K, S imagined, S real]
    nearest = np.isclose(dist, dist.min(axis=-1, keepdims=True), rtol=1e-9, atol=1e-12)
    own = np.diagonal(nearest, axis1=1, axis2=2)
    return own / nearest.sum(axis=-1)


def play_policies(probes: Probes, policies: Mapping[str, PolicyFactory], horizon: int, seed: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each policy played in the real game from every probe: actions [P, K, T], raw rewards and life losses."""
    env = emulator_env(probes.game)
    shape = (len(policies), len(probes), horizon)
    actions, rewards, losses = np.zeros(shape, np.int64), np.zeros(shape), np.zeros(shape, bool)
    for p, factory in enumerate(policies.values()):
        for k, state in enumerate(probes.states):
            restore(env, state)
            policy = factory(np.random.default_rng([seed, p, k]))
            for t in range(horizon):
                lives = env.ale.lives()
                actions[p, k, t] = policy(env)
                _, rewards[p, k, t], _, _, _ = env.step(int(actions[p, k, t]))
                losses[p, k, t] = env.ale.lives() < lives
    return actions, rewards, losses


def real_returns(rewards: np.ndarray, life_loss: np.ndarray) -> np.ndarray:
    """Sum of reward signs up to and including the first life loss (a training episode's end, what R_ψ's end
    head predicts), over the horizon: [...]."""
    alive = np.cumprod(np.concatenate([np.ones_like(life_loss[..., :1]), ~life_loss[..., :-1]], axis=-1), axis=-1)
    return (np.sign(rewards) * alive).sum(-1)


@torch.no_grad()
def imagined_returns(frames: np.ndarray, probes: Probes, actions: np.ndarray, reward_model: Any) -> np.ndarray:
    """Expected return of each imagined trajectory under the reward model: Σ_t S_t E[sign r_t], S_t = Π_{k<t}
    (1 - p(end_k)); R_ψ is burned in on the real context first (Alg. 1). frames [K, P, T, ...], actions [K, P, T]."""
    k, p, t = actions.shape
    ctx = to_float(torch.from_numpy(np.repeat(probes.obs, p, axis=0)))
    ctx_act = torch.from_numpy(np.repeat(probes.act, p, axis=0))
    state = None
    if ctx.shape[1] > 1:
        _, _, state = reward_model(ctx[:, :-1], ctx_act[:, :-1], ctx[:, 1:], None)
    nxt = to_float(torch.from_numpy(frames.reshape(k * p, t, *frames.shape[3:])))
    prev = torch.cat([ctx[:, -1:], nxt[:, :-1]], dim=1)
    rew_logits, end_logits, _ = reward_model(prev, torch.from_numpy(actions.reshape(k * p, t)), nxt, state)
    p_rew, p_end = rew_logits.float().softmax(-1), end_logits.float().softmax(-1)[..., 1]
    expected = p_rew[..., 2] - p_rew[..., 0]
    survival = torch.cumprod(torch.cat([torch.ones_like(p_end[:, :1]), 1 - p_end[:, :-1]], dim=1), dim=1)
    return (survival * expected).sum(-1).reshape(k, p).numpy()


RETURN_TIE = 0.01  # returns closer than a hundredth of a reward are tied: a judge's float noise ranks nothing


def kendall_tau(imagined: np.ndarray, real: np.ndarray, tie: float = RETURN_TIE) -> float:
    """Rank agreement (Kendall τ-b) between the policies' returns inside the model and in the game, with returns
    within `tie` of each other counted as tied; 0 when either side ranks nothing (an action-blind model, or a
    judge that learned only the base rate, gives every policy the same return up to float noise)."""
    i, j = np.triu_indices(len(real), k=1)

    def signs(x: np.ndarray) -> np.ndarray:
        d = np.asarray(x, np.float64)[i] - np.asarray(x, np.float64)[j]
        return np.where(np.abs(d) > tie, np.sign(d), 0.0)

    a, b = signs(imagined), signs(real)
    untied = np.count_nonzero(a) * np.count_nonzero(b)
    return float((a * b).sum() / np.sqrt(untied)) if untied else 0.0


def separated(ceiling: float, floor: float, margin: float) -> bool:
    """A metric is reported only if its ceiling beats its floor by `margin` (in the metric's better direction,
    which for every metric here is up)."""
    return bool(ceiling - floor >= margin)


def bootstrap_ci(statistic: Callable[[np.ndarray], float], n: int, reps: int, seed: int) -> tuple[float, float]:
    """95 % percentile bootstrap interval of `statistic(indices)` over n probes resampled with replacement."""
    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, n, n)) for _ in range(reps)]
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)
