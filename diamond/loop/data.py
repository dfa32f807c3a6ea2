"""Replay of real episodes (uint8 frames, atomic .npz files) and the segment sampler of Algorithm 1.

An episode of T transitions holds T+1 frames: `obs[t]` --act[t]--> `obs[t+1]` with reward `rew[t]` (raw),
`end[t]` (terminated, e.g. a life loss in training) and `trunc[t]` (time limit).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from diamond.run.io import CorruptFileError, atomic_write, atomic_write_json, read_json

INDEX_FILE = "index.json"
_FORMAT_VERSION = 1


class Episode:
    """One episode in preallocated arrays that double when full, so an in-progress episode grows cheaply."""

    def __init__(self, first_obs: np.ndarray, capacity: int = 64) -> None:
        first_obs = np.asarray(first_obs)
        if first_obs.dtype != np.uint8 or first_obs.ndim != 3:
            raise ValueError(f"a frame must be uint8 [C, H, W], got {first_obs.dtype} {first_obs.shape}.")
        self._obs = np.zeros((capacity + 1, *first_obs.shape), np.uint8)
        self._obs[0] = first_obs
        self._act = np.zeros(capacity, np.int64)
        self._rew = np.zeros(capacity, np.float32)
        self._end = np.zeros(capacity, bool)
        self._trunc = np.zeros(capacity, bool)
        self.num_steps = 0

    @classmethod
    def from_arrays(cls, obs: np.ndarray, act: np.ndarray, rew: np.ndarray, end: np.ndarray,
                    trunc: np.ndarray) -> Episode:
        """Build from full arrays (obs has one more frame than the transitions)."""
        t = len(act)
        if obs.ndim != 4 or obs.dtype != np.uint8 or len(obs) != t + 1 or any(len(x) != t for x in (rew, end, trunc)):
            raise ValueError(
                f"inconsistent episode arrays: obs {obs.dtype} {obs.shape} needs uint8 [T+1, C, H, W] with "
                f"T = len(act) = {t}; rew/end/trunc lengths {len(rew)}/{len(end)}/{len(trunc)}."
            )
        ep = cls(obs[0], capacity=max(t, 1))
        ep._obs[: t + 1] = obs
        ep._act[:t], ep._rew[:t], ep._end[:t], ep._trunc[:t] = act, rew, end, trunc
        ep.num_steps = t
        if ep._done_before_last():
            raise ValueError("an episode can only end (end or trunc) at its last transition.")
        return ep

    def _done_before_last(self) -> bool:
        return bool((self.end[:-1] | self.trunc[:-1]).any())

    def add_step(self, act: int, rew: float, end: bool, trunc: bool, next_obs: np.ndarray) -> None:
        if self.done:
            raise ValueError("cannot add a step to a finished episode (its last step has end or trunc set).")
        t = self.num_steps
        if t == len(self._act):
            self._grow()
        self._obs[t + 1] = next_obs
        self._act[t], self._rew[t], self._end[t], self._trunc[t] = act, rew, end, trunc
        self.num_steps = t + 1

    def _grow(self) -> None:
        cap = 2 * len(self._act)
        self._obs = np.concatenate([self._obs, np.zeros((cap - len(self._act), *self._obs.shape[1:]), np.uint8)])
        self._act, self._rew, self._end, self._trunc = (
            np.concatenate([x, np.zeros_like(x)]) for x in (self._act, self._rew, self._end, self._trunc)
        )

    @property
    def obs(self) -> np.ndarray:
        return self._obs[: self.num_steps + 1]

    @property
    def act(self) -> np.ndarray:
        return self._act[: self.num_steps]

    @property
    def rew(self) -> np.ndarray:
        return self._rew[: self.num_steps]

    @property
    def end(self) -> np.ndarray:
        return self._end[: self.num_steps]

    @property
    def trunc(self) -> np.ndarray:
        return self._trunc[: self.num_steps]

    @property
    def done(self) -> bool:
        return self.num_steps > 0 and bool(self._end[self.num_steps - 1] or self._trunc[self.num_steps - 1])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"obs": self.obs, "act": self.act, "rew": self.rew, "end": self.end, "trunc": self.trunc}


class ReplayBuffer:
    """All real episodes in memory, mirrored to `directory` by `save()` (one .npz per episode + index.json).

    `save()` is a commit: episode files are replaced atomically, then the index (written last) records
    how many steps of each file belong to the committed state, so a crash at any point leaves the
    previous commit loadable and exact.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = None if directory is None else Path(directory)
        self.episodes: list[Episode] = []
        self._saved_steps: list[int] = []  # steps of each episode already on disk (-1: never saved)

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, i: int) -> Episode:
        return self.episodes[i]

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_steps(self) -> int:
        return sum(ep.num_steps for ep in self.episodes)

    def start_episode(self, first_obs: np.ndarray) -> int:
        """Open a new episode; returns its index (several may be in progress, one per env)."""
        self.episodes.append(Episode(first_obs))
        self._saved_steps.append(-1)
        return len(self.episodes) - 1

    def add_step(self, act: int, rew: float, end: bool, trunc: bool, next_obs: np.ndarray,
                 episode: int | None = None) -> None:
        """Append a transition to `episode` (default: the most recently started one)."""
        if not self.episodes:
            raise ValueError("add_step needs an episode: call start_episode(first_obs) first.")
        self.episodes[-1 if episode is None else episode].add_step(act, rew, end, trunc, next_obs)

    def add_episode(self, episode: Episode) -> int:
        """Append a whole episode (e.g. one read from disk); returns its index."""
        self.episodes.append(episode)
        self._saved_steps.append(-1)
        return len(self.episodes) - 1

    def truncate(self, num_steps: int) -> None:
        """Drop the newest transitions beyond `num_steps` (steps saved after the last checkpoint)."""
        if num_steps > self.num_steps:
            raise ValueError(f"cannot truncate a replay of {self.num_steps} steps to {num_steps} steps.")
        while self.num_steps > num_steps:
            ep, excess = self.episodes[-1], self.num_steps - num_steps
            if ep.num_steps <= excess:
                self.episodes.pop()
                self._saved_steps.pop()
            else:
                ep.num_steps -= excess
                ep._end[ep.num_steps - 1] = ep._trunc[ep.num_steps - 1] = False
        if self.episodes and self.episodes[-1].num_steps == 0:
            self.episodes.pop()
            self._saved_steps.pop()

    def close_open_episode(self) -> None:
        """Mark the newest episode as truncated if it is still in progress (its emulator state is gone)."""
        if self.episodes and not self.episodes[-1].done:
            ep = self.episodes[-1]
            if ep.num_steps == 0:
                self.episodes.pop()
                self._saved_steps.pop()
            else:
                ep._trunc[ep.num_steps - 1] = True
                self._saved_steps[-1] = -1

    def save(self) -> None:
        """Write new or grown episodes, then the index; see the class docstring for crash safety."""
        if self.directory is None:
            raise ValueError("this ReplayBuffer has no directory to save to; pass one to ReplayBuffer(directory).")
        for i, ep in enumerate(self.episodes):
            if self._saved_steps[i] != ep.num_steps:
                arrays = ep.arrays()
                atomic_write(self.directory / _episode_file(i), lambda f, a=arrays: np.savez_compressed(f, **a))
                self._saved_steps[i] = ep.num_steps
        index = {
            "format": _FORMAT_VERSION,
            "num_steps": self.num_steps,
            "episodes": [{"file": _episode_file(i), "num_steps": ep.num_steps} for i, ep in enumerate(self.episodes)],
        }
        atomic_write_json(self.directory / INDEX_FILE, index)

    @classmethod
    def load(cls, directory: str | Path) -> ReplayBuffer:
        """Read back the last committed `save()` exactly; a damaged file raises CorruptFileError naming it."""
        directory = Path(directory)
        index_path = directory / INDEX_FILE
        try:
            index = read_json(index_path)
        except FileNotFoundError:
            raise CorruptFileError(f"{index_path} is missing; {_DAMAGED}") from None
        try:
            lengths = [int(entry["num_steps"]) for entry in index["episodes"]]
            valid = index["format"] == _FORMAT_VERSION and all(
                entry["file"] == _episode_file(i) for i, entry in enumerate(index["episodes"])
            )
        except (KeyError, TypeError, ValueError):
            valid = False
        if not valid:
            raise CorruptFileError(f"{index_path}: not a replay index of format {_FORMAT_VERSION}; {_DAMAGED}")
        buf = cls(directory)
        for i, num_steps in enumerate(lengths):
            buf.add_episode(_read_episode(directory / _episode_file(i), num_steps))
            buf._saved_steps[-1] = num_steps
        return buf


_DAMAGED = "the replay is damaged: move the run folder away and start the run again"


def _episode_file(i: int) -> str:
    return f"episode_{i:06d}.npz"


def _read_episode(path: Path, num_steps: int) -> Episode:
    """Load one episode file, cut to the committed length."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("obs", "act", "rew", "end", "trunc")}
    except FileNotFoundError:
        raise CorruptFileError(f"{path}: episode file listed in the replay index is missing; {_DAMAGED}") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        # not numpy's message: for a non-.npz file it suggests allow_pickle, which must never be used on these files
        raise CorruptFileError(f"{path}: not a readable episode file (corrupt or truncated); {_DAMAGED}") from e
    if len(arrays["act"]) < num_steps:
        raise CorruptFileError(
            f"{path}: holds {len(arrays['act'])} steps but the replay index commits {num_steps}."
        )
    arrays = {k: v[: num_steps + 1] if k == "obs" else v[:num_steps] for k, v in arrays.items()}
    try:
        return Episode.from_arrays(**arrays)
    except ValueError as e:
        raise CorruptFileError(f"{path}: {e}") from e


@dataclass
class Segment:
    """A batch of fixed-length windows over episodes; position i holds frame i and the transition i -> i+1.

    `mask` marks real frames; `trans_mask` marks positions whose transition exists in the episode
    (act/rew/end there are real). Padding is obs 0, act 0, rew 0, end False.
    """

    obs: np.ndarray | torch.Tensor  # uint8 [B, S, C, H, W]
    act: np.ndarray | torch.Tensor  # int64 [B, S]
    rew: np.ndarray | torch.Tensor  # float32 [B, S], raw rewards
    end: np.ndarray | torch.Tensor  # bool [B, S]
    mask: np.ndarray | torch.Tensor  # bool [B, S]
    trans_mask: np.ndarray | torch.Tensor  # bool [B, S]

    def to_torch(self, device: torch.device | str = "cpu") -> Segment:
        return Segment(**{f.name: torch.as_tensor(getattr(self, f.name)).to(device) for f in fields(self)})


def _num_positions(ep: Episode, seq_len: int, pad: str) -> int:
    """How many distinct anchors an episode offers: last frames (left) or transitions (both)."""
    if pad == "left":
        return ep.num_steps + 1 if seq_len == 1 else ep.num_steps
    return ep.num_steps


def _episode_probs(counts: np.ndarray, recency_weights: tuple[float, ...] | None) -> np.ndarray:
    """Recency groups: sampleable episodes in order, split into len(weights) contiguous groups (the last
    takes the remainder), group g drawn with weights[g] (renormalised over non-empty groups), uniform inside.
    Fewer episodes than groups: by length, uniform over steps (as the released sampler does)."""
    probs = np.zeros(len(counts))
    ok = np.flatnonzero(counts > 0)
    if recency_weights is None or len(ok) < len(recency_weights):
        probs[ok] = counts[ok] / counts[ok].sum()
        return probs
    k = len(recency_weights)
    size = len(ok) // k
    sizes = [size] * (k - 1) + [len(ok) - size * (k - 1)]
    per_ep = np.concatenate([np.full(s, w / s if s else 0.0) for w, s in zip(recency_weights, sizes)])
    if per_ep.sum() <= 0:
        raise ValueError(f"recency_weights {recency_weights} give zero probability to every non-empty group.")
    probs[ok] = per_ep / per_ep.sum()
    return probs


def sample_segments(
    buffer: ReplayBuffer, batch_size: int, seq_len: int, rng: np.random.Generator, *,
    pad: Literal["left", "both"], recency_weights: tuple[float, ...] | None = (0.1, 0.1, 0.1, 0.7),
) -> Segment:
    """Sample `batch_size` windows of `seq_len` frames.

    pad="left" (denoiser, actor-critic burn-in): the last frame is real and, for seq_len > 1, so is the
    one before it; the window may start before the episode (left padding). Its last frame is uniform
    over the episode's frames 1..T.
    pad="both" (reward/end model): the window contains at least one real transition t -> t+1 (t uniform
    over the episode), placed uniformly over the window, so padding may appear on either side.
    """
    if pad not in ("left", "both"):
        raise ValueError(f"pad must be 'left' or 'both', got {pad!r}.")
    if seq_len < 1 or (pad == "both" and seq_len < 2) or batch_size < 1:
        raise ValueError(
            f"invalid batch_size={batch_size} / seq_len={seq_len}: need batch_size >= 1 and seq_len >= 1 "
            "(>= 2 for pad='both', which needs a whole transition)."
        )
    if recency_weights is not None and (min(recency_weights) < 0 or sum(recency_weights) <= 0):
        raise ValueError(f"recency_weights must be non-negative with a positive sum, got {recency_weights}.")
    counts = np.array([_num_positions(ep, seq_len, pad) for ep in buffer.episodes], dtype=np.int64)
    if counts.sum() == 0:
        raise ValueError(f"the replay buffer has no episode long enough for a {pad!r} segment of {seq_len} frames.")
    ep_ids = rng.choice(len(counts), size=batch_size, p=_episode_probs(counts, recency_weights))
    first = buffer.episodes[0].obs
    obs = np.zeros((batch_size, seq_len, *first.shape[1:]), np.uint8)
    act = np.zeros((batch_size, seq_len), np.int64)
    rew = np.zeros((batch_size, seq_len), np.float32)
    end = np.zeros((batch_size, seq_len), bool)
    mask = np.zeros((batch_size, seq_len), bool)
    trans_mask = np.zeros((batch_size, seq_len), bool)
    for b, e in enumerate(ep_ids):
        ep = buffer.episodes[e]
        anchor = int(rng.integers(counts[e]))
        if pad == "left":
            last = anchor if seq_len == 1 else anchor + 1  # frames 1..T keep a real frame before them
            start = last - seq_len + 1
        else:
            start = anchor - int(rng.integers(seq_len - 1))
        idx = np.arange(start, start + seq_len)
        real = (idx >= 0) & (idx <= ep.num_steps)
        trans = (idx >= 0) & (idx < ep.num_steps)
        obs[b, real] = ep.obs[idx[real]]
        act[b, trans], rew[b, trans], end[b, trans] = ep.act[idx[trans]], ep.rew[idx[trans]], ep.end[idx[trans]]
        mask[b], trans_mask[b] = real, trans
    return Segment(obs=obs, act=act, rew=rew, end=end, mask=mask, trans_mask=trans_mask)


DATASET_SUMMARY = "summary.json"  # a static dataset's settings and size, written last: its presence means complete


def reuse_dataset(out_dir: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of the complete static dataset at `out_dir` when it was collected with `settings` (and its replay
    holds the steps the summary lists); None after clearing the leftovers of an interrupted collection. Another
    dataset in the folder is refused: one sentence naming the settings that differ."""
    summary_path = out_dir / DATASET_SUMMARY
    if summary_path.exists():
        summary = read_json(summary_path)
        differing = {k: (summary.get(k), v) for k, v in settings.items() if summary.get(k) != v}
        if differing:
            raise ValueError(f"{summary_path} was collected with other settings (stored, asked): {differing}; "
                             "use another directory or delete this one.")
        if ReplayBuffer.load(out_dir).num_steps != summary["num_steps"]:
            raise ValueError(f"{out_dir}: the replay does not hold the {summary['num_steps']} steps its summary lists.")
        return summary
    for stale in [*out_dir.glob("episode_*.npz"), out_dir / INDEX_FILE]:
        stale.unlink(missing_ok=True)
    return None


def class_frequencies(buffer: ReplayBuffer) -> tuple[list[float], list[float]]:
    """Frequencies of the reward signs (-1, 0, 1) and of the end flag over every transition of `buffer`."""
    rew = np.concatenate([np.sign(ep.rew) + 1 for ep in buffer.episodes]).astype(np.int64)
    end = np.concatenate([ep.end for ep in buffer.episodes]).astype(np.int64)
    return (list(np.bincount(rew, minlength=3) / len(rew)), list(np.bincount(end, minlength=2) / len(end)))


def to_float(obs: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the pixel range of every network."""
    return obs.float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (clamped, rounded): the inverse of to_float on its image."""
    return x.clamp(-1.0, 1.0).add(1.0).mul(127.5).round().to(torch.uint8)
