"""Reward/termination model R_psi (App. D, Table 2): conv encoder with AdaGN on the action, then an LSTM."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from diamond.models.nets.blocks import ResBlocks, check_divisible_size, conv3x3, down_path, init_lstm_

REWARD_CLASSES = (-1, 0, 1)  # reward logits index i <-> reward sign REWARD_CLASSES[i]
NUM_END_CLASSES = 2  # 0: episode goes on, 1: episode ends
Prior = tuple[Sequence[float], Sequence[float]]  # (reward-sign frequencies of -1, 0, 1; end frequencies of no, yes)


class LogPriorOffset(nn.Module):
    """Fixed logit offsets by the log class frequencies, so a network whose own logits are 0 predicts the base
    rate. Why: a head without a bias must carry a 3 %-rewarded, 0.2 %-ended base rate in its LSTM, and the first
    updates push every LSTM input the same way and saturate its gates (measured at lr 1e-3: 97 % of gate inputs
    beyond |4| after 10 updates, then one hidden state for every input and p(reward) equal on rewarded and other
    transitions). Started at the base rate, only the discriminative part is left to learn. `prior` None: offsets
    0 (log 1) until `set_prior`."""

    def __init__(self, prior: Prior | None = None) -> None:
        super().__init__()
        self.register_buffer("log_reward_prior", torch.zeros(len(REWARD_CLASSES)))
        self.register_buffer("log_end_prior", torch.zeros(NUM_END_CLASSES))
        if prior is not None:
            self.set_prior(prior)

    def set_prior(self, prior: Prior) -> None:
        for buf, freqs in ((self.log_reward_prior, prior[0]), (self.log_end_prior, prior[1])):
            buf.copy_(torch.log(torch.tensor(freqs, dtype=torch.float32).clamp_min(1e-4)))

    def offset(self, rew: Tensor, end: Tensor) -> tuple[Tensor, Tensor]:
        return rew + self.log_reward_prior, end + self.log_end_prior


class RewardEndNet(nn.Module):
    """Predicts the sign of r_t and the end flag d_t from (o_t, a_t, o_{t+1}); shared trunk, two heads.

    LSTM state is (h, c), each [B, lstm_dim]; pass the returned state back to continue a sequence
    (burn-in on the context, then one step per imagined transition).

    Two options, both off in the released network (docs/fidelity.md): `frame_difference` g > 0 adds
    g * (o_{t+1} - o_t) as three more input channels (a reward or a life loss changes a few pixels: the score, a
    pellet, a brick; amplified, the change is what a small network sees first); `prior_offset` adds LogPriorOffset
    to the logits (set from the collected data by `set_prior`).
    """

    def __init__(self, num_actions: int, channels: Sequence[int] = (32, 32, 32, 32),
                 depths: Sequence[int] = (2, 2, 2, 2), cond_dim: int = 128, lstm_dim: int = 512,
                 bottleneck_attention: bool = True, img_channels: int = 3, img_size: int = 64,
                 attention_residual: str = "normed", frame_difference: float = 0.0, prior_offset: bool = False
                 ) -> None:
        super().__init__()
        if frame_difference < 0:
            raise ValueError(f"frame_difference must be >= 0, got {frame_difference}.")
        self.frame_difference = frame_difference
        self.prior = LogPriorOffset() if prior_offset else None
        if len(channels) != len(depths) or not channels:
            raise ValueError(f"channels {tuple(channels)} and depths {tuple(depths)} need the same non-zero length.")
        n = len(channels)
        check_divisible_size(img_size, img_size, 2 ** (n - 1), "RewardEndNet")
        self.img_channels, self.img_size, self.lstm_dim = img_channels, img_size, lstm_dim
        self.act_emb = nn.Embedding(num_actions, cond_dim)
        self.conv_in = conv3x3((3 if frame_difference else 2) * img_channels, channels[0])
        self.blocks, self.downs = down_path(channels, depths, cond_dim, [False] * n, [None] * n)
        self.mid = ResBlocks([channels[-1]] * 2, [channels[-1]] * 2, cond_dim, bottleneck_attention,
                             attention_residual=attention_residual)
        feature_dim = channels[-1] * (img_size // 2 ** (n - 1)) ** 2  # 32 * 8 * 8 = 2048 at paper size
        self.lstm = nn.LSTM(feature_dim, lstm_dim, batch_first=True)
        init_lstm_(self.lstm)
        self.head = nn.Sequential(nn.Linear(lstm_dim, lstm_dim), nn.SiLU(),
                                  nn.Linear(lstm_dim, len(REWARD_CLASSES) + NUM_END_CLASSES, bias=False))

    def encode(self, obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
        """Per-transition features [N, feature_dim] from frames [N, C, H, W] and actions [N]."""
        cond = self.act_emb(act)
        frames = [obs, next_obs] + ([self.frame_difference * (next_obs - obs)] if self.frame_difference else [])
        x = self.conv_in(torch.cat(frames, dim=1))
        for block, down in zip(self.blocks, self.downs):
            x, _ = block(down(x), cond)
        x, _ = self.mid(x, cond)
        return x.flatten(1)

    def forward(self, obs: Tensor, act: Tensor, next_obs: Tensor, state: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """obs, next_obs [B,T,C,H,W] in [-1,1], act [B,T] -> reward logits [B,T,3], end logits [B,T,2], (h, c)."""
        want = (self.img_channels, self.img_size, self.img_size)
        if obs.ndim != 5 or tuple(obs.shape[2:]) != want or obs.shape != next_obs.shape:
            raise ValueError(f"obs and next_obs must both be [B, T, {want[0]}, {want[1]}, {want[2]}], "
                             f"got {tuple(obs.shape)} and {tuple(next_obs.shape)}.")
        b, t = obs.shape[:2]
        if tuple(act.shape) != (b, t):
            raise ValueError(f"act must be [B, T] = {(b, t)}, got {tuple(act.shape)}.")
        x = self.encode(obs.flatten(0, 1), act.reshape(b * t), next_obs.flatten(0, 1)).view(b, t, -1)
        lstm_state = None if state is None else (state[0].unsqueeze(0), state[1].unsqueeze(0))
        x, (h, c) = self.lstm(x, lstm_state)
        logits = self.head(x)
        n_rew = len(REWARD_CLASSES)
        rew, end = logits[..., :n_rew], logits[..., n_rew:]
        if self.prior is not None:
            rew, end = self.prior.offset(rew, end)
        return rew, end, (h.squeeze(0), c.squeeze(0))

    def set_prior(self, prior: Prior) -> None:
        """Start at the base rate of the data collected so far (needs prior_offset)."""
        if self.prior is None:
            raise ValueError("set_prior needs a RewardEndNet built with prior_offset=True.")
        self.prior.set_prior(prior)
