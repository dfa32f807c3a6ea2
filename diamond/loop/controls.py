"""The policies an agent is measured against, so that "learns" means learns. Each plays the same evaluation envs
and seeds as the agent (Trainer.evaluate), draws its actions from an RNG stream seeded by the run's seed alone
(trainer.CONTROL_STREAM: every run of a seed plays the same uniform games), and none looks at the screen:

- `uniform`: the uniform random policy, the usual floor;
- `matched`: actions drawn i.i.d. from the trained agent's own final action frequencies. It beats uniform play
  wherever a decided policy alone helps (on MsPacman, moving one way more often collects more pellets);
- `sticky`: the same frequencies as a Markov chain that also repeats its previous action as often as the agent
  did: a decided and persistent policy.

The fourth control is a training run, not a policy: the same agent trained with its imagined rewards shuffled
(`training.shuffle_imagined_rewards`, `shuffle_rewards` below), a reward-blind agent. A game counts as learnt
when the agent's CI lies above every control's.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np
import torch
from torch import Tensor


class Policy(Protocol):
    """Actions for N lock-stepped envs; `end_episode(i)` when env i's episode ends (its memory starts afresh)."""

    def act(self, obs: np.ndarray) -> np.ndarray: ...

    def end_episode(self, i: int) -> None: ...


class ActionStats:
    """Counts of the actions a policy took and of how often it repeated its previous one (within an episode)."""

    def __init__(self, num_actions: int) -> None:
        self.counts = np.zeros(num_actions, np.int64)
        self.repeats, self.pairs = 0, 0
        self._last = np.zeros(0, np.int64)

    def record(self, actions: np.ndarray) -> None:
        if len(self._last) != len(actions):
            self._last = np.full(len(actions), -1)
        np.add.at(self.counts, actions, 1)
        seen = self._last >= 0
        self.pairs += int(seen.sum())
        self.repeats += int((actions[seen] == self._last[seen]).sum())
        self._last = actions.copy()

    def end_episode(self, i: int) -> None:
        self._last[i] = -1

    @property
    def frequencies(self) -> list[float]:
        return (self.counts / max(1, self.counts.sum())).tolist()

    @property
    def repeat_rate(self) -> float:
        return self.repeats / self.pairs if self.pairs else 0.0


class MatchedPolicy:
    """i.i.d. draws from `frequencies`, or with `keep` > 0 a chain that keeps its previous action with probability
    `keep` and otherwise draws afresh (stationary distribution: `frequencies`). keep = 0 with uniform
    frequencies is the uniform random policy."""

    def __init__(self, frequencies: Sequence[float], rng: np.random.Generator, keep: float = 0.0) -> None:
        p = np.asarray(frequencies, np.float64)
        if p.ndim != 1 or (p < 0).any() or p.sum() <= 0 or not 0.0 <= keep <= 1.0:
            raise ValueError(f"need non-negative frequencies with a positive sum and keep in [0, 1], got "
                             f"{list(frequencies)} and {keep}.")
        self.p, self.keep, self.rng = p / p.sum(), keep, rng
        self._last = np.zeros(0, np.int64)

    def act(self, obs: np.ndarray) -> np.ndarray:
        n = len(obs)
        if len(self._last) != n:
            self._last = np.full(n, -1)
        fresh = self.rng.choice(len(self.p), size=n, p=self.p)
        if self.keep > 0:
            stay = (self._last >= 0) & (self.rng.random(n) < self.keep)
            fresh[stay] = self._last[stay]
        self._last = fresh
        return fresh

    def end_episode(self, i: int) -> None:
        self._last[i] = -1


def sticky_keep(frequencies: Sequence[float], repeat_rate: float) -> float:
    """The `keep` probability at which MatchedPolicy(frequencies) repeats its action at `repeat_rate`: a fresh draw
    repeats with probability sum_a p_a^2, so the rate is keep + (1 - keep) sum_a p_a^2; clipped to [0, 1] (an agent
    that repeats less than i.i.d. draws gets keep 0)."""
    collide = float(np.sum(np.square(np.asarray(frequencies, np.float64) / max(1e-12, float(np.sum(frequencies))))))
    if collide >= 1.0:
        return 0.0
    return float(np.clip((repeat_rate - collide) / (1.0 - collide), 0.0, 1.0))


def control_policies(agent: ActionStats, rng: np.random.Generator) -> dict[str, MatchedPolicy]:
    """The three screen-blind controls, built from the agent's final evaluation statistics."""
    freqs = agent.frequencies
    return {"uniform": MatchedPolicy([1.0] * len(freqs), rng),
            "matched": MatchedPolicy(freqs, rng),
            "sticky": MatchedPolicy(freqs, rng, keep=sticky_keep(freqs, agent.repeat_rate))}


def shuffle_rewards(rewards: Tensor, valid: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """The reward-blind control's imagined rewards: the valid entries of [B, H] permuted over the whole batch (rows
    and steps), so the imagined reward rate is kept but a reward no longer follows the actions that earned it."""
    out = rewards.clone()
    idx = valid.nonzero(as_tuple=True)
    values = rewards[idx]
    out[idx] = values[torch.randperm(len(values), generator=generator, device=values.device)]
    return out
