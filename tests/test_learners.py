"""Learning checks on CPU: R_ψ learns a synthetic reward rule; a tiny denoiser overfits real Breakout
transitions for both paradigms and both history conditionings; imagination wiring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diamond.loop.agent import Learner, build_agent
from diamond.loop.config import build_config
from diamond.loop.data import to_float
from diamond.loop.envs import make_env
from diamond.models.nets.reward_end import RewardEndNet
from diamond.models.world_model import build_world_model, imagine


def test_reward_end_model_learns_a_pixel_rule() -> None:
    """Reward +1 when a red square appears in the next frame, -1 for blue, 0 otherwise; end when both."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    def batch(n: int) -> tuple[torch.Tensor, ...]:
        obs = torch.rand(n, 1, 3, 16, 16, generator=gen) * 0.2 - 0.1
        nxt = obs.clone()
        cls = torch.randint(0, 3, (n,), generator=gen)
        nxt[cls == 2, 0, 0, 4:8, 4:8] = 1.0  # red: +1
        nxt[cls == 0, 0, 2, 10:14, 10:14] = 1.0  # blue: -1
        act = torch.randint(0, 4, (n, 1), generator=gen)
        return obs, act, nxt, cls

    net = RewardEndNet(4, channels=(8, 8), depths=(1, 1), cond_dim=8, lstm_dim=16, bottleneck_attention=False, img_size=16)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(150):
        obs, act, nxt, cls = batch(32)
        rew_logits, _, _ = net(obs, act, nxt)
        loss = torch.nn.functional.cross_entropy(rew_logits[:, 0], cls)
        opt.zero_grad()
        loss.backward()
        opt.step()
    obs, act, nxt, cls = batch(400)
    with torch.no_grad():
        acc = (net(obs, act, nxt)[0][:, 0].argmax(-1) == cls).float().mean().item()
    assert acc > 0.95, acc


@pytest.fixture(scope="module")
def breakout_transitions() -> tuple[torch.Tensor, torch.Tensor]:
    """A handful of real Breakout transitions (six segments of 5 frames), area-downsampled to 32x32 for CPU speed."""
    env = make_env("Breakout", train=False, seed=0)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    frames, acts = [obs], []
    for _ in range(40):
        a = int(rng.integers(4))
        obs, _, term, trunc, _ = env.step(a)
        frames.append(obs)
        acts.append(a)
        if term or trunc:
            break
    frames_t = torch.nn.functional.avg_pool2d(to_float(torch.from_numpy(np.stack(frames[:30]))), 2)
    acts_t = torch.tensor(acts[:30])
    starts = [0, 5, 10, 15, 20, 24]
    seg_obs = torch.stack([frames_t[s : s + 5] for s in starts])
    seg_act = torch.stack([acts_t[s : s + 5] for s in starts])
    return seg_obs, seg_act


@pytest.mark.parametrize("paradigm,sampler,history", [("edm", "euler", "frame_stack"), ("edm", "euler", "cross_attention"),
                                                      ("ddpm", "ddim", "frame_stack"), ("ddpm", "ddim", "cross_attention")])
def test_tiny_denoiser_overfits_real_breakout(breakout_transitions, paradigm: str, sampler: str, history: str) -> None:
    torch.manual_seed(0)
    cfg = build_config("smoke", [f"diffusion.paradigm={paradigm}", f"diffusion.sampler={sampler}",
                                 f"diffusion.history={history}", "diffusion.train_chain=1",
                                 "denoiser.channels=[16,16,16,16]", "denoiser.depths=[1,1,1,1]"]
                       + (["denoiser.history_kwargs={encoder_channels: [8, 8, 8, 8], encoder_cond_dim: 16}"]
                          if history == "cross_attention" else []))
    wm = build_world_model(cfg, num_actions=4)
    obs, act = breakout_transitions
    mask = torch.ones(obs.shape[:2], dtype=torch.bool)

    def fixed_loss() -> float:  # same σ/noise draws before and after training
        with torch.random.fork_rng():
            torch.manual_seed(123)
            return float(np.mean([wm.loss(obs, act, mask).item() for _ in range(8)]))

    before = fixed_loss()
    opt = torch.optim.Adam(wm.parameters(), lr=2e-3)
    for _ in range(200):
        loss = wm.loss(obs, act, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = fixed_loss()
    assert after < before / 10, (before, after)


def test_imagination_and_actor_critic_update_shapes() -> None:
    torch.manual_seed(0)
    cfg = build_config("smoke", ["training.batch_size=3"])
    agent = build_agent(cfg, num_actions=4)
    learner = Learner(agent, cfg)
    obs = torch.rand(3, 4, 3, 64, 64) * 2 - 1
    act = torch.randint(0, 4, (3, 4))
    traj = imagine(agent.actor_critic, agent.world_model, agent.reward_end, obs, act, horizon=5)
    assert traj.obs.shape == (3, 6, 3, 64, 64) and traj.values.shape == (3, 6) and traj.logits.shape == (3, 5, 4)
    assert set(traj.rewards.unique().tolist()) <= {-1.0, 0.0, 1.0}
    # valid is 1 until (and including) the first imagined termination, 0 after it
    for b in range(3):
        ends = traj.ends[b].tolist()
        first = ends.index(1.0) if 1.0 in ends else 5
        assert traj.valid[b].tolist() == [1.0] * min(first + 1, 5) + [0.0] * (5 - min(first + 1, 5))
    before = [p.clone() for p in agent.actor_critic.parameters()]
    wm_before = [p.clone() for p in agent.world_model.parameters()]
    info = learner.update_actor_critic(obs, act)
    assert np.isfinite(info["actor_critic/loss_value"]) and learner.steps["actor_critic"] == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.actor_critic.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(wm_before, agent.world_model.parameters()))  # world model untouched
