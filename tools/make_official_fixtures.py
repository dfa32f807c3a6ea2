"""Write golden fixtures produced by the authors' released DIAMOND code (eloialonso/diamond, branch main).

    python tools/make_official_fixtures.py --official /path/to/diamond-checkout --out tests/fixtures/official

Only the released code's model modules are imported (torch, omegaconf, torcheval); its `wandb` import is
replaced by an empty module. Nothing of that code is copied here: the files hold tensors it produced
(tiny weights, fixed inputs and noise, its outputs) and the parameter shapes of its paper-size networks.
tests/test_official_equivalence.py loads them into our modules through diamond/models/official.py.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import types
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

A, B, L, SIZE = 5, 2, 4, 32  # actions, batch, history, frame size of the tiny networks
FIXTURES = ("weights", "denoiser", "reward_end", "actor_critic", "imagination", "segments", "ac_loss", "loop",
            "schedule")  # file names (.pt), in the order they are produced


def import_released(root: Path) -> SimpleNamespace:
    sys.path.insert(0, str(root / "src"))
    sys.modules.setdefault("wandb", types.ModuleType("wandb"))  # its pin does not import with numpy 2
    from data.episode import Episode
    from data.segment import SegmentId
    from data.utils import make_segment
    from envs.world_model_env import WorldModelEnv, WorldModelEnvConfig
    from models.actor_critic import ActorCritic, ActorCriticConfig, ActorCriticLossConfig, compute_lambda_returns
    from models.diffusion import (
        Denoiser,
        DenoiserConfig,
        DiffusionSampler,
        DiffusionSamplerConfig,
        InnerModelConfig,
        SigmaDistributionConfig,
    )
    from models.rew_end_model import RewEndModel, RewEndModelConfig
    return SimpleNamespace(
        WorldModelEnv=WorldModelEnv, WorldModelEnvConfig=WorldModelEnvConfig, ActorCritic=ActorCritic,
        ActorCriticConfig=ActorCriticConfig, ActorCriticLossConfig=ActorCriticLossConfig,
        compute_lambda_returns=compute_lambda_returns, Denoiser=Denoiser, DenoiserConfig=DenoiserConfig,
        DiffusionSampler=DiffusionSampler, DiffusionSamplerConfig=DiffusionSamplerConfig,
        InnerModelConfig=InnerModelConfig, SigmaDistributionConfig=SigmaDistributionConfig, RewEndModel=RewEndModel,
        RewEndModelConfig=RewEndModelConfig, Episode=Episode, SegmentId=SegmentId, make_segment=make_segment)


def perturb(module: torch.nn.Module, scale: float) -> torch.nn.Module:
    """Zero-initialised layers make a fresh net trivial: add noise so every parameter matters."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


def frames(*shape: int) -> torch.Tensor:
    """8-bit frames in [-1, 1], as replay stores them."""
    return torch.randint(0, 256, shape).float().div(127.5).sub(1)


def tiny(r: SimpleNamespace) -> SimpleNamespace:
    torch.manual_seed(0)
    den = r.Denoiser(r.DenoiserConfig(r.InnerModelConfig(img_channels=3, num_steps_conditioning=L, cond_channels=32,
                                                         depths=[1, 1, 1, 1], channels=[16, 16, 16, 16],
                                                         attn_depths=[0, 0, 0, 0], num_actions=A),
                                      sigma_data=0.5, sigma_offset_noise=0.3))
    rew = r.RewEndModel(r.RewEndModelConfig(lstm_dim=16, img_channels=3, img_size=SIZE, cond_channels=16,
                                            depths=[1, 1, 1, 1], channels=[8, 8, 8, 8], attn_depths=[0, 0, 0, 0],
                                            num_actions=A))
    ac = r.ActorCritic(r.ActorCriticConfig(lstm_dim=16, img_channels=3, img_size=SIZE, channels=[8, 8, 8, 8],
                                           down=[1, 1, 1, 1], num_actions=A))
    return SimpleNamespace(den=perturb(den, 0.05), rew=perturb(rew, 0.05), ac=perturb(ac, 0.1))


def denoiser_fixture(r: SimpleNamespace, m: SimpleNamespace) -> dict:
    torch.manual_seed(1)
    obs, act = frames(B, L + 2, 3, SIZE, SIZE), torch.randint(0, A, (B, L + 2))
    sigma = torch.tensor([0.05, 2.0])
    cs = m.den.compute_conditioners(sigma)
    x_noisy = obs[:, L] + sigma[:, None, None, None] * torch.randn(B, 3, SIZE, SIZE)
    ctx = obs[:, :L].reshape(B, L * 3, SIZE, SIZE)
    with torch.no_grad():
        inner = m.den.compute_model_output(x_noisy, ctx, act[:, :L], cs)
        raw_d = cs.c_skip * x_noisy + cs.c_out * inner
        denoised = m.den.denoise(x_noisy, sigma, ctx, act[:, :L])
    m.den.setup_training(r.SigmaDistributionConfig(loc=-0.4, scale=1.2, sigma_min=2e-3, sigma_max=20))
    torch.manual_seed(2)  # the loss draws sigma, offset noise, noise per chained prediction from the global RNG
    batch = SimpleNamespace(obs=obs, act=act, mask_padding=torch.ones(B, L + 2, dtype=torch.bool))
    loss, _ = m.den(batch)
    grads = torch.autograd.grad(loss, [m.den.inner_model.conv_in.weight, m.den.inner_model.conv_out.bias])
    sampler = r.DiffusionSampler(m.den, r.DiffusionSamplerConfig(num_steps_denoising=3))
    torch.manual_seed(3)
    sample, trajectory = sampler.sample(obs[:, :L], act[:, :L])
    return {"obs": obs, "act": act, "sigma": sigma, "c_in": cs.c_in.flatten(), "c_out": cs.c_out.flatten(),
            "c_skip": cs.c_skip.flatten(), "c_noise": cs.c_noise.flatten(), "x_noisy": x_noisy, "inner": inner,
            "raw_denoised": raw_d, "denoised": denoised, "loss": loss.detach(),
            "grad_conv_in": grads[0], "grad_conv_out_bias": grads[1], "sampler_sigmas": sampler.sigmas,
            "sample": sample, "sample_after_first_step": trajectory[1]}


def reward_end_fixture(r: SimpleNamespace, m: SimpleNamespace) -> dict:
    torch.manual_seed(4)
    T = 8  # frames of the segment: L - 1 burn-in transitions, then one step at a time like imagination
    obs, act = frames(B, T, 3, SIZE, SIZE), torch.randint(0, A, (B, T))
    rew = torch.tensor([[0.0, 3.0, 0.0, -1.0, 0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0]])
    end = torch.zeros(B, T, dtype=torch.long)
    end[0, 5] = 1  # env 0's episode ends at transition 5; released segments pad after it and keep the
    mask = torch.ones(B, T, dtype=torch.bool)  # final frame in info["final_observation"]
    mask[0, 6:] = False
    final_obs = obs[0, 6].clone()
    padded = obs.clone()
    padded[0, 6:] = 0
    with torch.no_grad():
        rl_b, el_b, state = m.rew.predict_rew_end(obs[:, : L - 1], act[:, : L - 1], obs[:, 1:L])
        steps = [m.rew.predict_rew_end(obs[:, t : t + 1], act[:, t : t + 1], obs[:, t + 1 : t + 2], state)
                 for t in range(L - 1, L + 1)]  # state is not advanced: each step from the burn-in state
        rl_all, el_all, _ = m.rew.predict_rew_end(obs[:, :-1], act[:, :-1], obs[:, 1:])
    batch = SimpleNamespace(obs=padded, act=act, rew=rew, end=end, mask_padding=mask,
                            info=[{"final_observation": final_obs}, {}])
    loss, metrics = m.rew(batch)
    return {"obs": obs, "act": act, "rew": rew, "end": end, "mask_with_final": mask | torch.tensor([[0] * 6 + [1, 0], [1] * T]).bool(),
            "burnin_rew_logits": rl_b, "burnin_end_logits": el_b, "burnin_h": state[0][0], "burnin_c": state[1][0],
            "step_rew_logits": torch.cat([s[0] for s in steps], 1), "step_end_logits": torch.cat([s[1] for s in steps], 1),
            "all_rew_logits": rl_all, "all_end_logits": el_all,
            "loss_rew": metrics["loss_rew"], "loss_end": metrics["loss_end"], "loss": loss.detach()}


def actor_critic_fixture(r: SimpleNamespace, m: SimpleNamespace) -> dict:
    torch.manual_seed(5)
    obs = frames(B, 6, 3, SIZE, SIZE)
    hx = cx = torch.zeros(B, 16)
    logits, values = [], []
    with torch.no_grad():
        for t in range(6):
            out = m.ac.predict_act_value(obs[:, t], (hx, cx))
            hx, cx = out.hx_cx
            logits.append(out.logits_act)
            values.append(out.val)
    lam = {"rew": torch.randn(3, 7).round(), "end": (torch.rand(3, 7) < 0.2).float(), "val": torch.randn(3, 7)}
    trunc = torch.zeros(3, 7)
    trunc[:, -1] = 1  # every imagined trajectory is cut at the horizon, where V bootstraps
    lam["end"][:, -1] = torch.tensor([0.0, 1.0, 0.0])
    lam["returns"] = r.compute_lambda_returns(lam["rew"], lam["end"], trunc, lam["val"], 0.985, 0.95)
    return {"obs": obs, "logits": torch.stack(logits, 1), "values": torch.stack(values, 1),
            **{f"lambda_{k}": v for k, v in lam.items()}}


class Loader:
    """Stand-in DataLoader for WorldModelEnv: yields fixed real contexts (obs [B, L, ...], act [B, L])."""

    def __init__(self, contexts: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batch_sampler = SimpleNamespace(batch_size=contexts[0][1].shape[0])
        self.contexts = contexts

    def __iter__(self):
        return iter(SimpleNamespace(obs=o, act=a) for o, a in self.contexts)


def loss_fixture(r: SimpleNamespace, m: SimpleNamespace, horizon: int = 5) -> dict:
    """Two updates of the released actor-critic loss in its WorldModelEnv; the second one starts from fresh
    contexts burned in by the released env loop. Its trajectory, losses and gradients are stored."""
    torch.manual_seed(6)
    contexts = [(frames(B, L, 3, SIZE, SIZE), torch.randint(0, A, (B, L))) for _ in range(3)]
    env = r.WorldModelEnv(m.den, m.rew, Loader(contexts), r.WorldModelEnvConfig(
        horizon=horizon, num_batches_to_preload=1, diffusion_sampler=r.DiffusionSamplerConfig(num_steps_denoising=3)))
    predict_rew_end = env.predict_rew_end

    def no_end(next_obs):  # keep every trajectory alive for the whole window (rewards stay sampled)
        rew, end = predict_rew_end(next_obs)
        return rew, torch.zeros_like(end)

    env.predict_rew_end = no_end
    ac = m.ac
    ac.setup_training(env, r.ActorCriticLossConfig(backup_every=horizon, gamma=0.985, lambda_=0.95,
                                                   weight_value_loss=1.0, weight_entropy_loss=0.001))
    torch.manual_seed(7)
    ac()  # first update: starts from zero LSTM state (no burn-in), ends by resetting every env
    captured = {}
    send = ac.env_loop.send
    ac.env_loop = SimpleNamespace(send=lambda n: captured.setdefault("out", send(n)))
    loss, metrics = ac()
    ac.zero_grad()
    loss.backward()
    obs, act, rew, end, trunc, logits, val, val_bootstrap, infos = captured["out"]
    out = {"context_obs": contexts[1][0], "obs": obs, "act": act, "rew": rew,
           "end": end, "trunc": trunc, "logits": logits.detach(), "values": val.detach(),
           "val_bootstrap": val_bootstrap, "final_obs": infos[-1]["final_observation"],
           "loss": loss.detach(), **{k: metrics[k] for k in ("loss_actions", "loss_values", "loss_entropy")}}
    out.update({f"grad.{k}": p.grad.clone() for k, p in ac.named_parameters()})
    ac.env_loop, ac.loss_cfg = None, None
    return out


def stand_in_next(obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """Deterministic stand-in for the sampler: depends on every frame and action of the window."""
    w = torch.arange(1, obs.shape[1] + 1, dtype=obs.dtype)
    x = torch.tanh((obs * w[None, :, None, None, None]).sum(1) * 0.3 + 0.02 * (act.to(obs.dtype) * w).sum(1)[:, None, None, None])
    return to_uint8(x).float().div(127.5).sub(1)  # 8-bit frames, stored exactly as uint8


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.add(1).mul(127.5).round().to(torch.uint8)


def scripted_action(obs: torch.Tensor) -> torch.Tensor:
    return (obs.flatten(1).mean(1) * 1000).floor().long() % A


def imagination_fixture(r: SimpleNamespace, m: SimpleNamespace, horizon: int = 6, end_env: int = 0, end_step: int = 2) -> dict:
    """Drive the released WorldModelEnv with a scripted policy and a deterministic stand-in denoiser; record
    the (frames, actions) each sampler call sees. Env `end_env` terminates at step `end_step`."""
    torch.manual_seed(8)
    contexts = [(frames(B, L, 3, SIZE, SIZE), torch.randint(0, A, (B, L))) for _ in range(2)]
    env = r.WorldModelEnv(m.den, m.rew, Loader(contexts), r.WorldModelEnvConfig(
        horizon=horizon, num_batches_to_preload=1, diffusion_sampler=r.DiffusionSamplerConfig(num_steps_denoising=3)))
    seen_obs, seen_act, k = [], [], [0]

    def predict_next_obs():
        seen_obs.append(env.obs_buffer.clone())
        seen_act.append(env.act_buffer.clone())
        return stand_in_next(env.obs_buffer, env.act_buffer), []

    def predict_rew_end(next_obs):
        end = torch.zeros(B, dtype=torch.long)
        end[end_env] = int(k[0] == end_step)
        k[0] += 1
        return torch.zeros(B), end

    env.predict_next_obs, env.predict_rew_end = predict_next_obs, predict_rew_end
    obs, _ = env.reset()
    actions = []
    for _ in range(horizon):
        a = scripted_action(obs)
        actions.append(a)
        obs, *_ = env.step(a)
    return {"context_obs": to_uint8(torch.stack([c[0] for c in contexts])),
            "context_act": torch.stack([c[1] for c in contexts]), "seen_obs": to_uint8(torch.stack(seen_obs, 1)), "seen_act": torch.stack(seen_act, 1), "actions": torch.stack(actions, 1),
            "end_env": torch.tensor(end_env), "end_step": torch.tensor(end_step)}


def loop_fixture(r: SimpleNamespace, m: SimpleNamespace, horizon: int = 5, seed: int = 10) -> dict:
    """The released actor-critic update (make_env_loop in its WorldModelEnv) with the tiny actor-critic and R_ψ
    acting for real: actions, rewards and ends are sampled from their logits (global RNG, reseeded with `seed`
    at the start of the recorded update), only the sampler is the deterministic stand-in. The first update
    runs without terminations; in the second (recorded) one env 0 terminates at step 1, envs 0 and 2 at step 3
    (forced after sampling: the RNG draws are unchanged), so refills of one and of two envs happen mid-window.
    Stored: the contexts the released env handed out (window start, then each refill) with their R_ψ burn-in
    states, every step's policy input, action, R_ψ logits, sampled reward and end, actor logits and values, the
    bootstrap values, the losses and the gradient of every actor-critic parameter."""
    nb = 3
    forced = {horizon + 1: (0,), horizon + 3: (0, 2)}  # global imagination step -> envs that terminate
    torch.manual_seed(9)
    contexts = [(frames(nb, L, 3, SIZE, SIZE), torch.randint(0, A, (nb, L))) for _ in range(4)]
    env = r.WorldModelEnv(m.den, m.rew, Loader(contexts), r.WorldModelEnvConfig(
        horizon=horizon, num_batches_to_preload=1, diffusion_sampler=r.DiffusionSamplerConfig(num_steps_denoising=3)))
    env.predict_next_obs = lambda: (stand_in_next(env.obs_buffer, env.act_buffer), [])
    handed, step_logits, k = [], [], [0]
    send = env.generator_init.send
    env.generator_init = SimpleNamespace(send=lambda n: handed.append(send(n)) or handed[-1])
    rew_end_model_step = m.rew.predict_rew_end

    def predict_rew_end_logged(obs, act, next_obs, hx_cx=None):
        out = rew_end_model_step(obs, act, next_obs, hx_cx)
        if obs.shape[1] == 1:  # an imagination step (the burn-ins see L - 1 transitions at once)
            step_logits.append((out[0][:, 0].clone(), out[1][:, 0].clone()))
        return out

    m.rew.predict_rew_end = predict_rew_end_logged
    sample_rew_end = env.predict_rew_end

    def forced_end(next_obs):
        rew, end = sample_rew_end(next_obs)  # both sampled from the real logits (RNG order kept)
        end = torch.zeros_like(end)
        end[list(forced.get(k[0], ()))] = 1
        k[0] += 1
        return rew, end

    env.predict_rew_end = forced_end
    ac = m.ac
    ac.setup_training(env, r.ActorCriticLossConfig(backup_every=horizon, gamma=0.985, lambda_=0.95,
                                                   weight_value_loss=1.0, weight_entropy_loss=0.001))
    torch.manual_seed(seed - 1)
    ac()  # first update: zero LSTM state, no burn-in; ends by restarting every env from a new context
    first = len(handed) - 1  # the contexts the recorded update starts from
    captured, logged = {}, len(step_logits)
    loop = ac.env_loop
    ac.env_loop = SimpleNamespace(send=lambda n: captured.setdefault("out", loop.send(n)))
    torch.manual_seed(seed)
    loss, metrics = ac()
    ac.zero_grad()
    loss.backward()
    del m.rew.predict_rew_end  # back to the class method
    obs, act, rew, end, trunc, logits, val, val_bootstrap, _ = captured["out"]
    refills = handed[first + 1 : first + 1 + len(forced)]
    assert [len(x[1]) for x in refills] == [len(v) for v in forced.values()]
    out = {"seed": torch.tensor(seed), "horizon": torch.tensor(horizon),
           "start_obs": to_uint8(handed[first][0]), "start_act": handed[first][1],
           "start_re_h": handed[first][2][0][0], "start_re_c": handed[first][2][1][0],
           "refill_obs": to_uint8(torch.cat([x[0] for x in refills])), "refill_act": torch.cat([x[1] for x in refills]),
           "refill_re_h": torch.cat([x[2][0][0] for x in refills]), "refill_re_c": torch.cat([x[2][1][0] for x in refills]),
           "obs": to_uint8(obs), "act": act, "rew": rew, "end": end, "trunc": trunc, "logits": logits.detach(),
           "values": val.detach(), "val_bootstrap": val_bootstrap,
           "rew_logits": torch.stack([x[0] for x in step_logits[logged : logged + horizon]], 1),
           "end_logits": torch.stack([x[1] for x in step_logits[logged : logged + horizon]], 1),
           "loss": loss.detach(), **{k_: metrics[k_] for k_ in ("loss_actions", "loss_values", "loss_entropy")}}
    out.update({f"grad.{k_}": p.grad.clone() for k_, p in ac.named_parameters()})
    ac.env_loop, ac.loss_cfg = None, None
    ac.zero_grad()
    return out


def released_config(root: Path) -> Any:
    """The released trainer.yaml with its agent/env groups (config/agent/default.yaml, config/env/atari.yaml),
    resolved as its main.py does (an `eval` resolver)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("eval"):
        OmegaConf.register_new_resolver("eval", eval)
    cfg = OmegaConf.load(root / "config" / "trainer.yaml")
    cfg.agent = OmegaConf.load(root / "config" / "agent" / "default.yaml")
    cfg.env = OmegaConf.load(root / "config" / "env" / "atari.yaml")
    OmegaConf.resolve(cfg)
    return cfg


def schedule_fixture(root: Path, reward_events_from: int = 5_000, steps_per_event: int = 50) -> dict:
    """The released Trainer.run / collect_initial_dataset / train_agent / collect_test (its own methods, on a
    stand-in `self` whose collectors, dataset and learners only count) over a whole paper-config run, and the
    batches its __init__ builds for each learner (seq_length, can_sample_beyond_end, batch size: the same
    arithmetic on its resolved config). The stand-in dataset sees one non-zero reward per `steps_per_event`
    steps after `reward_events_from`, so the initial collection is extended (5,000 -> 5,500 steps)."""
    import trainer as released_trainer

    cfg = released_config(root)
    log = {"collect": [], "train": [], "test": []}
    epoch = lambda: fake.epoch  # noqa: E731

    class Data:
        name, num_steps, num_episodes = "test_dataset", 0, 0

        @property
        def counts_rew(self) -> list[int]:
            events = max(0, self.num_steps - reward_events_from) // steps_per_event
            return [events, self.num_steps - events]

        counter_rew = property(lambda self: dict(enumerate(self.counts_rew)))
        state_dict, load_state_dict, clear = (lambda self, *a: None,) * 3

    def train_collect(n):
        fake.train_dataset.num_steps += n.steps
        log["collect"].append((epoch(), n.steps))
        return []

    def test_collect(n):
        log["test"].append((epoch(), n.episodes))
        return [{"test_dataset/episode_id": i, "return": 0.0, "length": 1} for i in range(n.episodes)]

    def train_component(name, steps):
        log["train"].append((epoch(), fake._model_names.index(name), steps))
        return []

    fake = SimpleNamespace(_cfg=cfg, _rank=0, _is_model_free=False, _is_static_dataset=False, epoch=0,
                           num_epochs_collect=None, num_episodes_test=0, train_dataset=Data(), test_dataset=Data(),
                           _train_collector=SimpleNamespace(send=train_collect),
                           _test_collector=SimpleNamespace(send=test_collect),
                           agent=SimpleNamespace(train=lambda: None, zero_grad=lambda: None, eval=lambda: None),
                           _model_names=["denoiser", "rew_end_model", "actor_critic"],
                           train_component=train_component, test_agent=lambda: [], save_checkpoint=lambda: None)
    for name in ("collect_initial_dataset", "train_agent", "collect_test"):
        setattr(fake, name, getattr(released_trainer.Trainer, name).__get__(fake))
    released_trainer.wandb_log = lambda *a, **k: None
    released_trainer.Trainer.run(fake)
    initial = [n for e, n in log["collect"] if e == 0]
    epochs = fake.epoch
    collect = torch.zeros(epochs + 1, dtype=torch.long)
    train = torch.zeros(epochs + 1, 3, dtype=torch.long)
    test = torch.zeros(epochs + 1, dtype=torch.long)  # index 0: before epoch 1; index epochs: incl. final
    for e, n in log["collect"]:
        collect[e] += n
    for e, i, n in log["train"]:
        train[e, i] += n
    for e, n in log["test"]:
        test[e] += n
    seq = cfg.agent.denoiser.inner_model.num_steps_conditioning
    c = {k: getattr(cfg, k).training for k in ("denoiser", "rew_end_model", "actor_critic")}
    return {"initial_collect": torch.tensor(initial), "collect_steps": collect, "train_steps": train,
            "test_episodes": test, "num_epochs_collect": torch.tensor(fake.num_epochs_collect),
            # per learner (denoiser, rew_end_model, actor_critic): frames per segment, padding after the end
            "seq_length": torch.tensor([seq + 1 + c["denoiser"].num_autoregressive_steps, c["rew_end_model"].seq_length,
                                        seq]),
            "can_sample_beyond_end": torch.tensor([False, True, False]),
            "batch_size": torch.tensor([c[k].batch_size for k in c]),
            "warmup_steps": torch.tensor([c[k].lr_warmup_steps for k in c]),
            "horizon": torch.tensor(cfg.world_model_env.horizon),
            "backup_every": torch.tensor(cfg.actor_critic.actor_critic_loss.backup_every),
            "train_epsilon": torch.tensor(cfg.collection.train.epsilon),
            "test_epsilon": torch.tensor(cfg.collection.test.epsilon),
            "num_batches_to_preload": torch.tensor(cfg.world_model_env.num_batches_to_preload)}


def segment_fixture(r: SimpleNamespace) -> dict:
    """Released make_segment on a 6-transition episode for every window start of a 4-frame segment. Frames
    are 1x1 pixels named by index + 1 (0 = padding)."""
    T, S = 6, 4
    obs = torch.arange(1, T + 1, dtype=torch.float32)[:, None, None, None].expand(T, 3, 1, 1).clone()
    act, rew = torch.arange(10, 10 + T), torch.arange(20, 20 + T, dtype=torch.float32)
    end = torch.zeros(T, dtype=torch.uint8)
    end[-1] = 1
    ep = r.Episode(obs=obs, act=act, rew=rew, end=end, trunc=torch.zeros(T, dtype=torch.uint8),
                   info={"final_observation": torch.full((3, 1, 1), float(T + 1))})
    starts = list(range(-S + 1, T))
    segs = [r.make_segment(ep, r.SegmentId(0, s, s + S), should_pad=True) for s in starts]
    return {"starts": torch.tensor(starts), "obs": torch.stack([s.obs[:, 0, 0, 0] for s in segs]),
            "act": torch.stack([s.act for s in segs]), "rew": torch.stack([s.rew for s in segs]),
            "end": torch.stack([s.end for s in segs]), "mask": torch.stack([s.mask_padding for s in segs])}


def paper_shapes(r: SimpleNamespace) -> dict:
    """Parameter shapes of the released paper-size networks (Atari, 18 actions), keyed like its checkpoints."""
    den = r.Denoiser(r.DenoiserConfig(r.InnerModelConfig(img_channels=3, num_steps_conditioning=4, cond_channels=256,
                                                         depths=[2] * 4, channels=[64] * 4, attn_depths=[0] * 4,
                                                         num_actions=18), sigma_data=0.5, sigma_offset_noise=0.3))
    rew = r.RewEndModel(r.RewEndModelConfig(lstm_dim=512, img_channels=3, img_size=64, cond_channels=128,
                                            depths=[2] * 4, channels=[32] * 4, attn_depths=[0] * 4, num_actions=18))
    ac = r.ActorCritic(r.ActorCriticConfig(lstm_dim=512, img_channels=3, img_size=64, channels=[32, 32, 64, 64],
                                           down=[1] * 4, num_actions=18))
    return {f"{p}.{k}": list(v.shape) for p, mod in (("denoiser", den), ("rew_end_model", rew), ("actor_critic", ac))
            for k, v in mod.state_dict().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout of eloialonso/diamond (branch main)")
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/official"))
    parser.add_argument("--only", nargs="+", choices=FIXTURES, help="write only these files (default: all)")
    args = parser.parse_args()
    r = import_released(args.official)
    torch.set_num_threads(1)
    m = tiny(r)
    parts = (("denoiser", m.den), ("rew_end_model", m.rew), ("actor_critic", m.ac))
    weights_file = args.out / "weights.pt"
    if weights_file.exists():  # keep the committed weights: float results of a fresh init differ across CPUs (~1e-7)
        saved = torch.load(weights_file, weights_only=True)
        for p, mod in parts:
            mod.load_state_dict({k[len(p) + 1:]: v for k, v in saved.items() if k.startswith(p + ".")})
    args.out.mkdir(parents=True, exist_ok=True)
    make = {"weights": lambda: {f"{p}.{k}": v.clone() for p, mod in parts for k, v in mod.state_dict().items()},
            "denoiser": lambda: denoiser_fixture(r, m), "reward_end": lambda: reward_end_fixture(r, m),
            "actor_critic": lambda: actor_critic_fixture(r, m), "imagination": lambda: imagination_fixture(r, m),
            "segments": lambda: segment_fixture(r), "ac_loss": lambda: loss_fixture(r, m),
            "loop": lambda: loop_fixture(r, m), "schedule": lambda: schedule_fixture(args.official)}
    for name in args.only or FIXTURES:
        with contextlib.redirect_stdout(io.StringIO()):  # the released trainer prints every episode
            data = make[name]()
        torch.save({k: v.detach().contiguous() for k, v in data.items()}, args.out / f"{name}.pt")
    if not args.only:
        (args.out / "paper_shapes.json").write_text(json.dumps(paper_shapes(r), indent=0) + "\n")
    total = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"wrote {len(args.only or FIXTURES)} files to {args.out} ({total / 1e6:.2f} MB in the folder)")


if __name__ == "__main__":
    main()
