"""Actor-critic (pi, V)_phi (App. D, Table 2): conv trunk of small residual blocks + max-pool, LSTM cell."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from diamond.models.nets.blocks import GroupNorm, check_divisible_size, conv1x1, conv3x3, init_lstm_, zero_init_


class SmallResBlock(nn.Module):
    """x + (GroupNorm -> SiLU -> 3x3 conv)(x), with a 1x1 projection on the skip when channels change."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.f = nn.Sequential(GroupNorm(in_channels), nn.SiLU(), conv3x3(in_channels, out_channels))
        self.skip = conv1x1(in_channels, out_channels) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.f(x)


class ActorCriticNet(nn.Module):
    """Policy logits and state value from one frame, with memory in an LSTM cell.

    Heads are zero-initialised: a fresh net plays the uniform policy and predicts value 0.
    LSTM state is (h, c), each [B, lstm_dim]; None starts from zeros.
    """

    def __init__(self, num_actions: int, channels: Sequence[int] = (32, 32, 64, 64),
                 depths: Sequence[int] = (1, 1, 1, 1), lstm_dim: int = 512, img_channels: int = 3,
                 img_size: int = 64) -> None:
        super().__init__()
        if len(channels) != len(depths) or not channels:
            raise ValueError(f"channels {tuple(channels)} and depths {tuple(depths)} need the same non-zero length.")
        n = len(channels)
        check_divisible_size(img_size, img_size, 2 ** n, "ActorCriticNet")
        self.img_channels, self.img_size, self.lstm_dim = img_channels, img_size, lstm_dim
        layers: list[nn.Module] = [conv3x3(img_channels, channels[0])]
        for i, (c, d) in enumerate(zip(channels, depths)):
            c_prev = channels[max(0, i - 1)]
            layers += [SmallResBlock(c_prev if j == 0 else c, c) for j in range(d)]
            layers.append(nn.MaxPool2d(2))
        self.trunk = nn.Sequential(*layers)
        feature_dim = channels[-1] * (img_size // 2 ** n) ** 2  # 64 * 4 * 4 = 1024 at paper size
        self.lstm = nn.LSTMCell(feature_dim, lstm_dim)
        init_lstm_(self.lstm)
        self.policy = zero_init_(nn.Linear(lstm_dim, num_actions))
        self.value = zero_init_(nn.Linear(lstm_dim, 1))

    def forward(self, obs: Tensor, state: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """obs [B,C,H,W] in [-1,1] -> policy logits [B,A], value [B], new (h, c)."""
        want = (self.img_channels, self.img_size, self.img_size)
        if obs.ndim != 4 or tuple(obs.shape[1:]) != want:
            raise ValueError(f"obs must be [B, {want[0]}, {want[1]}, {want[2]}], got {tuple(obs.shape)}.")
        h, c = self.lstm(self.trunk(obs).flatten(1), state)
        return self.policy(h), self.value(h).squeeze(-1), (h, c)
