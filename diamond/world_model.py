"""The diffusion world model: a denoiser network + a paradigm (EDM | DDPM) + a sampler, and the batched
imagination rollout of Algorithm 1 (policy acts, R_ψ gives reward/end, D_θ samples the next frame)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from diamond.diffusion.paradigms import build_paradigm
from diamond.diffusion.samplers import SAMPLERS, nfe


class WorldModel(nn.Module):
    """D_θ: conditions on the last L frames and actions (Eq. 5) and samples x_{t+1} with n denoising steps."""

    def __init__(self, net: nn.Module, paradigm: Any, sampler: str, num_steps: int, num_history: int, train_chain: int = 1) -> None:
        super().__init__()
        if sampler not in paradigm.supported_samplers:
            raise ValueError(f"sampler {sampler!r} does not apply to {paradigm.name}; use {paradigm.supported_samplers}")
        self.net, self.paradigm = net, paradigm
        self.sampler, self.num_steps = sampler, num_steps
        self.num_history, self.train_chain = num_history, train_chain

    def _inner(self, x_in: Tensor, c_noise: Tensor, cond: tuple[Tensor, Tensor]) -> Tensor:
        return self.net(x_in, c_noise, cond[0], cond[1])

    @property
    def nfe(self) -> int:
        """Network evaluations per generated frame."""
        return nfe(self.sampler, self.num_steps)

    def loss(self, obs: Tensor, act: Tensor, mask: Tensor) -> Tensor:
        """Eq. 5 on a segment of L + chain frames ([B, S, 3, H, W] in [-1, 1], padded frames 0).

        As in the released code, each chained prediction sees the previous one's detached denoised
        estimate in its context, which trains the model on its own (slightly off) outputs."""
        L, chain = self.num_history, self.train_chain
        if obs.shape[1] != L + chain:
            raise ValueError(f"denoiser segments need L + train_chain = {L + chain} frames, got {obs.shape[1]}")
        frames = obs.clone()
        total = obs.new_zeros(())
        for i in range(chain):
            target, valid = frames[:, L + i], mask[:, L + i].to(obs.dtype)
            cond = (frames[:, i : L + i], act[:, i : L + i])
            per_sample, denoised = self.paradigm.training_loss(self._inner, target, cond)
            total = total + (per_sample * valid).sum() / valid.sum().clamp(min=1.0)
            if i + 1 < chain:
                frames[:, L + i] = torch.where(valid.bool()[:, None, None, None], denoised.detach(), frames[:, L + i])
        return total / chain

    @torch.no_grad()
    def predict_next(self, obs_hist: Tensor, act_hist: Tensor, num_steps: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Sample x_{t+1} given [B, L, 3, H, W] frames in [-1, 1] and [B, L] actions (a_t last)."""
        n = self.num_steps if num_steps is None else num_steps
        cond = (obs_hist, act_hist)
        shape = obs_hist[:, -1].shape
        x = self.paradigm.initial_noise(shape, n_steps=n, generator=generator, device=obs_hist.device)
        sigmas = self.paradigm.sigmas(n)  # read as Python floats by the sampler: keep it on the host (no device sync)

        def denoise(x_: Tensor, sigma: Tensor) -> Tensor:
            return self.paradigm.denoise(self._inner, x_, sigma, cond)

        return SAMPLERS[self.sampler](denoise, x, sigmas, generator=generator)

    @torch.no_grad()
    def rollout(self, obs_hist: Tensor, actions: Tensor, num_steps: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Autoregressive open-loop rollout: L real frames + [B, L - 1 + T] actions → [B, T, 3, H, W]."""
        L = self.num_history
        frames, acts = obs_hist, actions
        out = []
        for t in range(actions.shape[1] - L + 1):
            nxt = self.predict_next(frames, acts[:, t : t + L], num_steps, generator)
            out.append(nxt)
            frames = torch.cat([frames[:, 1:], nxt[:, None]], dim=1)
        return torch.stack(out, dim=1)


def build_world_model(cfg: Any, num_actions: int) -> WorldModel:
    """World model from a Config: the paradigm, history conditioning and sampler are objects picked by name."""
    from dataclasses import asdict

    from diamond.nets import build_denoiser_net

    d = cfg.diffusion
    paradigm = build_paradigm(d.paradigm, **asdict(getattr(d, d.paradigm)))
    net = build_denoiser_net(
        num_actions,
        num_history=d.num_history,
        history=d.history,
        channels=tuple(cfg.denoiser.channels),
        depths=tuple(cfg.denoiser.depths),
        cond_dim=cfg.denoiser.cond_dim,
        bottleneck_attention=cfg.denoiser.bottleneck_attention,
        sigma_data=getattr(d, d.paradigm).sigma_data,
        history_kwargs=dict(cfg.denoiser.history_kwargs),
    )
    return WorldModel(net, paradigm, d.sampler, d.num_steps, d.num_history, d.train_chain)


@dataclass
class Imagined:
    """One batch of imagined trajectories (time-major second axis)."""

    obs: Tensor  # [B, H + 1, 3, h, w]
    actions: Tensor  # [B, H]
    logits: Tensor  # [B, H, A] (with grad)
    values: Tensor  # [B, H + 1] (with grad on the first H)
    rewards: Tensor  # [B, H] in {-1, 0, 1}
    ends: Tensor  # [B, H] in {0, 1}
    valid: Tensor  # [B, H]: 0 after an imagined termination


def sample_reward_end(rew_logits: Tensor, end_logits: Tensor) -> tuple[Tensor, Tensor]:
    """Reward class {0,1,2} → {-1,0,+1} and end ∈ {0,1}, both sampled as in the released code."""
    reward = Categorical(logits=rew_logits.float()).sample().float() - 1.0  # float: bf16 logits under autocast
    end = Categorical(logits=end_logits.float()).sample().float()
    return reward, end


ReState = tuple[Tensor, Tensor] | None
WorldModelStep = Callable[[Tensor, Tensor, ReState], tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor]]]


@torch.no_grad()
def world_model_step(world_model: WorldModel, reward_end: nn.Module, hist_obs: Tensor, hist_act: Tensor,
                     re_state: ReState) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor]]:
    """The gradient-free part of one imagined step: D_θ samples x_{t+1} from the last L frames and actions
    (a_t last), R_ψ scores (x_t, a_t, x_{t+1}). Returns (x_{t+1}, reward logits, end logits, R_ψ state);
    a function of tensors only, so perf.cuda_graphs can capture it whole."""
    nxt = world_model.predict_next(hist_obs, hist_act)
    rl, el, re_state = reward_end(hist_obs[:, -1:], hist_act[:, -1:], nxt[:, None], re_state)
    return nxt, rl[:, 0], el[:, 0], re_state


def imagine(actor_critic: nn.Module, world_model: WorldModel, reward_end: nn.Module, obs: Tensor, act: Tensor,
            horizon: int, step: WorldModelStep | None = None) -> Imagined:
    """Algorithm 1, update_actor_critic: burn in (π, V) and R_ψ on L real frames, then imagine H steps.

    obs: [B, L, 3, h, w] real context in [-1, 1] (padding = 0), act: [B, L] (the last action is chosen
    by the policy). A terminated trajectory stays in the batch but its later steps are masked (valid).
    `step` replaces world_model_step (e.g. by its CUDA-graph capture, diamond.perf); None is the plain path."""
    L = obs.shape[1]
    with torch.no_grad():
        ac_state = None
        for t in range(L - 1):
            _, _, ac_state = actor_critic(obs[:, t], ac_state)
        re_state = None
        if L > 1:
            _, _, re_state = reward_end(obs[:, :-1], act[:, :-1], obs[:, 1:], None)
    hist_obs, hist_act = obs, act.clone()
    frames, acts, logits_all, values, rewards, ends = [obs[:, -1]], [], [], [], [], []
    for _ in range(horizon):
        logits, value, ac_state = actor_critic(frames[-1], ac_state)
        action = Categorical(logits=logits.float()).sample()
        hist_act = torch.cat([hist_act[:, 1:], action[:, None]], dim=1) if L > 1 else action[:, None]
        if step is None:
            nxt, rl, el, re_state = world_model_step(world_model, reward_end, hist_obs, hist_act, re_state)
        else:
            nxt, rl, el, re_state = step(hist_obs, hist_act, re_state)
        r, d = sample_reward_end(rl, el)
        hist_obs = torch.cat([hist_obs[:, 1:], nxt[:, None]], dim=1)
        frames.append(nxt)
        acts.append(action)
        logits_all.append(logits)
        values.append(value)
        rewards.append(r)
        ends.append(d)
    with torch.no_grad():
        _, last_value, _ = actor_critic(frames[-1], ac_state)
    values.append(last_value)
    ends_t = torch.stack(ends, 1)
    alive_before = torch.cumprod(torch.cat([torch.ones_like(ends_t[:, :1]), 1 - ends_t[:, :-1]], dim=1), dim=1)
    return Imagined(
        obs=torch.stack(frames, 1),
        actions=torch.stack(acts, 1),
        logits=torch.stack(logits_all, 1),
        values=torch.stack(values, 1),
        rewards=torch.stack(rewards, 1),
        ends=ends_t,
        valid=alive_before,
    )
