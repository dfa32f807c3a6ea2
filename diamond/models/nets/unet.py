"""Denoiser inner network F_theta (App. D, Table 2): a U-Net 2D with adaptive group norm conditioning."""

from __future__ import annotations

from typing import Any, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from diamond.models.nets.blocks import (
    FourierFeatures,
    GroupNorm,
    ResBlocks,
    Upsample,
    check_divisible_size,
    conv3x3,
    down_path,
    zero_init_,
)
from diamond.models.nets.history import HistoryConditioning, make_history_conditioning


class UNet(nn.Module):
    """U-Net 2D: stride-2 conv down, nearest-up + conv, decoder levels have one extra block fed the
    level's input as skip. The two bottleneck blocks carry self-attention; a level with a context
    dimension gets cross-attention in all its blocks (and the bottleneck, for the deepest level)."""

    def __init__(self, channels: Sequence[int], depths: Sequence[int], cond_dim: int,
                 bottleneck_attention: bool = True, context_dims: Sequence[int | None] | None = None,
                 attention_residual: str = "normed") -> None:
        super().__init__()
        if len(channels) != len(depths) or not channels:
            raise ValueError(f"channels {tuple(channels)} and depths {tuple(depths)} need the same non-zero length.")
        n = len(channels)
        context_dims = tuple(context_dims) if context_dims is not None else (None,) * n
        if len(context_dims) != n:
            raise ValueError(f"context_dims {context_dims} needs one entry per level ({n}).")
        self.num_levels = n
        self.d_blocks, self.downs = down_path(channels, depths, cond_dim, [False] * n, context_dims)
        self.mid = ResBlocks([channels[-1]] * 2, [channels[-1]] * 2, cond_dim, bottleneck_attention,
                             context_dims[-1], attention_residual)
        u_blocks, ups = [], []
        for i, (c, d) in enumerate(zip(channels, depths)):
            c_prev = channels[max(0, i - 1)]
            u_blocks.append(ResBlocks([2 * c] * d + [c_prev + c], [c] * d + [c_prev], cond_dim, False,
                                      context_dims[i]))
            ups.append(Upsample(c) if i < n - 1 else nn.Identity())  # level i's input is up-sampled from i+1
        self.u_blocks = nn.ModuleList(reversed(u_blocks))
        self.ups = nn.ModuleList(reversed(ups))

    def forward(self, x: Tensor, cond: Tensor, contexts: Sequence[Tensor | None]) -> Tensor:
        skips = []
        for block, down, ctx in zip(self.d_blocks, self.downs, contexts):
            x = down(x)
            level_in = x
            x, outputs = block(x, cond, ctx)
            skips.append([level_in, *outputs])
        x, _ = self.mid(x, cond, contexts[-1])
        for block, up, skip, ctx in zip(self.u_blocks, self.ups, reversed(skips), reversed(contexts)):
            x, _ = block(up(x), cond, ctx, skip[::-1])
        return x


class DenoiserNet(nn.Module):
    """F_theta(x_in, c_noise, past frames, past actions) of EDM (Eq. 6). Conditioning vector =
    MLP(Fourier(c_noise) + concat of the L action embeddings), fed to every block's AdaGN; how past
    frames enter is the history conditioning's business. Output conv is zero-init, so a fresh net gives 0."""

    def __init__(self, num_actions: int, num_history: int = 4, history: HistoryConditioning | str = "frame_stack",
                 channels: Sequence[int] = (64, 64, 64, 64), depths: Sequence[int] = (2, 2, 2, 2),
                 cond_dim: int = 256, bottleneck_attention: bool = True, img_channels: int = 3,
                 sigma_data: float = 0.5, history_kwargs: dict[str, Any] | None = None,
                 attention_residual: str = "normed") -> None:
        super().__init__()
        if num_actions < 1:
            raise ValueError(f"num_actions must be at least 1, got {num_actions}.")
        if cond_dim % num_history or cond_dim % 2:
            raise ValueError(f"cond_dim {cond_dim} must be even and divisible by num_history {num_history} "
                             f"(each of the L action embeddings has cond_dim / L entries).")
        self.num_actions, self.num_history, self.img_channels = num_actions, num_history, img_channels
        self.history = make_history_conditioning(history, num_actions=num_actions, num_history=num_history,
                                                 num_levels=len(channels), img_channels=img_channels,
                                                 sigma_data=sigma_data, **(history_kwargs or {}))
        self.noise_emb = FourierFeatures(cond_dim)  # 128 frequencies -> 256 for the paper size
        self.act_emb = nn.Embedding(num_actions, cond_dim // num_history)
        self.cond_mlp = nn.Sequential(nn.Linear(cond_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))
        self.conv_in = conv3x3(img_channels + self.history.extra_in_channels, channels[0])
        self.unet = UNet(channels, depths, cond_dim, bottleneck_attention, self.history.context_dims,
                         attention_residual)
        self.norm_out = GroupNorm(channels[0])
        self.conv_out = zero_init_(conv3x3(channels[0], img_channels))

    def _check_inputs(self, x_in: Tensor, c_noise: Tensor, obs_hist: Tensor, act_hist: Tensor) -> None:
        b = x_in.shape[0]
        if x_in.ndim != 4 or x_in.shape[1] != self.img_channels:
            raise ValueError(f"x_in must be [B, {self.img_channels}, H, W], got {tuple(x_in.shape)}.")
        want_obs = (b, self.num_history, *x_in.shape[1:])
        if tuple(obs_hist.shape) != want_obs:
            raise ValueError(f"obs_hist must be [B, L, C, H, W] = {want_obs}, got {tuple(obs_hist.shape)}.")
        if tuple(act_hist.shape) != (b, self.num_history) or tuple(c_noise.shape) != (b,):
            raise ValueError(f"act_hist must be [{b}, {self.num_history}] and c_noise [{b}], got "
                             f"{tuple(act_hist.shape)} and {tuple(c_noise.shape)}.")
        check_divisible_size(*x_in.shape[-2:], 2 ** (self.unet.num_levels - 1), "DenoiserNet")

    def forward(self, x_in: Tensor, c_noise: Tensor, obs_hist: Tensor, act_hist: Tensor) -> Tensor:
        """x_in [B,C,H,W] (already scaled by c_in), c_noise [B], obs_hist [B,L,C,H,W] in [-1,1], act_hist [B,L]."""
        self._check_inputs(x_in, c_noise, obs_hist, act_hist)
        cond = self.cond_mlp(self.noise_emb(c_noise) + self.act_emb(act_hist).flatten(1))
        x = self.conv_in(self.history.prepare_input(x_in, obs_hist))
        x = self.unet(x, cond, self.history.contexts(obs_hist, act_hist))
        return self.conv_out(F.silu(self.norm_out(x)))


def build_denoiser_net(num_actions: int, **kwargs: Any) -> DenoiserNet:
    """Convenience: paper-size frame-stack denoiser unless overridden (e.g. history="cross_attention")."""
    return DenoiserNet(num_actions, **kwargs)
