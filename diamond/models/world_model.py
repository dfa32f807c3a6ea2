"""The diffusion world model: a denoiser network + a paradigm (EDM | DDPM) + a sampler, and the batched
imagination rollout of Algorithm 1 (policy acts, R_ψ gives reward/end, D_θ samples the next frame)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from diamond.models.diffusion.paradigms import PARADIGMS, build_paradigm
from diamond.models.diffusion.samplers import SAMPLERS, nfe
from diamond.run.errors import WorldModelFactoryError


class WorldModel(nn.Module):
    """D_θ: conditions on the last L frames and actions (Eq. 5) and samples x_{t+1} with n denoising steps.

    The built-in entry of the world-model registry (diamond/models/registry.py, name `diamond`): stateless, so its
    `memory` is always None and a training segment is the L context frames plus the chained targets."""

    def __init__(self, net: nn.Module, paradigm: Any, sampler: str, num_steps: int, num_history: int, train_chain: int = 1) -> None:
        super().__init__()
        if sampler not in paradigm.supported_samplers:
            raise ValueError(f"sampler {sampler!r} does not apply to {paradigm.name}; use {paradigm.supported_samplers}")
        self.net, self.paradigm = net, paradigm
        self.sampler, self.num_steps = sampler, num_steps
        self.num_history, self.train_chain = num_history, train_chain

    # what it supports (diamond/models/registry.py's declarations): every paradigm and its samplers, offset noise and
    # chained training; the config keys it reads, which reports show as its settings
    paradigms = tuple(PARADIGMS)
    offset_noise = chained_training = True
    config_fields = ("diffusion.paradigm", "diffusion.sampler", "diffusion.num_steps", "diffusion.history",
                     "diffusion.num_history", "diffusion.train_chain", "diffusion.edm.sigma_offset_noise",
                     "diffusion.ddpm.offset_noise", "diffusion.ddpm.quantize_each_step", "denoiser.channels",
                     "denoiser.depths", "denoiser.cond_dim", "denoiser.bottleneck_attention")

    @property
    def samplers(self) -> tuple[str, ...]:
        """The samplers its paradigm drives (play's menu, the sampler ablation)."""
        return tuple(self.paradigm.supported_samplers)

    def _inner(self, x_in: Tensor, c_noise: Tensor, cond: tuple[Tensor, Tensor]) -> Tensor:
        return self.net(x_in, c_noise, cond[0], cond[1])

    @property
    def segment_length(self) -> int:
        """Frames per training segment: L context frames + train_chain targets."""
        return self.num_history + self.train_chain

    def memory(self, obs: Tensor, act: Tensor, state: Any = None) -> None:
        """No memory beyond the L-frame window (the protocol's stateless case)."""
        return None

    def _condition(self, obs_hist: Tensor, act_hist: Tensor, state: Any) -> tuple[Tensor, ...]:
        """What the inner network is conditioned on besides the noisy frame and its noise level."""
        return obs_hist, act_hist

    @property
    def nfe(self) -> int:
        """Network evaluations per generated frame."""
        return nfe(self.sampler, self.num_steps)

    def loss(self, obs: Tensor, act: Tensor, mask: Tensor) -> Tensor:
        """Eq. 5 on a segment of L + chain frames ([B, S, 3, H, W] in [-1, 1], padded frames 0).

        As in the released code, each chained prediction sees the previous one's detached denoised
        estimate in its context, which trains the model on its own (slightly off) outputs."""
        L, chain = self.num_history, self.train_chain
        if obs.shape[1] != self.segment_length:
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
    def predict_next(self, obs_hist: Tensor, act_hist: Tensor, num_steps: int | None = None,
                     generator: torch.Generator | None = None, state: Any = None) -> Tensor:
        """Sample x_{t+1} given [B, L, 3, H, W] frames in [-1, 1] and [B, L] actions (a_t last); `state` is
        the model's memory of the frames before the window (None for this stateless model)."""
        n = self.num_steps if num_steps is None else num_steps
        cond = self._condition(obs_hist, act_hist, state)
        shape = obs_hist[:, -1].shape
        x = self.paradigm.initial_noise(shape, n_steps=n, generator=generator, device=obs_hist.device)
        sigmas = self.paradigm.sigmas(n)  # read as Python floats by the sampler: keep it on the host (no device sync)

        def denoise(x_: Tensor, sigma: Tensor) -> Tensor:
            return self.paradigm.denoise(self._inner, x_, sigma, cond)

        options = self.paradigm.sampler_kwargs(self.sampler)  # churn / eta settings of the config
        return self.paradigm.finish(SAMPLERS[self.sampler](denoise, x, sigmas, generator=generator, **options))

    @torch.no_grad()
    def denoise_at(self, obs_hist: Tensor, act_hist: Tensor, x: Tensor, sigma: float, state: Any = None) -> Tensor:
        """D(x; sigma) given the history, exactly as the sampler calls it (evaluation/sigma_curve.py reads the
        held-out denoising error per noise level through it)."""
        cond = self._condition(obs_hist, act_hist, state)
        return self.paradigm.denoise(self._inner, x, x.new_full((x.shape[0],), sigma), cond)

    @torch.no_grad()
    def rollout(self, obs_hist: Tensor, actions: Tensor, num_steps: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Autoregressive open-loop rollout: L real frames + [B, L - 1 + T] actions → [B, T, 3, H, W]."""
        L = self.num_history
        frames, acts, state = obs_hist, actions, None
        out = []
        for t in range(actions.shape[1] - L + 1):
            nxt = self.predict_next(frames, acts[:, t : t + L], num_steps, generator, state=state)
            out.append(nxt)
            state = self.memory(frames[:, :1], acts[:, t : t + 1], state)  # the frame leaving the window
            frames = torch.cat([frames[:, 1:], nxt[:, None]], dim=1)
        return torch.stack(out, dim=1)


def open_loop(predict: Callable[[Tensor, Tensor, int], Tensor], obs: Tensor, act: Tensor,
              context: int) -> Iterator[Tensor]:
    """The frames imagined after the first `context` real frames of obs [B, T, ...] under the real actions
    (act[:, i] taken at obs[:, i]), one at a time: step t's frame from the `context`-frame window before it, each
    imagined frame entering the window with the real action taken at it. `predict(frames, actions, t)`."""
    hist_obs, hist_act = obs[:, :context], act[:, :context]
    for t in range(context, obs.shape[1]):
        nxt = predict(hist_obs, hist_act, t - context)
        yield nxt
        hist_obs = torch.cat([hist_obs[:, 1:], nxt[:, None]], dim=1)
        hist_act = torch.cat([hist_act[:, 1:], act[:, t : t + 1]], dim=1)


def denoiser_settings(cfg: Any) -> tuple[Any, dict[str, Any]]:
    """The paradigm object and the denoiser network's keyword arguments a Config names (shared by the world
    models built on DIAMOND's denoiser)."""
    from dataclasses import asdict

    d = cfg.diffusion
    paradigm = build_paradigm(d.paradigm, **asdict(getattr(d, d.paradigm)))
    kwargs = dict(
        num_history=d.num_history,
        history=d.history,
        channels=tuple(cfg.denoiser.channels),
        depths=tuple(cfg.denoiser.depths),
        cond_dim=cfg.denoiser.cond_dim,
        bottleneck_attention=cfg.denoiser.bottleneck_attention,
        sigma_data=getattr(d, d.paradigm).sigma_data,
        history_kwargs=dict(cfg.denoiser.history_kwargs),
        attention_residual=cfg.denoiser.attention_residual,
    )
    return paradigm, kwargs


def build_world_model(cfg: Any, num_actions: int) -> WorldModel:
    """The registry's `diamond` world model from a Config: the paradigm, history conditioning and sampler are
    objects picked by name. Suites build through diamond.models.registry.build_world_model (world_model.factory)."""
    from diamond.models.nets import build_denoiser_net

    if cfg.world_model.options:  # an option meant for another model would otherwise be ignored without a word
        raise WorldModelFactoryError(f"world_model.options {dict(cfg.world_model.options)} do not apply to the diamond "
                                     f"world model, which takes none (its settings are the denoiser.* and "
                                     f"diffusion.* keys); drop them, or choose the world_model.factory they are for")
    d = cfg.diffusion
    paradigm, kwargs = denoiser_settings(cfg)
    return WorldModel(build_denoiser_net(num_actions, **kwargs), paradigm, d.sampler, d.num_steps, d.num_history,
                      d.train_chain)


@dataclass
class Imagined:
    """One batch of imagined trajectories (time-major second axis)."""

    obs: Tensor  # [B, H + 1, 3, h, w]: the policy's inputs (after a refill, the new context's last frame)
    actions: Tensor  # [B, H]
    logits: Tensor  # [B, H, A] (with grad)
    values: Tensor  # [B, H + 1] (with grad on the first H)
    rewards: Tensor  # [B, H] in {-1, 0, 1}
    ends: Tensor  # [B, H] in {0, 1}
    valid: Tensor  # [B, H]: 0 after an imagined termination (all 1 when terminated envs are refilled)


def sample_reward_end(rew_logits: Tensor, end_logits: Tensor) -> tuple[Tensor, Tensor]:
    """Reward class {0,1,2} → {-1,0,+1} and end ∈ {0,1}, both sampled as in the released code."""
    reward = Categorical(logits=rew_logits.float()).sample().float() - 1.0  # float: bf16 logits under autocast
    end = Categorical(logits=end_logits.float()).sample().float()
    return reward, end


ReState = tuple[Tensor, Tensor] | None
WorldModelStep = Callable[[Tensor, Tensor, ReState], tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor]]]


@torch.no_grad()
def world_model_step(world_model: WorldModel, reward_end: nn.Module, hist_obs: Tensor, hist_act: Tensor,
                     re_state: ReState, memory: Any = None) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor]]:
    """The gradient-free part of one imagined step: D_θ samples x_{t+1} from the last L frames and actions
    (a_t last) and its memory of earlier frames, R_ψ scores (x_t, a_t, x_{t+1}). Returns (x_{t+1}, reward
    logits, end logits, R_ψ state); a function of tensors only, so perf.cuda_graphs can capture it whole."""
    nxt = world_model.predict_next(hist_obs, hist_act, state=memory)
    rl, el, re_state = reward_end(hist_obs[:, -1:], hist_act[:, -1:], nxt[:, None], re_state)
    return nxt, rl[:, 0], el[:, 0], re_state


Refill = Callable[[int], tuple[Tensor, Tensor]]


def burn_in(actor_critic: nn.Module, reward_end: nn.Module, obs: Tensor, act: Tensor) -> tuple[ReState, ReState]:
    """LSTM states of (π, V) after the first L - 1 context frames (the last one is the policy's first input)
    and of R_ψ after the L - 1 context transitions (Alg. 1: burn-in before imagining)."""
    ac_state = None
    for t in range(obs.shape[1] - 1):
        _, _, ac_state = actor_critic(obs[:, t], ac_state)
    re_state = None
    if obs.shape[1] > 1:
        with torch.no_grad():
            _, _, re_state = reward_end(obs[:, :-1], act[:, :-1], obs[:, 1:], None)
    return ac_state, re_state


def _set_rows(state: tuple[Tensor, Tensor], rows: Tensor, new: ReState) -> tuple[Tensor, Tensor]:
    """An LSTM state with the `rows` (bool [B]) replaced by `new` (None: zeros, a fresh LSTM)."""
    h, c = state[0].clone(), state[1].clone()
    h[rows], c[rows] = (0.0, 0.0) if new is None else new
    return h, c


def imagine(actor_critic: nn.Module, world_model: WorldModel, reward_end: nn.Module, obs: Tensor, act: Tensor,
            horizon: int, step: WorldModelStep | None = None, refill: Refill | None = None) -> Imagined:
    """Algorithm 1, update_actor_critic: burn in (π, V) and R_ψ on L real frames, then imagine H steps.

    obs: [B, L, 3, h, w] real context in [-1, 1] (padding = 0), act: [B, L] with act[:, i] taken at
    obs[:, i] (the last one is replaced by the policy's choice).
    After an imagined termination, `refill(n)` (n new real contexts, as obs and act) restarts the env from a
    fresh burned-in context, as the released code's WorldModelEnv does (its actor burn-in then runs with
    gradient, like the steps after it); without `refill` the terminated trajectory stays in the batch and its
    later steps are masked (valid = 0). `step` replaces world_model_step (e.g. by its CUDA-graph capture,
    diamond.loop.perf); None is the plain path. A world model with memory (diamond/models/registry.py) gets each frame
    that leaves the window; while its memory is not None, the plain path runs (a capture holds no memory)."""
    with torch.no_grad():
        ac_state, re_state = burn_in(actor_critic, reward_end, obs, act)
    hist_obs, hist_act, memory = obs, act, None
    fold = getattr(world_model, "memory", None)  # None when a scripted `step` stands in for the world model
    frames, acts, logits_all, values, rewards, ends = [obs[:, -1]], [], [], [], [], []
    for t in range(horizon):
        logits, value, ac_state = actor_critic(frames[-1], ac_state)
        action = Categorical(logits=logits.float()).sample()
        # frame i pairs with the action taken at frame i (as in training): the new action fills the last
        # slot beside the newest frame, and both windows slide together after the step (released code too)
        hist_act = torch.cat([hist_act[:, :-1], action[:, None]], dim=1)
        if step is None or memory is not None:
            nxt, rl, el, re_state = world_model_step(world_model, reward_end, hist_obs, hist_act, re_state, memory)
        else:
            nxt, rl, el, re_state = step(hist_obs, hist_act, re_state)
        r, d = sample_reward_end(rl, el)
        if fold is not None:
            with torch.no_grad():
                memory = fold(hist_obs[:, :1], hist_act[:, :1], memory)  # the frame leaving the window
        hist_obs = torch.cat([hist_obs[:, 1:], nxt[:, None]], dim=1)
        hist_act = torch.cat([hist_act[:, 1:], action[:, None]], dim=1)  # last slot: overwritten next step
        policy_input = nxt
        dead = d.bool()
        if refill is not None and t + 1 < horizon and bool(dead.any()):
            new_obs, new_act = refill(int(dead.sum()))
            new_ac, new_re = burn_in(actor_critic, reward_end, new_obs, new_act)
            ac_state, re_state = _set_rows(ac_state, dead, new_ac), _set_rows(re_state, dead, new_re)
            if memory is not None:  # a restarted env has seen nothing before its new window
                memory = memory.clone()
                memory[dead] = fold(new_obs[:, :0], new_act[:, :0])
            hist_obs, hist_act = hist_obs.clone(), hist_act.clone()
            hist_obs[dead], hist_act[dead] = new_obs, new_act
            policy_input = hist_obs[:, -1]
        frames.append(policy_input)
        acts.append(action)
        logits_all.append(logits)
        values.append(value)
        rewards.append(r)
        ends.append(d)
    with torch.no_grad():
        _, last_value, _ = actor_critic(frames[-1], ac_state)
    values.append(last_value)
    ends_t = torch.stack(ends, 1)
    if refill is not None:  # a terminated env restarted: every step is a real one
        alive_before = torch.ones_like(ends_t)
    else:
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
