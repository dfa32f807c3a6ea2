"""The loop around the networks against the authors' released code (eloialonso/diamond, branch main).

tests/fixtures/official/loop.pt: the released actor-critic update (its make_env_loop in its WorldModelEnv) with
the tiny actor-critic and R_ψ of weights.pt acting for real: actions, rewards and ends sampled from their logits
(global RNG reseeded at the start of the update), a deterministic stand-in for the sampler (its three-step
Euler step is held to the released one in test_official_equivalence.py), forced terminations so that one env,
then two, restart from new real contexts mid-window. Our `imagine` runs the same update with our modules, our
burn-ins and our refill, and must draw the same samples and give the same logits, values, losses and gradients.

tests/fixtures/official/schedule.pt: the released Trainer's own run / collect_initial_dataset / train_agent
methods over a whole paper-config run (a stand-in `self` that counts), and the batches its __init__ gives each
learner. Our Trainer's own methods run the same schedule with its collection and learners replaced by counters.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from diamond.loop.agent import actor_critic_loss
from diamond.loop.config import build_config
from diamond.loop.data import Episode, ReplayBuffer
from diamond.loop.trainer import Trainer
from diamond.models.official import convert_actor_critic
from diamond.models.world_model import burn_in, imagine
from tests.test_official_equivalence import A, L, close, load, stand_in_next, tiny_agent, to_uint8


def frames_of(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(127.5).sub(1)


class ForcedEnds(torch.nn.Module):
    """Our R_ψ, recording its logits at every imagination step and forcing the sampled end to the fixture's
    (the released run forced its ends after sampling them; replacing the logits by ±1e9 makes our sample
    come out the same while drawing the same random numbers)."""

    def __init__(self, net: torch.nn.Module, ends: torch.Tensor) -> None:
        super().__init__()
        self.net, self.ends, self.logits = net, ends.bool(), []

    def forward(self, obs, act, next_obs, state=None):
        rl, el, state = self.net(obs, act, next_obs, state)
        if act.shape[1] == 1:  # an imagination step (burn-ins score L - 1 transitions at once)
            self.logits.append((rl[:, 0].detach().clone(), el[:, 0].detach().clone()))
            dead = self.ends[:, len(self.logits) - 1]
            el = torch.where(dead[:, None, None], torch.tensor([-1e9, 0.0]), torch.tensor([0.0, -1e9]))
        return rl, el, state


def run_released_update(fix: dict[str, torch.Tensor], reward_end: torch.nn.Module | None = None):
    """Our imagination of the recorded update: same weights, same start contexts, the released refills in the
    order its env handed them out, the same seed. Returns (agent, trajectory, R_ψ wrapper)."""
    torch.set_num_threads(1)
    agent = tiny_agent()
    agent.world_model.predict_next = lambda obs, act, *args, **kwargs: stand_in_next(obs, act)
    wrapped = ForcedEnds(agent.reward_end if reward_end is None else reward_end, fix["end"])
    refills, used = (frames_of(fix["refill_obs"]), fix["refill_act"]), [0]

    def refill(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        i, used[0] = used[0], used[0] + n
        return refills[0][i : i + n], refills[1][i : i + n]

    ac = agent.actor_critic.train()
    ac.zero_grad()
    torch.manual_seed(int(fix["seed"]))
    traj = imagine(ac, agent.world_model, wrapped, frames_of(fix["start_obs"]), fix["start_act"],
                   int(fix["horizon"]), refill=refill)
    assert used[0] == len(fix["refill_act"]), "every released refill was used, in order"
    return agent, traj, wrapped


@pytest.fixture(scope="module")
def released() -> dict[str, torch.Tensor]:
    return load("loop")


def test_reward_model_burn_in_gives_the_released_preloaded_states(released) -> None:
    """The released env burns R_ψ in when it preloads contexts; ours when an imagined env (re)starts."""
    agent = tiny_agent()
    for which in ("start", "refill"):
        _, (h, c) = burn_in(agent.actor_critic, agent.reward_end, frames_of(released[f"{which}_obs"]),
                            released[f"{which}_act"])
        close(h, released[f"{which}_re_h"]), close(c, released[f"{which}_re_c"])


def test_imagination_with_real_actor_and_reward_model_matches_the_released_update(released) -> None:
    """Same samples (actions, rewards, ends), same policy inputs, and the same actor and R_ψ logits at every step,
    including the steps after one env and then two envs restarted from new contexts mid-window."""
    H = int(released["horizon"])
    assert released["end"][:, : H - 1].sum() >= 2 and (released["end"].sum(0) == 2).any()  # refills of 1 and 2 envs
    _, traj, wrapped = run_released_update(released)
    assert torch.equal(to_uint8(traj.obs[:, :H]), released["obs"]), "policy inputs differ"
    assert torch.equal(traj.actions, released["act"]), "sampled actions differ"
    assert torch.equal(traj.rewards, released["rew"]), "sampled rewards differ"
    assert torch.equal(traj.ends, released["end"].float())
    close(torch.stack([x[0] for x in wrapped.logits], 1), released["rew_logits"])
    close(torch.stack([x[1] for x in wrapped.logits], 1), released["end_logits"])
    close(traj.logits.detach(), released["logits"]), close(traj.values[:, :H].detach(), released["values"])
    # V at the horizon: the released loop bootstraps on it for every env (truncated or not, none ended there)
    assert not released["end"][:, -1].any()
    close(traj.values[:, H].detach(), released["val_bootstrap"][:, -1])


def test_actor_critic_loss_and_gradients_through_imagine_match_the_released_update(released) -> None:
    """The whole update through our own `imagine`: losses, and the gradient of every actor-critic parameter
    (the actor burn-in after a mid-window refill runs with gradient, as released)."""
    agent, traj, _ = run_released_update(released)
    lp, lv, entropy = actor_critic_loss(traj, 0.985, 0.95, 0.001)
    close(-0.001 * entropy, released["loss_entropy"]), close(lp + 0.001 * entropy, released["loss_actions"])
    close(lv, released["loss_values"]), close(lp + lv, released["loss"])
    (lp + lv).backward()
    grads = convert_actor_critic({k[len("grad."):]: v for k, v in released.items() if k.startswith("grad.")})
    for name, p in agent.actor_critic.named_parameters():
        close(p.grad, grads[name], rtol=1e-4, atol=1e-7)  # sums over batch x time: float32 ordering noise


# ------------------------------------------------------------------ what the trainer feeds each learner


def counting_trainer(tmp_path, reward_events_from: int = 5_000, steps_per_event: int = 50,
                     final_epochs: int | None = 50) -> tuple[Trainer, dict]:
    """Our Trainer (paper schedule, tiny networks) whose real-env collection, learners, evaluation and
    checkpoints only count; the stand-in env yields one non-zero reward per `steps_per_event` steps after
    `reward_events_from` steps, as the fixture's stand-in dataset did."""
    tiny = {"denoiser.channels": [8] * 4, "denoiser.depths": [1] * 4, "denoiser.cond_dim": 16,
            "denoiser.bottleneck_attention": False, "reward_end.channels": [8] * 4, "reward_end.depths": [1] * 4,
            "reward_end.cond_dim": 16, "reward_end.lstm_dim": 16, "reward_end.bottleneck_attention": False,
            "actor_critic.channels": [8] * 4, "actor_critic.lstm_dim": 16, "perf.device": "cpu",
            "training.final_epochs": final_epochs}
    cfg = build_config("paper", tiny)
    for name, off in (("diag_every", 0), ("tensorboard", False)):  # held-out diagnostics and curves: not counted
        if hasattr(cfg.training, name):
            setattr(cfg.training, name, off)
    tr = Trainer(cfg, tmp_path)
    log: dict = {"collect": [], "train": [], "eval": []}
    events = lambda n: max(0, n - reward_events_from) // steps_per_event  # noqa: E731
    tr.replay = SimpleNamespace(num_steps=0)

    def collect(steps: int, uniform: bool, desc: str) -> dict:
        before = tr.replay.num_steps
        tr.replay.num_steps += steps
        log["collect"].append((tr.epoch, steps, uniform))
        return {"collect/steps": steps, "collect/reward_events": events(tr.replay.num_steps) - events(before)}

    def train_phase(name: str, steps: int) -> dict:
        log["train"].append((tr.epoch, name, steps, tr.replay.num_steps))
        return {}

    tr.collect, tr.train_phase = collect, train_phase
    tr.evaluate = lambda episodes, **kw: log["eval"].append((tr.epoch, episodes)) or [0.0] * episodes
    tr.save_checkpoint = lambda: None
    tr.finish = lambda: {}
    return tr, log


def test_collection_and_update_schedule_against_the_released_trainer(tmp_path, monkeypatch) -> None:
    """Per epoch: env steps collected and updates of each learner, equal to the released trainer's (the `paper`
    profile's training.final_epochs: epoch 1 collects 100 policy steps before its first training, and the run lasts
    collection epochs + 50); with training.final_epochs=null, the two differences of docs/fidelity.md come back."""
    sched = load("schedule")
    tr, log = counting_trainer(tmp_path)
    monkeypatch.setattr("diamond.loop.trainer.append_jsonl", lambda path, record: None)  # 1,000 epochs: no file I/O
    tr.run()
    t = tr.cfg.training
    ours_initial = [(n, uniform) for e, n, uniform in log["collect"] if e == 0]
    assert [n for n, _ in ours_initial[:-1]] == sched["initial_collect"].tolist()  # 5,000, then 100-step chunks
    assert all(uniform for _, uniform in ours_initial[:-1]) and ours_initial[-1] == (100, False)  # epoch 1's policy
    released_first_train = int(sched["collect_steps"][:2].sum())
    assert [n_seen for e, _, _, n_seen in log["train"] if e == 0][0] == released_first_train
    names = ("denoiser", "reward_end", "actor_critic")
    ours = np.array([[n for e, name, n, _ in log["train"] if name == k] for k in names]).T  # [epochs, 3]
    released_train = sched["train_steps"][1:].numpy()
    assert ours.shape == released_train.shape and (ours == released_train).all()
    assert len(ours) == int(sched["num_epochs_collect"]) + 50 == 995 == tr.num_epochs
    # every epoch collects 100 policy steps at ε = 0.01 until 100,000 env steps, then 50 final epochs collect nothing
    policy = [(e, n) for e, n, uniform in log["collect"] if not uniform]
    assert [n for _, n in policy] == sched["collect_steps"][1:][sched["collect_steps"][1:] > 0].tolist()
    assert max(e for e, _ in policy) == len(ours) - 51
    assert tr.replay.num_steps == int(sched["collect_steps"].sum()) == t.total_env_steps
    assert t.epsilon == pytest.approx(float(sched["train_epsilon"])) and t.eval_epsilon == float(sched["test_epsilon"])
    # training.final_epochs=null: ours trains right after the initial collection and runs training.epochs epochs
    tr, log = counting_trainer(tmp_path / "plain", final_epochs=None)
    tr.run()
    assert [n_seen for e, _, _, n_seen in log["train"] if e == 0][0] == released_first_train - 100
    assert len([1 for _, name, _, _ in log["train"] if name == "denoiser"]) == tr.cfg.training.epochs == 1000


def test_segments_each_learner_gets_match_the_released_batch_samplers(tmp_path) -> None:
    """Through our Trainer.train_phase and its replay sampling: frames per segment, batch size, padding after an
    episode's end only for R_ψ (the released can_sample_beyond_end), imagination horizon and refill contexts."""
    sched = load("schedule")
    tr, _ = counting_trainer(tmp_path)
    del tr.train_phase  # the real one, fed by the real replay sampling
    cfg, tr.replay = tr.cfg, ReplayBuffer()
    rng = np.random.default_rng(0)
    for length in (12, 30):  # short episodes: every R_ψ segment of 19 frames holds padding
        tr.replay.add_episode(Episode.from_arrays(
            rng.integers(0, 256, (length + 1, 3, 64, 64), dtype=np.uint8), rng.integers(0, A, length),
            np.zeros(length, np.float32), np.arange(length) == length - 1, np.zeros(length, bool)))
    fed: dict = {}
    tr.learner = SimpleNamespace(
        update_denoiser=lambda obs, act, mask: fed.setdefault("denoiser", (obs.shape, mask)) and {},
        update_reward_end=lambda obs, act, rew, end, mask: fed.setdefault("reward_end", (obs.shape, mask)) and {},
        update_actor_critic=lambda obs, act, refill: fed.setdefault("actor_critic", (obs.shape, refill(3)[0].shape)) and {})
    for name in ("denoiser", "reward_end", "actor_critic"):
        fed.pop(name, None)
        masks = []
        for _ in range(4 if name == "reward_end" else 2):
            tr.train_phase(name, 1)
            masks.append(fed.pop(name))
        shape = masks[0][0]
        i = ("denoiser", "reward_end", "actor_critic").index(name)
        assert shape[:2] == (int(sched["batch_size"][i]), int(sched["seq_length"][i])), name
        if name != "actor_critic":
            beyond_end = any(bool((~m[1][:, -1]).any()) for m in masks)  # a padded last position
            assert beyond_end == bool(sched["can_sample_beyond_end"][i]), name
        else:
            assert masks[0][1][:2] == (3, int(sched["seq_length"][i]))  # refill contexts: L frames each
    assert cfg.training.imagination_horizon == int(sched["horizon"]) == int(sched["backup_every"])
    assert cfg.training.burn_in == L == int(sched["seq_length"][2])


def test_first_frame_switch_gives_the_released_unpooled_first_frame() -> None:
    """Released: a game's first observation is its last raw frame alone; ours pools the last two (no-op) frames
    like every later frame, unless pool_first_frame=False. Later frames are pooled in both."""
    import cv2

    from diamond.loop.envs import make_env

    differs = False
    for seed in range(3):
        released_like = make_env("MsPacman", train=True, seed=seed, pool_first_frame=False)
        ours = make_env("MsPacman", train=True, seed=seed)
        first, _ = released_like.reset()
        raw = released_like.unwrapped.ale.getScreenRGB()
        assert np.array_equal(first, cv2.resize(raw, (64, 64), interpolation=cv2.INTER_AREA).transpose(2, 0, 1))
        pooled, _ = ours.reset()
        differs |= not np.array_equal(first, pooled)
        assert np.array_equal(released_like.step(0)[0], ours.step(0)[0])  # same emulator, pooled from then on
        released_like.close(), ours.close()
    assert differs  # MsPacman flickers: the pooled first frame is not the last raw frame
