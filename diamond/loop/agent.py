"""The three learners of Algorithm 1 (D_θ, R_ψ, (π, V)_ϕ), their optimisers and one update step each."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diamond.loop.config import Config, OptimConfig
from diamond.loop.controls import shuffle_rewards
from diamond.loop.perf import imagination_step
from diamond.loop.rl import lambda_returns, policy_loss, value_loss
from diamond.models.registry import build_world_model
from diamond.models.world_model import Imagined, Refill, WorldModel, imagine, open_loop


class Agent(nn.Module):
    """Everything a run learns, in one module so that one state_dict checkpoints it."""

    def __init__(self, world_model: WorldModel, reward_end: nn.Module, actor_critic: nn.Module) -> None:
        super().__init__()
        self.world_model, self.reward_end, self.actor_critic = world_model, reward_end, actor_critic


def build_reward_end(cfg: Config, num_actions: int) -> nn.Module:
    """R_ψ as cfg.reward_end describes it (the agent's, and the decision metrics' judge)."""
    from diamond.models.nets.reward_end import RewardEndNet

    re = cfg.reward_end
    return RewardEndNet(num_actions, channels=tuple(re.channels), depths=tuple(re.depths), cond_dim=re.cond_dim,
                        lstm_dim=re.lstm_dim, bottleneck_attention=re.bottleneck_attention, img_size=cfg.env.size,
                        attention_residual=re.attention_residual, frame_difference=re.frame_difference,
                        prior_offset=re.prior_offset)


def build_agent(cfg: Config, num_actions: int) -> Agent:
    """The three learners; the world model is whichever world_model.factory names (diamond/models/registry.py)."""
    from diamond.models.nets.actor_critic import ActorCriticNet

    ac = cfg.actor_critic
    return Agent(
        build_world_model(cfg, num_actions),
        build_reward_end(cfg, num_actions),
        ActorCriticNet(num_actions, channels=tuple(ac.channels), depths=tuple(ac.depths), lstm_dim=ac.lstm_dim,
                       img_size=cfg.env.size),
    )


def make_optimizer(module: nn.Module, ocfg: OptimConfig, fused: bool = False) -> torch.optim.AdamW:
    """AdamW with weight decay only on weights of linear/conv/LSTM layers (released code), not on norms/biases."""
    decay, no_decay = [], []
    for mod in module.modules():
        for name, p in mod.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_weight = isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.LSTM, nn.LSTMCell)) and "weight" in name
            (decay if is_weight else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": ocfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kwargs: dict[str, Any] = {"fused": True} if fused else {}
    return torch.optim.AdamW(groups, lr=ocfg.lr, eps=ocfg.eps, **kwargs)


def warmup_schedule(opt: torch.optim.Optimizer, warmup_steps: int, from_zero: bool = False
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the base learning rate, then constant (no decay, as released). The factor of update
    `step` (0-based) is (step + 1) / warmup_steps; `from_zero` gives the released step / warmup_steps, whose
    first update runs at lr 0 (a step that changes nothing but Adam's moment estimates)."""
    offset = 0 if from_zero else 1
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + offset) / max(1, warmup_steps)))


def policy_probs(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """π(a | s) ∝ exp(logit_a / T), the distribution real-env collection samples from. T = 1 is the policy
    itself; Freeway's T = 0.01 (IRIS App. H, training.collect_temperature) makes it nearly greedy."""
    return torch.softmax(logits.float() / temperature, dim=-1)


def reward_end_loss(model: nn.Module, obs: Tensor, act: Tensor, rew: Tensor, end: Tensor, mask: Tensor
                    ) -> tuple[Tensor, Tensor]:
    """Cross-entropy on sign(r) (3 classes) and on the end flag over a segment's transitions whose two frames
    are real (a terminal transition's next frame is the stored final frame). Returns (reward CE, end CE)."""
    valid = mask[:, :-1] & mask[:, 1:]
    rew_logits, end_logits, _ = model(obs[:, :-1], act[:, :-1], obs[:, 1:])
    rew_target = (torch.sign(rew[:, :-1]) + 1).long()[valid]
    end_target = end[:, :-1].long()[valid]
    return (F.cross_entropy(rew_logits.float()[valid], rew_target),
            F.cross_entropy(end_logits.float()[valid], end_target))


@torch.no_grad()
def imagined_segments(world_model: WorldModel, obs: Tensor, act: Tensor, mask: Tensor, rows: int) -> Tensor:
    """obs with the frames after the first L of its first `rows` segments (those whose L first frames are real)
    replaced by the world model's open-loop imagination under the segment's real actions (act[:, i] taken at
    obs[:, i]), as imagination would draw them; padded frames stay zero. A model with memory is run on its window
    alone."""
    L, out = world_model.num_history, obs.clone()
    chosen = torch.zeros_like(mask[:, 0])
    chosen[:rows] = True
    chosen &= mask[:, :L].all(dim=1)
    if not chosen.any():
        return out
    frames = open_loop(lambda o, a, t: world_model.predict_next(o, a), obs[chosen], act[chosen], L)
    out[chosen, L:] = torch.stack(list(frames), dim=1).to(out.dtype)
    return out * mask[:, :, None, None, None]


def actor_critic_loss(traj: Imagined, gamma: float, lambda_: float, entropy_weight: float
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. 14–16 on one imagined batch: (policy loss, value loss, mean entropy)."""
    values = traj.values.float()
    returns = lambda_returns(traj.rewards, traj.ends, values.detach(), gamma, lambda_)
    lv = value_loss(values, returns, traj.valid)
    lp, entropy = policy_loss(traj.logits.float(), traj.actions, returns, values, traj.valid, entropy_weight)
    return lp, lv, entropy


class Learner:
    """Owns the optimisers and performs one gradient step of each learner on a batch."""

    def __init__(self, agent: Agent, cfg: Config) -> None:
        self.agent, self.cfg = agent, cfg
        fused = cfg.perf.fused_adamw
        parts = {
            "denoiser": (agent.world_model, cfg.denoiser_optim),
            "reward_end": (agent.reward_end, cfg.reward_end_optim),
            "actor_critic": (agent.actor_critic, cfg.actor_critic_optim),
        }
        self.optimizers = {k: make_optimizer(m, o, fused) for k, (m, o) in parts.items()}
        self.schedulers = {k: warmup_schedule(self.optimizers[k], o.warmup_steps, o.warmup_from_zero)
                           for k, (_, o) in parts.items()}
        self.clip = {k: o.max_grad_norm for k, (_, o) in parts.items()}
        self.modules = {k: m for k, (m, _) in parts.items()}
        self.steps = {k: 0 for k in parts}
        self.autocast = cfg.perf.bf16
        self.imagine_step = imagination_step(agent, cfg.perf)  # None: plain path; perf.cuda_graphs: captured

    def _step(self, name: str, loss: Tensor) -> float:
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.modules[name].parameters(), self.clip[name])
        opt.step()
        self.schedulers[name].step()
        self.steps[name] += 1
        return float(grad_norm)

    def _amp(self, device: torch.device) -> Any:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.autocast)

    def update_denoiser(self, obs: Tensor, act: Tensor, mask: Tensor) -> dict[str, float]:
        """Eq. 5/7 on one batch of L + chain frames."""
        self.agent.world_model.train()
        with self._amp(obs.device):
            loss = self.agent.world_model.loss(obs, act, mask)
        return {"denoiser/loss": loss.item(), "denoiser/grad_norm": self._step("denoiser", loss)}

    def update_reward_end(self, obs: Tensor, act: Tensor, rew: Tensor, end: Tensor, mask: Tensor) -> dict[str, float]:
        """Cross-entropy on sign(r) (3 classes) and the end flag, over transitions whose two frames are real; with
        training.reward_end_imagined, part of the batch shows imagined frames after its first L (the real labels)."""
        rows = round(self.cfg.training.reward_end_imagined * obs.shape[0])
        if rows:
            self.agent.world_model.eval()
            with self._amp(obs.device):
                obs = imagined_segments(self.agent.world_model, obs, act, mask, rows)
        self.agent.reward_end.train()
        with self._amp(obs.device):
            ce_rew, ce_end = reward_end_loss(self.agent.reward_end, obs, act, rew, end, mask)
        loss = ce_rew + ce_end
        return {"reward_end/loss_reward": ce_rew.item(), "reward_end/loss_end": ce_end.item(),
                "reward_end/grad_norm": self._step("reward_end", loss)}

    def update_actor_critic(self, obs: Tensor, act: Tensor, refill: Refill | None = None) -> dict[str, float]:
        """Imagine H steps from L real frames, then Eq. 14–16. With training.imagination_refill, `refill(n)`
        supplies n new real contexts for imagined envs that terminate (as the released code does)."""
        t = self.cfg.training
        self.agent.actor_critic.train()
        self.agent.world_model.eval()
        self.agent.reward_end.eval()
        with self._amp(obs.device):
            traj = imagine(self.agent.actor_critic, self.agent.world_model, self.agent.reward_end, obs, act,
                           t.imagination_horizon, step=self.imagine_step,
                           refill=refill if t.imagination_refill else None)
        if t.shuffle_imagined_rewards:  # the reward-blind control (diamond/loop/controls.py)
            traj = dataclasses.replace(traj, rewards=shuffle_rewards(traj.rewards, traj.valid))
        values = traj.values.float()
        lp, lv, entropy = actor_critic_loss(traj, t.gamma, t.lambda_, t.entropy_weight)
        grad_norm = self._step("actor_critic", lp + lv)
        return {"actor_critic/loss_policy": lp.item(), "actor_critic/loss_value": lv.item(),
                "actor_critic/entropy": entropy.item(), "actor_critic/grad_norm": grad_norm,
                "imagination/reward_mean": traj.rewards.mean().item(), "imagination/end_rate": traj.ends.mean().item(),
                "imagination/value_mean": values.mean().item()}

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
                "steps": dict(self.steps)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
            self.schedulers[k].load_state_dict(state["schedulers"][k])
        self.steps = dict(state["steps"])
