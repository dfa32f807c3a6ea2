"""The loop's settings pinned where a one-line slip would change results and pass every other test (issue 27
item 5): what the learner hands the actor-critic loss, the collection and evaluation policies, the padding value,
life-loss episodes, and the update counts the cpu profile claims. Values of the released code:
eloialonso/diamond config/trainer.yaml (gamma 0.985, lambda 0.95, horizon 15, weight_value_loss 1, entropy 0.001,
max_grad_norm 1 / 100 / 100, train epsilon 0.01, test epsilon 0), src/coroutines/env_loop.py (Categorical(logits)
at temperature 1; hx, cx zeroed where an episode ends), src/data/utils.py (segments padded with 0 in [-1, 1])."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import diamond.loop.agent as agent_mod
from diamond.loop.config import build_config
from diamond.loop.toy_env import make_cue_env
from diamond.loop.trainer import Trainer, set_matmul_precision

SIZE = 16
SMALL = {"env.size": SIZE, "env.eval_max_episode_frames": 400, "training.eval_num_envs": 2,
         "training.tensorboard": False}


def trainer(tmp_path: Path, **extra: Any) -> Trainer:
    return Trainer(build_config("smoke", {**SMALL, **extra}, seed=0), tmp_path, env_factory=make_cue_env)


def test_paper_profile_hands_the_released_numbers_to_each_learner() -> None:
    cfg = build_config("paper")
    learner_clip = {"denoiser": cfg.denoiser_optim.max_grad_norm, "reward_end": cfg.reward_end_optim.max_grad_norm,
                    "actor_critic": cfg.actor_critic_optim.max_grad_norm}
    assert learner_clip == {"denoiser": 1.0, "reward_end": 100.0, "actor_critic": 100.0}
    t = cfg.training
    assert (t.gamma, t.lambda_, t.imagination_horizon, t.entropy_weight, t.epsilon, t.eval_epsilon) == (
        0.985, 0.95, 15, 0.001, 0.01, 0.0)


def test_the_learner_passes_gamma_lambda_entropy_horizon_and_clips(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Distinct values in the config reach Eq. 14-16 and the imagination, the loss is policy + value (weight 1),
    and each component is clipped at its own max_grad_norm."""
    seen: dict[str, Any] = {}
    real_loss, real_clip = agent_mod.actor_critic_loss, torch.nn.utils.clip_grad_norm_

    def loss(traj: Any, gamma: float, lambda_: float, entropy_weight: float) -> Any:
        seen.update(gamma=gamma, lambda_=lambda_, entropy=entropy_weight, horizon=traj.rewards.shape[1])
        out = real_loss(traj, gamma, lambda_, entropy_weight)
        seen["sum"] = float((out[0] + out[1]).detach())
        return out

    def clip(params: Any, max_norm: float, *args: Any, **kwargs: Any) -> Any:
        seen.setdefault("clips", []).append(max_norm)
        return real_clip(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(agent_mod, "actor_critic_loss", loss)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    cfg = build_config("smoke", {**SMALL, "training.gamma": 0.9, "training.lambda_": 0.7,
                                 "training.entropy_weight": 0.03, "training.imagination_horizon": 4,
                                 "denoiser_optim.max_grad_norm": 2.0, "reward_end_optim.max_grad_norm": 30.0,
                                 "actor_critic_optim.max_grad_norm": 70.0}, seed=0)
    learner = agent_mod.Learner(agent_mod.build_agent(cfg, 3), cfg)
    obs, act = torch.rand(2, 6, 3, SIZE, SIZE) * 2 - 1, torch.zeros(2, 6, dtype=torch.long)
    mask = torch.ones(2, 6, dtype=torch.bool)
    learner.update_denoiser(obs, act, mask)
    learner.update_reward_end(obs, act, torch.zeros(2, 6), torch.zeros(2, 6, dtype=torch.bool), mask)
    captured: list[float] = []
    real_step = learner._step
    monkeypatch.setattr(learner, "_step", lambda name, l: captured.append(float(l)) or real_step(name, l))
    logs = learner.update_actor_critic(obs[:, :4], act[:, :4])
    assert (seen["gamma"], seen["lambda_"], seen["entropy"], seen["horizon"]) == (0.9, 0.7, 0.03, 4)
    assert captured == [pytest.approx(seen["sum"])]
    assert captured[0] == pytest.approx(logs["actor_critic/loss_policy"] + logs["actor_critic/loss_value"])
    assert seen["clips"] == [2.0, 30.0, 70.0]


def test_collection_explores_at_epsilon_and_forgets_at_each_new_episode(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Real collection draws at training.epsilon, and the policy's LSTM starts from zeros (state None) on the first
    step of every episode (a life, in the training env) and carries its state within one."""
    run = trainer(tmp_path, **{"training.epsilon": 0.37})
    epsilons: list[float] = []
    real_action = run._policy_action
    monkeypatch.setattr(run, "_policy_action", lambda obs, eps: epsilons.append(eps) or real_action(obs, eps))
    states: list[bool] = []
    forward = run.agent.actor_critic.forward
    monkeypatch.setattr(run.agent.actor_critic, "forward",
                        lambda x, state=None: states.append(state is None) or forward(x, state))
    run.collect(60, uniform=False, desc="test")
    assert set(epsilons) == {0.37}
    starts = [ep.num_steps for ep in run.replay.episodes]
    first = np.cumsum([0] + starts[:-1])  # the step index at which each episode began
    assert [i for i, fresh in enumerate(states) if fresh] == first.tolist()


def test_evaluation_samples_at_temperature_one_explores_at_eval_epsilon_and_forgets_between_episodes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test protocol samples π itself (not the collection temperature, not its argmax), at eval_epsilon, and
    each env's LSTM state is zero again at the first step of its next episode."""
    run = trainer(tmp_path, **{"training.collect_temperature": 0.01, "training.eval_epsilon": 0.0})
    target = torch.tensor([0.6, 0.3, 0.1])
    rows: list[torch.Tensor] = []

    def forward(x: torch.Tensor, state: Any = None) -> Any:
        h = torch.zeros(len(x), 4) if state is None else state[0] + 1.0  # counts steps since the last reset
        rows.append(h[:, 0].clone())
        return target.log().expand(len(x), 3), torch.zeros(len(x)), (h, h.clone())

    monkeypatch.setattr(run.agent.actor_critic, "forward", forward)
    policy = run.agent_policy()
    run.evaluate(1500, policy)
    assert policy.stats.frequencies == pytest.approx(target.tolist(), abs=0.03)
    steps = torch.stack(rows)  # [T, envs]: steps since that env's state was last zeroed (a zeroed state reads 1)
    reset = steps[1:] != steps[:-1] + 1
    assert (steps[1:][reset] == 1).all()  # a break in the count is a zeroed state, nothing else
    assert reset.sum().item() >= 1490  # every finished episode zeroed its env's row (the last ones end the loop)
    explore = trainer(tmp_path / "b", **{"training.eval_epsilon": 1.0})
    monkeypatch.setattr(explore.agent.actor_critic, "forward",
                        lambda x, state=None: (torch.tensor([0.0, -50.0, -50.0]).expand(len(x), 3),
                                               torch.zeros(len(x)), (torch.zeros(len(x), 4),) * 2))
    uniform = explore.agent_policy()
    explore.evaluate(200, uniform)
    assert min(uniform.stats.frequencies) > 0.25  # epsilon 1: uniform whatever π says


def test_padding_is_zero_in_the_networks_pixel_range(tmp_path: Path) -> None:
    """Every learner's segment is 0 in [-1, 1] where the mask says padding, and to_float of the frame elsewhere."""
    run = trainer(tmp_path)
    run.collect(80, uniform=True, desc="test")
    for seq_len, pad in ((6, "left"), (8, "both")):
        obs, seg = run._segments(seq_len, pad, batch=64)
        assert (~seg.mask).any()
        assert (obs[~seg.mask] == 0).all()
        real = seg.obs[seg.mask].float() / 127.5 - 1.0
        assert torch.allclose(obs[seg.mask], real)


def test_training_episodes_end_at_a_life_loss_and_test_episodes_do_not(tmp_path: Path) -> None:
    """The trainer makes its training env with train=True (life loss ends an episode, diamond/loop/envs.py) and every
    evaluation env with train=False (full games)."""
    made: list[bool] = []

    def factory(game: str, *, train: bool, **kwargs: Any) -> Any:
        made.append(train)
        return make_cue_env(game, train=train, **kwargs)

    run = Trainer(build_config("smoke", SMALL, seed=0), tmp_path, env_factory=factory)
    run.evaluate(2)
    assert made == [True, False, False]


def test_the_cpu_update_counts_the_profile_and_readme_claim() -> None:
    """590 denoiser / 98 reward-end / 194 actor-critic updates: what the cpu profile's schedule gives, and what its
    comment and the README say."""
    t = build_config("cpu").training
    counts = [t.first_epoch_denoiser_steps + (t.epochs - 1) * t.denoiser_steps,
              t.first_epoch_reward_end_steps + (t.epochs - 1) * t.reward_end_steps,
              t.first_epoch_actor_critic_steps + (t.epochs - 1) * t.actor_critic_steps]
    assert counts == [590, 98, 194]
    root = Path(__file__).resolve().parents[1]
    profile = (root / "diamond" / "loop" / "profiles.py").read_text()
    readme = re.sub(r"\s+", " ", (root / "README.md").read_text())
    assert "590 / 98 / 194 updates" in profile
    assert "590 denoiser / 98 reward-end / 194 actor-critic updates" in readme


@pytest.mark.parametrize("profile, pooled", [("paper", False), ("cpu", True)])
def test_the_first_frame_of_a_game_follows_the_profile(tmp_path: Path, profile: str, pooled: bool) -> None:
    """env.pool_first_frame reaches the training env and every evaluation env (docs/fidelity.md row 24): the
    released code's last raw frame alone in `paper`; the measured `cpu` and `smoke` runs keep the pooled one."""
    made: list[bool] = []

    def factory(game: str, *, train: bool, pool_first_frame: bool, **kwargs: Any) -> Any:
        made.append(pool_first_frame)
        return make_cue_env(game, train=train, **kwargs)

    assert build_config(profile).env.pool_first_frame is pooled
    cfg = build_config("smoke", {**SMALL, "env.pool_first_frame": pooled}, seed=0)
    Trainer(cfg, tmp_path, env_factory=factory).evaluate(2)
    assert made == [pooled] * 3


@pytest.mark.parametrize("tf32", [True, False])
def test_tf32_matmuls_follow_perf_tf32_on_cuda_only(tf32: bool) -> None:
    """perf.tf32 (released: on, docs/fidelity.md row 22) sets the process-wide flag for a CUDA run; a CPU run
    leaves it alone."""
    before = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = not tf32
        set_matmul_precision(build_config("paper", {"perf.tf32": tf32}), torch.device("cpu"))
        assert torch.backends.cuda.matmul.allow_tf32 is (not tf32)
        set_matmul_precision(build_config("paper", {"perf.tf32": tf32}), torch.device("cuda"))
        assert torch.backends.cuda.matmul.allow_tf32 is tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
