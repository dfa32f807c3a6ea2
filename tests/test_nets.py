"""Networks of DIAMOND: shapes, zero-init, conditioning, batch independence, LSTM state, paper sizes."""

from __future__ import annotations

import pytest
import torch

from diamond.models.nets import (
    HISTORY_CONDITIONINGS,
    ActorCriticNet,
    CrossAttention,
    DenoiserNet,
    FrameStack,
    RewardEndNet,
    count_parameters,
)

torch.set_num_threads(1)

A, L, B = 5, 4, 3
TINY_DENOISER = dict(channels=(8, 8, 8, 8), depths=(1, 1, 1, 1), cond_dim=16)
TINY_CROSS = dict(encoder_channels=(8, 8, 8, 8), encoder_cond_dim=8)
HISTORIES = sorted(HISTORY_CONDITIONINGS)


def tiny_denoiser(history: str, **kwargs) -> DenoiserNet:
    extra = {"history_kwargs": TINY_CROSS} if history == "cross_attention" else {}
    return DenoiserNet(A, num_history=L, history=history, **TINY_DENOISER, **extra, **kwargs)


def perturb_(net: torch.nn.Module, std: float = 0.2) -> torch.nn.Module:
    """Leave the zero-initialised state so every path (output conv, attention, heads) carries signal."""
    with torch.no_grad():
        for p in net.parameters():
            p.add_(std * torch.randn_like(p))
    return net


def denoiser_inputs(b: int = B, size: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, size, size, generator=g)
    c_noise = torch.randn(b, generator=g)
    obs = torch.rand(b, L, 3, size, size, generator=g) * 2 - 1
    act = torch.randint(0, A, (b, L), generator=g)
    return x, c_noise, obs, act


@pytest.mark.parametrize("history", HISTORIES)
@pytest.mark.parametrize("size", [16, 32])
def test_denoiser_shape_and_zero_init(history: str, size: int) -> None:
    torch.manual_seed(0)
    net = tiny_denoiser(history)
    out = net(*denoiser_inputs(size=size))
    assert out.shape == (B, 3, size, size)
    assert torch.equal(out, torch.zeros_like(out))  # zero-init output conv: a fresh F_theta outputs exactly 0


def test_frame_stack_input_channels_and_scaling() -> None:
    fs = FrameStack(num_actions=A, num_history=L, num_levels=4, sigma_data=0.5)
    assert fs.extra_in_channels == 3 * L
    x, _, obs, _ = denoiser_inputs()
    stacked = fs.prepare_input(x, obs)
    assert stacked.shape == (B, 3 + 3 * L, 16, 16)
    assert torch.equal(stacked[:, :3], x)
    assert torch.allclose(stacked[:, 3:6], obs[:, 0] / 0.5)
    assert torch.allclose(stacked[:, -3:], obs[:, -1] / 0.5)
    assert tiny_denoiser("frame_stack").conv_in.in_channels == 3 + 3 * L
    assert tiny_denoiser("cross_attention").conv_in.in_channels == 3


@pytest.mark.parametrize("history", HISTORIES)
def test_denoiser_batch_independence(history: str) -> None:
    torch.manual_seed(1)
    net = perturb_(tiny_denoiser(history)).eval()
    x, c_noise, obs, act = denoiser_inputs()
    out = net(x, c_noise, obs, act)
    x2, c2, obs2, act2 = (t.clone() for t in (x, c_noise, obs, act))
    x2[1] = torch.randn_like(x2[1])
    c2[1] = c2[1] + 1.0
    obs2[1] = -obs2[1]
    act2[1] = (act2[1] + 1) % A
    out2 = net(x2, c2, obs2, act2)
    assert torch.allclose(out[[0, 2]], out2[[0, 2]], atol=1e-6)
    assert (out[1] - out2[1]).abs().max() > 1e-3


@pytest.mark.parametrize("history", HISTORIES)
def test_denoiser_conditioning_has_effect(history: str) -> None:
    torch.manual_seed(2)
    net = perturb_(tiny_denoiser(history)).eval()
    x, c_noise, obs, act = denoiser_inputs()
    base = net(x, c_noise, obs, act)
    for name, changed in [("action", (x, c_noise, obs, (act + 1) % A)),
                          ("last action only", (x, c_noise, obs, torch.cat([act[:, :-1], (act[:, -1:] + 1) % A], 1))),
                          ("past frames", (x, c_noise, obs.flip(1), act)),
                          ("noise level", (x, c_noise + 1.0, obs, act))]:
        diff = (net(*changed) - base).abs().amax(dim=(1, 2, 3))
        assert (diff > 1e-4).all(), f"{name} has no effect with {history}: {diff}"


@pytest.mark.parametrize("history", HISTORIES)
def test_denoiser_gradients_reach_every_parameter(history: str) -> None:
    torch.manual_seed(3)
    net = perturb_(tiny_denoiser(history))
    net(*denoiser_inputs()).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert not missing, f"parameters without gradient: {missing}"


def test_history_objects_and_errors() -> None:
    obj = CrossAttention(num_actions=A, num_history=L, num_levels=4, levels=(3,), **TINY_CROSS)
    net = DenoiserNet(A, num_history=L, history=obj, **TINY_DENOISER)
    assert net.history is obj and obj.context_dims == (None, None, None, 8)
    assert torch.equal(net(*denoiser_inputs()), torch.zeros(B, 3, 16, 16))
    with pytest.raises(ValueError, match="cross_attention.*frame_stack"):
        DenoiserNet(A, history="transformer", **TINY_DENOISER)
    with pytest.raises(ValueError, match="num_history"):
        DenoiserNet(A, num_history=2, history=obj, cond_dim=16, channels=(8,) * 4, depths=(1,) * 4)
    with pytest.raises(ValueError, match="levels"):
        CrossAttention(num_actions=A, num_history=L, num_levels=4, levels=(4,))
    with pytest.raises(ValueError, match="divisible by 8"):
        tiny_denoiser("frame_stack")(*denoiser_inputs(size=12))
    x, c_noise, obs, act = denoiser_inputs()
    with pytest.raises(ValueError, match="obs_hist"):
        tiny_denoiser("frame_stack")(x, c_noise, obs[:, :2], act)


def tiny_reward_end(size: int = 16) -> RewardEndNet:
    return RewardEndNet(A, channels=(8, 8, 8, 8), depths=(1, 1, 1, 1), cond_dim=8, lstm_dim=32, img_size=size)


def reward_inputs(b: int = 2, t: int = 5, size: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(b, t, 3, size, size, generator=g) * 2 - 1
    next_obs = torch.rand(b, t, 3, size, size, generator=g) * 2 - 1
    act = torch.randint(0, A, (b, t), generator=g)
    return obs, act, next_obs


@pytest.mark.parametrize("size", [16, 64])
def test_reward_end_shapes(size: int) -> None:
    torch.manual_seed(4)
    rew, end, (h, c) = tiny_reward_end(size)(*reward_inputs(size=size))
    assert rew.shape == (2, 5, 3) and end.shape == (2, 5, 2)
    assert h.shape == c.shape == (2, 32)
    assert torch.isfinite(rew).all() and torch.isfinite(end).all()


def test_reward_end_state_threading_matches_full_sequence() -> None:
    torch.manual_seed(5)
    net = perturb_(tiny_reward_end(), std=0.05).eval()
    obs, act, next_obs = reward_inputs(t=6)
    rew_full, end_full, (h_full, c_full) = net(obs, act, next_obs)
    state, rews, ends = None, [], []
    for t in range(6):
        rew, end, state = net(obs[:, t:t + 1], act[:, t:t + 1], next_obs[:, t:t + 1], state)
        rews.append(rew)
        ends.append(end)
    assert torch.allclose(torch.cat(rews, 1), rew_full, atol=1e-5)
    assert torch.allclose(torch.cat(ends, 1), end_full, atol=1e-5)
    assert torch.allclose(state[0], h_full, atol=1e-5) and torch.allclose(state[1], c_full, atol=1e-5)
    # the state matters: restarting at t=3 from zeros differs from carrying it
    rew_restart, _, _ = net(obs[:, 3:], act[:, 3:], next_obs[:, 3:])
    assert (rew_restart - rew_full[:, 3:]).abs().max() > 1e-4


def test_reward_end_action_has_effect() -> None:
    torch.manual_seed(6)
    net = perturb_(tiny_reward_end()).eval()
    obs, act, next_obs = reward_inputs()
    rew, end, _ = net(obs, act, next_obs)
    rew2, end2, _ = net(obs, (act + 1) % A, next_obs)
    assert (rew - rew2).abs().max() > 1e-4 and (end - end2).abs().max() > 1e-4
    with pytest.raises(ValueError, match="obs and next_obs"):
        net(obs[..., :8, :8], act, next_obs[..., :8, :8])


def tiny_actor_critic(size: int = 16) -> ActorCriticNet:
    return ActorCriticNet(A, channels=(8, 8, 16, 16), lstm_dim=32, img_size=size)


@pytest.mark.parametrize("size", [16, 64])
def test_actor_critic_fresh_is_uniform_with_zero_value(size: int) -> None:
    torch.manual_seed(7)
    obs = torch.rand(B, 3, size, size) * 2 - 1
    logits, value, (h, c) = tiny_actor_critic(size)(obs)
    assert logits.shape == (B, A) and value.shape == (B,) and h.shape == c.shape == (B, 32)
    assert torch.allclose(logits.softmax(-1), torch.full((B, A), 1 / A))
    assert torch.equal(value, torch.zeros(B))


def test_actor_critic_state_is_threaded() -> None:
    torch.manual_seed(8)
    net = perturb_(tiny_actor_critic()).eval()
    obs = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    logits0, _, state = net(obs[0])
    logits1, value1, state1 = net(obs[1], state)
    logits1_fresh, value1_fresh, _ = net(obs[1])
    assert (logits1 - logits1_fresh).abs().max() > 1e-4 and (value1 - value1_fresh).abs().max() > 1e-4
    assert not torch.allclose(state1[0], state[0])
    with pytest.raises(ValueError, match="divisible by 16"):
        ActorCriticNet(A, img_size=40)


PAPER = {"denoiser": 4.41e6, "reward_end": 5.90e6, "actor_critic": 3.23e6}


@pytest.mark.parametrize("num_actions", [4, 18])
def test_paper_size_parameter_counts(num_actions: int) -> None:
    counts = {
        "denoiser": count_parameters(DenoiserNet(num_actions)),
        "denoiser_cross_attention": count_parameters(DenoiserNet(num_actions, history="cross_attention")),
        "reward_end": count_parameters(RewardEndNet(num_actions)),
        "actor_critic": count_parameters(ActorCriticNet(num_actions)),
    }
    print(f"num_actions={num_actions}:", {k: f"{v / 1e6:.3f} M" for k, v in counts.items()})
    assert 4.0e6 <= counts["denoiser"] <= 4.8e6
    assert abs(counts["denoiser"] - PAPER["denoiser"]) / PAPER["denoiser"] < 0.01
    assert abs(counts["reward_end"] - PAPER["reward_end"]) / PAPER["reward_end"] < 0.10
    assert abs(counts["actor_critic"] - PAPER["actor_critic"]) / PAPER["actor_critic"] < 0.10
    # cross-attention: an encoder and attention layers on top of a U-Net that loses only 3L input channels
    assert counts["denoiser"] < counts["denoiser_cross_attention"] < 1.2 * counts["denoiser"]
