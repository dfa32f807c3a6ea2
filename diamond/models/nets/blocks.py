"""Layers shared by the denoiser, the reward/end model and the actor-critic (paper App. D)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GN_GROUP_SIZE = 32  # channels per group, as in the released code (64 channels -> 2 groups)
GN_EPS = 1e-5
ATTN_HEAD_DIM = 8  # 64 channels -> 8 heads, the released bottleneck attention


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (buffers such as frozen Fourier frequencies excluded)."""
    return sum(p.numel() for p in module.parameters())


def num_groups(channels: int) -> int:
    """Group count for GroupNorm: one group per GN_GROUP_SIZE channels, at least one."""
    return max(1, channels // GN_GROUP_SIZE)


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)


def conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0)


def zero_init_(module: nn.Module) -> nn.Module:
    """Zero a layer's weight and bias so a residual branch (or the output) starts as exactly 0."""
    nn.init.zeros_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


def check_divisible_size(h: int, w: int, factor: int, what: str) -> None:
    """Down-sampling paths halve the image several times: the size must divide evenly."""
    if h % factor or w % factor:
        raise ValueError(f"{what} needs image height and width divisible by {factor}, got {h}x{w}.")


def sinusoidal_2d(channels: int, h: int, w: int, device: torch.device | None = None) -> Tensor:
    """Fixed 2D sine/cosine position code [h*w, channels]: lets attention match positions across frames."""
    if channels % 4:
        raise ValueError(f"A 2D sinusoidal position code needs channels divisible by 4, got {channels}.")
    quarter = channels // 4
    freqs = torch.exp(-math.log(10000.0) * torch.arange(quarter, device=device) / quarter)
    ys = torch.arange(h, device=device, dtype=torch.float32)[:, None] * freqs  # [h, quarter]
    xs = torch.arange(w, device=device, dtype=torch.float32)[:, None] * freqs  # [w, quarter]
    code_y = torch.cat([ys.sin(), ys.cos()], dim=1)[:, None, :].expand(h, w, 2 * quarter)
    code_x = torch.cat([xs.sin(), xs.cos()], dim=1)[None, :, :].expand(h, w, 2 * quarter)
    return torch.cat([code_y, code_x], dim=-1).reshape(h * w, channels)


class FourierFeatures(nn.Module):
    """Random Fourier features of the noise level (frozen buffer): a smooth, rich scalar embedding."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"FourierFeatures needs an even dimension (cos and sin halves), got {dim}.")
        self.register_buffer("freqs", torch.randn(1, dim // 2))

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):  # bf16 phases would be off by up to ~0.1 rad
            f = 2 * math.pi * x.float()[:, None] @ self.freqs.float()
        return torch.cat([f.cos(), f.sin()], dim=-1)


def init_lstm_(lstm: nn.LSTM | nn.LSTMCell) -> None:
    """Released-code LSTM init: Xavier input weights, orthogonal recurrent weights, zero biases except a
    forget-gate bias of 1 (remember by default)."""
    for name, p in lstm.named_parameters():
        if "weight_ih" in name:
            nn.init.xavier_uniform_(p)
        elif "weight_hh" in name:
            nn.init.orthogonal_(p)
        else:
            nn.init.zeros_(p)
            if "bias_ih" in name:
                n = p.shape[0] // 4
                nn.init.ones_(p[n : 2 * n])


class GroupNorm(nn.GroupNorm):
    """Affine GroupNorm with the shared group-size rule."""

    def __init__(self, channels: int) -> None:
        super().__init__(num_groups(channels), channels, eps=GN_EPS)


class AdaGroupNorm(nn.Module):
    """Adaptive group norm: non-affine GN, then x*(1+scale)+shift from the conditioning vector."""

    def __init__(self, channels: int, cond_dim: int) -> None:
        super().__init__()
        self.groups = num_groups(channels)
        self.linear = nn.Linear(cond_dim, 2 * channels)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        x = F.group_norm(x, self.groups, eps=GN_EPS)
        scale, shift = self.linear(cond)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + scale) + shift


def _heads(channels: int) -> int:
    heads = max(1, channels // ATTN_HEAD_DIM)
    if channels % heads:
        raise ValueError(f"Attention needs channels divisible by {heads} heads, got {channels}.")
    return heads


def _split_heads(t: Tensor, heads: int) -> Tensor:
    b, n, c = t.shape
    return t.view(b, n, heads, c // heads).transpose(1, 2)


def _merge_heads(t: Tensor) -> Tensor:
    b, heads, n, d = t.shape
    return t.transpose(1, 2).reshape(b, n, heads * d)


ATTENTION_RESIDUALS = ("normed", "input")


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over all pixels (used at the 8x8 bottleneck); zero-init output.

    residual="normed" adds the attention output to the group-normalised input, as the released code does
    (so even a fresh block renormalises its input); "input" is the usual pre-norm residual x + attn(norm x)."""

    def __init__(self, channels: int, residual: str = "normed") -> None:
        super().__init__()
        if residual not in ATTENTION_RESIDUALS:
            raise ValueError(f"attention residual must be one of {ATTENTION_RESIDUALS}, got {residual!r}.")
        self.heads, self.residual = _heads(channels), residual
        self.norm = GroupNorm(channels)
        self.qkv = conv1x1(channels, 3 * channels)
        self.out = zero_init_(conv1x1(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        normed = self.norm(x)
        q, k, v = self.qkv(normed).flatten(2).transpose(1, 2).chunk(3, dim=-1)  # [b, hw, c] each
        y = F.scaled_dot_product_attention(*(_split_heads(t, self.heads) for t in (q, k, v)))
        y = _merge_heads(y).transpose(1, 2).reshape(b, c, h, w)
        return (normed if self.residual == "normed" else x) + self.out(y)


class CrossAttention2d(nn.Module):
    """Pixels attend to context tokens [B, N, C_ctx] (App. J.2); queries carry a 2D position code."""

    def __init__(self, channels: int, context_dim: int) -> None:
        super().__init__()
        self.heads = _heads(channels)
        self.norm = GroupNorm(channels)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(context_dim, 2 * channels)
        self.out = zero_init_(nn.Linear(channels, channels))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        b, c, h, w = x.shape
        queries = self.norm(x).flatten(2).transpose(1, 2) + sinusoidal_2d(c, h, w, x.device)
        k, v = self.kv(context).chunk(2, dim=-1)
        y = F.scaled_dot_product_attention(*(_split_heads(t, self.heads) for t in (self.q(queries), k, v)))
        return x + self.out(_merge_heads(y)).transpose(1, 2).reshape(b, c, h, w)


class ResBlock(nn.Module):
    """AdaGN-SiLU-conv twice plus skip; last conv zero-init so each block starts as the identity."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, attention: bool = False,
                 context_dim: int | None = None, attention_residual: str = "normed") -> None:
        super().__init__()
        self.proj = conv1x1(in_channels, out_channels) if in_channels != out_channels else nn.Identity()
        self.norm1 = AdaGroupNorm(in_channels, cond_dim)
        self.conv1 = conv3x3(in_channels, out_channels)
        self.norm2 = AdaGroupNorm(out_channels, cond_dim)
        self.conv2 = zero_init_(conv3x3(out_channels, out_channels))
        self.attn = SelfAttention2d(out_channels, attention_residual) if attention else None
        self.cross_attn = CrossAttention2d(out_channels, context_dim) if context_dim is not None else None

    def forward(self, x: Tensor, cond: Tensor, context: Tensor | None = None) -> Tensor:
        r = self.proj(x)
        x = self.conv1(F.silu(self.norm1(x, cond)))
        x = self.conv2(F.silu(self.norm2(x, cond))) + r
        if self.attn is not None:
            x = self.attn(x)
        if self.cross_attn is not None:
            if context is None:
                raise ValueError("This block has cross-attention but was given no context tokens.")
            x = self.cross_attn(x, context)
        return x


class ResBlocks(nn.Module):
    """A stack of ResBlocks; optional per-block skip tensors are concatenated on entry (U-Net decoder)."""

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int], cond_dim: int,
                 attention: bool = False, context_dim: int | None = None, attention_residual: str = "normed") -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(i, o, cond_dim, attention, context_dim, attention_residual)
                                    for i, o in zip(in_channels, out_channels, strict=True))

    def forward(self, x: Tensor, cond: Tensor, context: Tensor | None = None,
                skips: Sequence[Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
        outputs = []
        for i, block in enumerate(self.blocks):
            if skips is not None:
                x = torch.cat([x, skips[i]], dim=1)
            x = block(x, cond, context)
            outputs.append(x)
        return x, outputs


class Downsample(nn.Module):
    """Stride-2 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)
        nn.init.orthogonal_(self.conv.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then 3x3 conv (no checkerboard artefacts of transposed convs)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = conv3x3(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def down_path(channels: Sequence[int], depths: Sequence[int], cond_dim: int, attention: Sequence[bool],
              context_dims: Sequence[int | None]) -> tuple[nn.ModuleList, nn.ModuleList]:
    """Encoder levels (ResBlocks per level, Downsample before every level but the first)."""
    blocks, downs = nn.ModuleList(), nn.ModuleList()
    for i, (c, n) in enumerate(zip(channels, depths, strict=True)):
        c_prev = channels[max(0, i - 1)]
        blocks.append(ResBlocks([c_prev] + [c] * (n - 1), [c] * n, cond_dim, attention[i], context_dims[i]))
        downs.append(Downsample(c_prev) if i > 0 else nn.Identity())
    return blocks, downs
