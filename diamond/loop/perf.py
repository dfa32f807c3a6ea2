"""Fast-path switches of PerfConfig. Each is off by default, and off is the plain path that the tests compare with.

- bf16: `Learner` runs losses and imagination under torch.autocast (bfloat16); sampling keeps float32 state.
- channels_last: 4-D weights stored NHWC, so convolutions pick NHWC kernels (tensor cores on GPU).
- fused_adamw: `make_optimizer(..., fused=True)`.
- compile: each of the three networks compiled in place (`nn.Module.compile`, state_dict keys unchanged).
- cuda_graphs: the gradient-free imagination step (n-step sampling + R_ψ) replayed as one CUDA graph.
- replay_on_device: replay frames mirrored in one uint8 tensor on the device; segments gathered there.

The last two are GPU optimisations written device-agnostically: on CPU they run the same buffer and index
logic eagerly, so CPU tests check it against the plain path; only the capture itself needs CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np
import torch
from torch import Tensor, nn

from diamond.loop.config import PerfConfig
from diamond.loop.data import ReplayBuffer, Segment, sample_segments
from diamond.models.world_model import ReState, WorldModel, world_model_step

TensorFn = Callable[..., tuple[Tensor, ...]]
_ID_BYTES = np.dtype(np.int64).itemsize


def apply_module_switches(agent: nn.Module, perf: PerfConfig) -> nn.Module:
    """channels_last and compile on an Agent (world_model, reward_end, actor_critic) already on its device.

    Both keep the Parameter objects (and state_dict keys), so optimisers and checkpoints are unaffected."""
    if perf.channels_last:
        agent.to(memory_format=torch.channels_last)
    if perf.compile:
        for net in (agent.world_model.net, agent.reward_end, agent.actor_critic):
            net.compile()
    return agent


# ------------------------------------------------------------------------------------------ CUDA graphs


def _autocast_state(device_type: str) -> tuple[bool, torch.dtype]:
    return torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)


@dataclass
class _Capture:
    """Fixed input/output buffers of one input signature, and the CUDA graph replaying into them (None: eager)."""

    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...] | None
    graph: Any  # torch.cuda.CUDAGraph | None


class StaticGraph:
    """Replays `fn(*tensors) -> tuple[Tensor, ...]` from fixed buffers, one capture per input signature.

    On CUDA the first call per signature (shapes, dtypes, device, autocast state) warms `fn` up on a side stream,
    then captures it into a CUDA graph; every call copies the inputs into the captured buffers, replays, and returns
    clones of the outputs (the next replay overwrites the buffers). Off CUDA the same protocol runs `fn` eagerly on
    the buffers, consuming the RNG exactly as a direct call does, so CPU tests compare it with the plain path.
    Autocast's weight-cast cache is disabled inside `fn`: a captured graph must re-cast the (updated) weights.
    """

    def __init__(self, fn: TensorFn, name: str, warmup_iters: int = 3) -> None:
        if warmup_iters < 1:
            raise ValueError(f"warmup_iters must be >= 1 (cuBLAS/cuDNN pick kernels before capture), "
                             f"got {warmup_iters}")
        self.fn, self.name, self.warmup_iters = fn, name, warmup_iters
        self.captures: dict[tuple, _Capture] = {}
        self._pool: Any = None

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        device_type = inputs[0].device.type
        key = (tuple((tuple(t.shape), t.dtype, t.device) for t in inputs), _autocast_state(device_type))
        cap = self.captures.get(key)
        if cap is None:
            cap = self.captures[key] = self._capture(tuple(t.clone() for t in inputs))
        for buf, x in zip(cap.inputs, inputs):
            buf.copy_(x)
        if cap.graph is not None:
            cap.graph.replay()
        else:
            results = self._run(cap.inputs)
            if cap.outputs is None:
                cap.outputs = tuple(torch.empty_like(r) for r in results)
            for buf, r in zip(cap.outputs, results):
                buf.copy_(r)
        return tuple(o.clone() for o in cap.outputs)

    def _run(self, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        device_type = inputs[0].device.type
        enabled, dtype = _autocast_state(device_type)
        with torch.autocast(device_type, dtype=dtype, enabled=enabled, cache_enabled=False):
            return tuple(self.fn(*inputs))

    def _capture(self, inputs: tuple[Tensor, ...]) -> _Capture:
        if inputs[0].device.type != "cuda":
            return _Capture(inputs, None, None)
        side = torch.cuda.Stream(inputs[0].device)
        side.wait_stream(torch.cuda.current_stream(inputs[0].device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup_iters):
                self._run(inputs)
        torch.cuda.current_stream(inputs[0].device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=self._pool):
                outputs = self._run(inputs)
        except RuntimeError as e:
            raise RuntimeError(f"CUDA-graph capture of {self.name} failed ({e}); it must not synchronise with "
                               "the host (e.g. the DDPM paradigm checks its noise levels); "
                               "set perf.cuda_graphs=false") from e
        return _Capture(inputs, outputs, graph)


class CapturedImaginationStep:
    """world_model_step (n-step sampling + R_ψ) behind StaticGraph; a drop-in `step` for `imagine`.

    R_ψ's state None (no burn-in, L = 1) becomes explicit zeros, which the LSTM treats identically."""

    def __init__(self, world_model: WorldModel, reward_end: nn.Module, warmup_iters: int = 3) -> None:
        self.world_model, self.reward_end = world_model, reward_end

        def flat(hist_obs: Tensor, hist_act: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, ...]:
            nxt, rl, el, (h2, c2) = world_model_step(world_model, reward_end, hist_obs, hist_act, (h, c))
            return nxt, rl, el, h2, c2

        self.graph = StaticGraph(flat, "the imagination step", warmup_iters)

    def __call__(self, hist_obs: Tensor, hist_act: Tensor, re_state: ReState
                 ) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor]]:
        if re_state is None:
            zeros = hist_obs.new_zeros(hist_obs.shape[0], self.reward_end.lstm_dim)
            re_state = (zeros, zeros.clone())
        nxt, rl, el, h, c = self.graph(hist_obs, hist_act, *re_state)
        return nxt, rl, el, (h, c)


def imagination_step(agent: nn.Module, perf: PerfConfig) -> CapturedImaginationStep | None:
    """The `step` the Learner passes to `imagine`: captured under perf.cuda_graphs, else None (plain path)."""
    return CapturedImaginationStep(agent.world_model, agent.reward_end) if perf.cuda_graphs else None


# ------------------------------------------------------------------------------------ replay on device


class _IndexEpisode:
    """An episode whose 'frames' are the 8 bytes of each frame's slot in DeviceReplay's frame tensor."""

    def __init__(self, episode: Any, slots: np.ndarray) -> None:
        self.episode, self.slots = episode, slots

    @property
    def num_steps(self) -> int:
        return self.episode.num_steps

    @property
    def obs(self) -> np.ndarray:
        ids = self.slots[: self.episode.num_steps + 1]
        return ids.view(np.uint8).reshape(len(ids), _ID_BYTES, 1, 1)

    @property
    def act(self) -> np.ndarray:
        return self.episode.act

    @property
    def rew(self) -> np.ndarray:
        return self.episode.rew

    @property
    def end(self) -> np.ndarray:
        return self.episode.end


class DeviceReplay:
    """The frames of a ReplayBuffer mirrored into one uint8 tensor on `device` (perf.replay_on_device).

    The ReplayBuffer stays the source of truth (checkpoints, episode bookkeeping). Sampling runs the plain
    `sample_segments` on an index view of it, whose frames are slot numbers, so batches are exactly the plain
    sampler's (same RNG draws); frames are then gathered on the device in one indexing op, instead of a host
    copy of every window plus a host-to-device transfer. Slot 0 is the all-zero padding frame.
    """

    def __init__(self, buffer: ReplayBuffer, device: torch.device | str, capacity: int = 1024) -> None:
        self.buffer, self.device = buffer, torch.device(device)
        self._frames: Tensor | None = None
        self._capacity, self._size = max(2, capacity), 1
        self._index: list[_IndexEpisode] = []
        self._open: list[int] = []  # mirrored episodes that may still grow

    @property
    def num_frames(self) -> int:
        """Frames mirrored so far (padding slot excluded)."""
        return self._size - 1

    def _append(self, frames: np.ndarray) -> np.ndarray:
        """Upload frames [N, C, H, W] (pinned, asynchronous on CUDA); return their slots."""
        n = len(frames)
        if self._frames is None:
            self._frames = torch.zeros((self._capacity, *frames.shape[1:]), dtype=torch.uint8, device=self.device)
        if self._size + n > len(self._frames):
            grown = torch.zeros((max(2 * len(self._frames), self._size + n), *self._frames.shape[1:]),
                                dtype=torch.uint8, device=self.device)
            grown[: self._size] = self._frames[: self._size]
            self._frames = grown
        host = torch.from_numpy(np.ascontiguousarray(frames))
        if self.device.type == "cuda":
            host = host.pin_memory()
        self._frames[self._size : self._size + n].copy_(host, non_blocking=True)
        slots = np.arange(self._size, self._size + n, dtype=np.int64)
        self._size += n
        return slots

    def sync(self) -> None:
        """Upload frames added to the buffer since the last call (new episodes and growth of open ones)."""
        episodes = self.buffer.episodes
        if len(episodes) < len(self._index):
            raise ValueError(f"the replay buffer shrank from {len(self._index)} to {len(episodes)} episodes; "
                             "build a new DeviceReplay after truncating or reloading a replay")
        for e in range(len(self._index), len(episodes)):
            self._index.append(_IndexEpisode(episodes[e], np.zeros(0, np.int64)))
            self._open.append(e)
        still_open = []
        for e in self._open:
            view, n_now = self._index[e], episodes[e].num_steps + 1
            if n_now > len(view.slots):
                view.slots = np.concatenate([view.slots, self._append(episodes[e].obs[len(view.slots) : n_now])])
            if not episodes[e].done:
                still_open.append(e)
        self._open = still_open

    def sample(self, batch_size: int, seq_len: int, rng: np.random.Generator, *, pad: Literal["left", "both"],
               recency_weights: tuple[float, ...] | None = (0.1, 0.1, 0.1, 0.7)) -> Segment:
        """Exactly `sample_segments(buffer, ...).to_torch(device)`, with the frames gathered on the device."""
        self.sync()
        seg = sample_segments(self, batch_size, seq_len, rng, pad=pad, recency_weights=recency_weights)
        id_bytes = np.ascontiguousarray(seg.obs).reshape(batch_size, seq_len, _ID_BYTES)
        slots = torch.from_numpy(id_bytes.view(np.int64)[..., 0])
        rest = Segment(obs=slots, act=seg.act, rew=seg.rew, end=seg.end, mask=seg.mask,
                       trans_mask=seg.trans_mask).to_torch(self.device)
        rest.obs = self._frames[rest.obs]
        return rest

    @property
    def episodes(self) -> list[_IndexEpisode]:
        """The index view `sample_segments` reads (it needs only `episodes` and their arrays)."""
        return self._index
