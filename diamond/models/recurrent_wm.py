"""A recurrent-memory diffusion world model (registry name `recurrent`), in the spirit of EDELINE (NeurIPS 2025):
DIAMOND's denoiser, conditioned besides its last L frames and actions on the state of a sequence model run
over every earlier frame and action.

What it computes (i indexes frames of one trajectory; the window is x_{t-L+1..t}, a_{t-L+1..t}):
  (R1) u_i = [E(x_i); e(a_i)]                      a small strided-conv frame encoding and an action embedding
  (R2) h_i = GRU(h_{i-1}, u_i), h_{-1} = 0          memory over the frames that left the window
       (a padded frame leaves h unchanged)
  (R3) c = MLP(φ(c_noise) + [e_1(a_{t-L+1}); …; e_L(a_t)] + W_m h_{t-L})
       the memory enters the conditioning vector that scales and shifts every block's group norm (AdaGN),
       beside the noise level and the actions (DIAMOND's Eq. 6 conditioning otherwise unchanged)
  Training: the paradigm's loss (EDM Eq. 7, or DDPM ε-prediction) on x_{t+1}, D_θ seeing (R3), on segments
  of memory_frames + L + train_chain frames; the first memory_frames frames feed (R2) only, and the loss
  back-propagates through the memory (BPTT over the segment). Sampling: the paradigm's sampler, h fixed
  over the denoising steps of a frame; during a rollout the frame leaving the window updates h (R2).
Plain PyTorch (nn.GRUCell), no custom kernels.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diamond.models.nets.unet import DenoiserNet
from diamond.models.world_model import WorldModel, denoiser_settings
from diamond.run.errors import WorldModelFactoryError

OPTION_DEFAULTS: dict[str, int] = {
    "memory_frames": 12,  # frames before the window in each training segment (the memory's training horizon)
    "memory_dim": 64,  # GRU state size
    "frame_dim": 32,  # per-frame encoding size (and action embedding size) of (R1)
    "encoder_channels": 16,  # channels of the frame encoder's two strided convolutions
}


class MemoryDenoiserNet(DenoiserNet):
    """DIAMOND's denoiser network with one more conditioning input: a memory vector, projected into the
    AdaGN conditioning vector (R3)."""

    def __init__(self, num_actions: int, memory_dim: int, **kwargs: Any) -> None:
        super().__init__(num_actions, **kwargs)
        self.memory_proj = nn.Linear(memory_dim, self.cond_mlp[0].in_features)

    def forward(self, x_in: Tensor, c_noise: Tensor, obs_hist: Tensor, act_hist: Tensor,  # type: ignore[override]
                memory: Tensor) -> Tensor:
        self._check_inputs(x_in, c_noise, obs_hist, act_hist)
        cond = self.cond_mlp(self.noise_emb(c_noise) + self.act_emb(act_hist).flatten(1)  # (R3)
                             + self.memory_proj(memory))
        x = self.conv_in(self.history.prepare_input(x_in, obs_hist))
        x = self.unet(x, cond, self.history.contexts(obs_hist, act_hist))
        return self.conv_out(F.silu(self.norm_out(x)))


class FrameMemory(nn.Module):
    """(R1)-(R2): per-frame encodings and actions folded into a GRU state."""

    def __init__(self, num_actions: int, memory_dim: int, frame_dim: int, encoder_channels: int,
                 img_channels: int = 3) -> None:
        super().__init__()
        c = encoder_channels
        self.encoder = nn.Sequential(nn.Conv2d(img_channels, c, 4, stride=4), nn.SiLU(),
                                     nn.Conv2d(c, c, 4, stride=4), nn.SiLU(), nn.AdaptiveAvgPool2d(4),
                                     nn.Flatten(), nn.Linear(16 * c, frame_dim))
        self.act_emb = nn.Embedding(num_actions, frame_dim)
        self.cell = nn.GRUCell(2 * frame_dim, memory_dim)
        self.memory_dim = memory_dim

    def scan(self, obs: Tensor, act: Tensor, mask: Tensor | None, h: Tensor | None) -> Tensor:
        """States [B, T + 1, D]: h before the first frame (zeros when h is None), then after each frame."""
        b, t = obs.shape[:2]
        if h is None:
            h = obs.new_zeros(b, self.memory_dim)
        states = [h]
        if t:
            u = torch.cat([self.encoder(obs.flatten(0, 1)).view(b, t, -1), self.act_emb(act)], dim=-1)  # (R1)
            for i in range(t):
                new = self.cell(u[:, i].to(h.dtype), h)  # (R2)
                h = new if mask is None else torch.where(mask[:, i, None], new, h)
                states.append(h)
        return torch.stack(states, dim=1)


class RecurrentWorldModel(WorldModel):
    """D_θ with a recurrent memory of every frame before its L-frame window (the module docstring's R1-R3)."""

    def __init__(self, net: MemoryDenoiserNet, memory: FrameMemory, paradigm: Any, sampler: str, num_steps: int,
                 num_history: int, train_chain: int, memory_frames: int) -> None:
        super().__init__(net, paradigm, sampler, num_steps, num_history, train_chain)
        self.frame_memory, self.memory_frames = memory, memory_frames

    @property
    def segment_length(self) -> int:
        """memory_frames frames for (R2), then L context frames and train_chain targets."""
        return self.memory_frames + self.num_history + self.train_chain

    def memory(self, obs: Tensor, act: Tensor, state: Tensor | None = None) -> Tensor:
        """(R2) over T frames that left the window; T = 0 gives a fresh (zero) state."""
        return self.frame_memory.scan(obs, act, None, state)[:, -1]

    def _condition(self, obs_hist: Tensor, act_hist: Tensor, state: Tensor | None) -> tuple[Tensor, ...]:
        if state is None:
            state = obs_hist.new_zeros(obs_hist.shape[0], self.frame_memory.memory_dim)
        return obs_hist, act_hist, state

    def _inner(self, x_in: Tensor, c_noise: Tensor, cond: tuple[Tensor, ...]) -> Tensor:  # type: ignore[override]
        return self.net(x_in, c_noise, *cond)

    def loss(self, obs: Tensor, act: Tensor, mask: Tensor) -> Tensor:
        """The paradigm's loss (Eq. 5/7) on the last train_chain frames of the segment, each prediction conditioned
        on (R3) with h over every frame before its window; chained as WorldModel.loss. Segments of segment_length
        frames train the memory over memory_frames; shorter ones (down to L + train_chain: the agent trainer's,
        diamond/loop/trainer.py) over fewer."""
        L, chain = self.num_history, self.train_chain
        m = obs.shape[1] - L - chain  # frames only the memory sees
        if m < 0:
            raise ValueError(f"recurrent segments need at least L + train_chain = {L + chain} frames, got "
                             f"{obs.shape[1]}")
        n = m + chain - 1  # frames any prediction's memory covers (all real: predictions start at m + L)
        states = self.frame_memory.scan(obs[:, :n], act[:, :n], mask[:, :n].bool(), None)
        frames = obs.clone()
        total = obs.new_zeros(())
        for i in range(chain):
            s = m + i  # the window's first frame
            target, valid = frames[:, s + L], mask[:, s + L].to(obs.dtype)
            cond = (frames[:, s : s + L], act[:, s : s + L], states[:, s])
            per_sample, denoised = self.paradigm.training_loss(self._inner, target, cond)
            total = total + (per_sample * valid).sum() / valid.sum().clamp(min=1.0)
            if i + 1 < chain:
                frames[:, s + L] = torch.where(valid.bool()[:, None, None, None], denoised.detach(), frames[:, s + L])
        return total / chain


def recurrent_options(options: dict[str, Any]) -> dict[str, int]:
    """OPTION_DEFAULTS updated by world_model.options, each a positive integer, or one sentence naming the key."""
    unknown = sorted(set(options) - set(OPTION_DEFAULTS))
    if unknown:
        raise WorldModelFactoryError(f"world_model.options {unknown} unknown to the recurrent world model; "
                                     f"valid: {', '.join(OPTION_DEFAULTS)}")
    merged = {**OPTION_DEFAULTS, **options}
    bad = {k: v for k, v in merged.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1}
    if bad:
        raise WorldModelFactoryError(f"world_model.options {bad} must be positive integers")
    return merged


def build_recurrent_world_model(cfg: Any, num_actions: int) -> RecurrentWorldModel:
    """The `recurrent` entry of diamond/models/registry.py: the config's denoiser, paradigm and sampler, plus memory."""
    o = recurrent_options(dict(cfg.world_model.options))
    d = cfg.diffusion
    paradigm, kwargs = denoiser_settings(cfg)
    net = MemoryDenoiserNet(num_actions, o["memory_dim"], **kwargs)
    memory = FrameMemory(num_actions, o["memory_dim"], o["frame_dim"], o["encoder_channels"])
    return RecurrentWorldModel(net, memory, paradigm, d.sampler, d.num_steps, d.num_history, d.train_chain,
                               o["memory_frames"])
