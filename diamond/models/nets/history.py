"""How the denoiser sees the L past frames (App. J.2): swappable modules, picked by name or passed in.

Each module tells the U-Net what it needs through one interface, so the U-Net never branches on names:
  - ``extra_in_channels`` and ``prepare_input``: channels concatenated to the noisy frame (frame stack);
  - ``context_dims`` and ``contexts``: per-U-Net-level context tokens that cross-attention layers
    attend to (``None`` at a level means no cross-attention there).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from diamond.models.nets.blocks import GroupNorm, conv3x3, down_path, sinusoidal_2d


class HistoryConditioning(nn.Module):
    """Base: adds nothing (no extra channels, no context). Subclasses override what they provide."""

    def __init__(self, num_actions: int, num_history: int, num_levels: int, img_channels: int = 3,
                 sigma_data: float = 0.5) -> None:
        super().__init__()
        if num_history < 1:
            raise ValueError(f"num_history must be at least 1, got {num_history}.")
        self.num_actions = num_actions
        self.num_history = num_history
        self.num_levels = num_levels
        self.img_channels = img_channels
        self.sigma_data = sigma_data

    @property
    def extra_in_channels(self) -> int:
        return 0

    @property
    def context_dims(self) -> tuple[int | None, ...]:
        return (None,) * self.num_levels

    def prepare_input(self, x_in: Tensor, obs_hist: Tensor) -> Tensor:
        """What the U-Net's first conv receives, given the scaled noisy frame and the past frames."""
        return x_in

    def contexts(self, obs_hist: Tensor, act_hist: Tensor) -> list[Tensor | None]:
        """Context tokens [B, N, C] per U-Net level (None where the U-Net has no cross-attention)."""
        return [None] * self.num_levels


class FrameStack(HistoryConditioning):
    """Paper default: the L past frames, divided by sigma_data, are stacked on the noisy frame's channels."""

    @property
    def extra_in_channels(self) -> int:
        return self.num_history * self.img_channels

    def prepare_input(self, x_in: Tensor, obs_hist: Tensor) -> Tensor:
        return torch.cat([x_in, (obs_hist / self.sigma_data).flatten(1, 2)], dim=1)


class CrossAttention(HistoryConditioning):
    """App. J.2: a light, shared-weight conv encoder runs on each past frame; the U-Net cross-attends to it.

    The encoder is the down path of a small U-Net 2D. Its conditioning (through AdaGN) is an embedding of
    the frame's relative time (how many steps before the target) plus an embedding of that frame's action.
    At each level in ``levels`` its activations of all L frames (normalised, plus a 2D position code) become
    the context tokens of that U-Net level. It does not see the noise level, so it could be cached over
    the denoising steps of one frame.
    """

    def __init__(self, num_actions: int, num_history: int, num_levels: int, img_channels: int = 3,
                 sigma_data: float = 0.5, encoder_channels: Sequence[int] | None = None,
                 encoder_depths: Sequence[int] | None = None, encoder_cond_dim: int = 64,
                 levels: Sequence[int] | None = None) -> None:
        super().__init__(num_actions, num_history, num_levels, img_channels, sigma_data)
        encoder_channels = tuple(encoder_channels or (32,) * num_levels)
        encoder_depths = tuple(encoder_depths or (1,) * num_levels)
        if levels is None:  # default: the two lowest resolutions (16x16 and 8x8 for 64x64 frames)
            levels = range(max(0, num_levels - 2), num_levels)
        levels = tuple(sorted(set(levels)))
        if len(encoder_channels) != num_levels or len(encoder_depths) != num_levels:
            raise ValueError(f"encoder_channels {encoder_channels} and encoder_depths {encoder_depths} need "
                             f"one entry per U-Net level ({num_levels}).")
        if not levels or levels[0] < 0 or levels[-1] >= num_levels:
            raise ValueError(f"Cross-attention levels {levels} must be non-empty and within 0..{num_levels - 1}.")
        self.levels = levels
        self.encoder_channels = encoder_channels
        built = levels[-1] + 1  # deeper encoder levels would feed nothing
        self.time_emb = nn.Embedding(num_history, encoder_cond_dim)
        self.act_emb = nn.Embedding(num_actions, encoder_cond_dim)
        self.cond_mlp = nn.Sequential(nn.Linear(encoder_cond_dim, encoder_cond_dim), nn.SiLU(),
                                      nn.Linear(encoder_cond_dim, encoder_cond_dim))
        self.conv_in = conv3x3(img_channels, encoder_channels[0])
        self.blocks, self.downs = down_path(encoder_channels[:built], encoder_depths[:built], encoder_cond_dim,
                                            [False] * built, [None] * built)
        self.out_norms = nn.ModuleDict({str(i): GroupNorm(encoder_channels[i]) for i in levels})

    @property
    def context_dims(self) -> tuple[int | None, ...]:
        return tuple(c if i in self.levels else None for i, c in enumerate(self.encoder_channels))

    def contexts(self, obs_hist: Tensor, act_hist: Tensor) -> list[Tensor | None]:
        b, n = obs_hist.shape[:2]
        steps_before = torch.arange(n - 1, -1, -1, device=obs_hist.device).repeat(b)  # frame i: n-1-i
        cond = self.cond_mlp(self.time_emb(steps_before) + self.act_emb(act_hist.reshape(b * n)))
        x = self.conv_in(obs_hist.flatten(0, 1) / self.sigma_data)
        out: list[Tensor | None] = [None] * self.num_levels
        for i, (block, down) in enumerate(zip(self.blocks, self.downs)):
            x, _ = block(down(x), cond)
            if i in self.levels:
                c, h, w = x.shape[1:]
                tokens = self.out_norms[str(i)](x).flatten(2).transpose(1, 2) + sinusoidal_2d(c, h, w, x.device)
                out[i] = tokens.reshape(b, n * h * w, c)
        return out


HISTORY_CONDITIONINGS: dict[str, type[HistoryConditioning]] = {
    "frame_stack": FrameStack,
    "cross_attention": CrossAttention,
}


def make_history_conditioning(history: HistoryConditioning | str, *, num_actions: int, num_history: int,
                              num_levels: int, img_channels: int = 3, sigma_data: float = 0.5,
                              **kwargs) -> HistoryConditioning:
    """Build a conditioning by name, or check that a given one fits the denoiser it is passed to."""
    if isinstance(history, HistoryConditioning):
        if kwargs:
            raise ValueError(f"Options {sorted(kwargs)} only apply when the history conditioning is given by name.")
        given = (history.num_actions, history.num_history, history.num_levels, history.img_channels,
                 history.sigma_data)
        wanted = (num_actions, num_history, num_levels, img_channels, sigma_data)
        if given != wanted:
            raise ValueError(f"History conditioning built for (num_actions, num_history, num_levels, "
                             f"img_channels, sigma_data)={given} but the denoiser has {wanted}.")
        return history
    if history not in HISTORY_CONDITIONINGS:
        raise ValueError(f"Unknown history conditioning {history!r}; valid: {sorted(HISTORY_CONDITIONINGS)}.")
    return HISTORY_CONDITIONINGS[history](num_actions=num_actions, num_history=num_history, num_levels=num_levels,
                                          img_channels=img_channels, sigma_data=sigma_data, **kwargs)
