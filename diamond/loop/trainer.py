"""Algorithm 1 as a resumable run: collect → update D_θ → update R_ψ → update (π, V) in imagination,
checkpoint every epoch, evaluate at the end, write result.json last (atomically)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from diamond.loop.agent import Agent, Learner, build_agent, policy_probs
from diamond.loop.config import Config, TrainingConfig, config_hash, to_dict
from diamond.loop.controls import ActionStats, Policy, control_policies
from diamond.loop.data import ReplayBuffer, class_frequencies, sample_segments, to_float
from diamond.loop.diagnostics import TensorBoard, heldout_diagnostics
from diamond.loop.envs import EnvBatch, make_env
from diamond.loop.games import GAMES, human_normalized_score
from diamond.loop.perf import DeviceReplay, apply_module_switches
from diamond.run.checkpoint import load_checkpoint, restore_rng, rng_state, save_checkpoint
from diamond.run.errors import UsageError
from diamond.run.io import append_jsonl, atomic_write_json, atomic_write_yaml, read_json
from diamond.run.rundir import repair_metrics

# The screen-blind controls draw from a stream of their own, seeded by the run's seed alone: every run of a seed
# plays its uniform control with the same draws on the same games, whatever its training did.
CONTROL_STREAM = 1
EpochHook = Callable[[int, "Trainer"], None]
# make_env's signature: (game, *, train, seed, size, frameskip, noop_max, max_episode_frames, pool_first_frame)
EnvFactory = Callable[..., Any]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class AgentPolicy:
    """The agent at test time (released test collector): π sampled at temperature 1, a uniform action with
    probability `epsilon`, each env's LSTM state zeroed when its episode ends; it counts its actions, from which
    the controls are built."""

    def __init__(self, actor_critic: torch.nn.Module, num_actions: int, device: torch.device,
                 rng: np.random.Generator, epsilon: float) -> None:
        self.ac, self.device, self.rng, self.epsilon = actor_critic, device, rng, epsilon
        self.state: Any = None
        self.stats = ActionStats(num_actions)

    def act(self, obs: np.ndarray) -> np.ndarray:
        logits, _, self.state = self.ac(to_float(torch.from_numpy(obs).to(self.device)), self.state)
        probs = policy_probs(logits).cpu().numpy().astype(np.float64)
        actions = np.array([self.rng.choice(len(p), p=p / p.sum()) for p in probs])
        explore = self.rng.random(len(obs)) < self.epsilon
        actions[explore] = self.rng.integers(len(self.stats.counts), size=int(explore.sum()))
        self.stats.record(actions)
        return actions

    def end_episode(self, i: int) -> None:
        self.stats.end_episode(i)
        if self.state is not None:
            self.state = tuple(s.clone().index_fill_(0, torch.tensor([i], device=s.device), 0.0) for s in self.state)


class Trainer:
    """One run folder: config.yaml, metrics.jsonl, checkpoints/last.pt, replay/, result.json."""

    def __init__(self, cfg: Config, run_dir: str | Path, epoch_hook: EpochHook | None = None,
                 env_factory: EnvFactory | None = None) -> None:
        """`env_factory` replaces the Atari env (same signature as diamond.loop.envs.make_env), e.g. by a toy env in
        the learning tests; the loop itself is unchanged."""
        self.cfg, self.run_dir, self.epoch_hook = cfg, Path(run_dir), epoch_hook
        self.make_env: EnvFactory = make_env if env_factory is None else env_factory
        self.device = resolve_device(cfg.perf.device)
        self.ckpt_path = self.run_dir / "checkpoints" / "last.pt"
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.result_path = self.run_dir / "result.json"
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        set_matmul_precision(cfg, self.device)
        self.env = self.make_env(cfg.env.game, train=True, seed=cfg.seed, size=cfg.env.size, frameskip=cfg.env.frameskip,
                                 noop_max=cfg.env.noop_max, max_episode_frames=cfg.env.max_episode_frames,
                                 pool_first_frame=cfg.env.pool_first_frame)
        self.num_actions = int(self.env.action_space.n)
        self.agent: Agent = apply_module_switches(build_agent(cfg, self.num_actions).to(self.device), cfg.perf)
        self.learner = Learner(self.agent, cfg)
        self.replay = ReplayBuffer(self.run_dir / "replay")
        self._device_replay: DeviceReplay | None = None  # perf.replay_on_device: built lazily, after any resume
        self.epoch = 0  # completed epochs
        self.num_epochs: int | None = None  # the run length, once the initial collection has fixed it (run_epochs)
        self.wall_time = 0.0
        self._obs: np.ndarray | None = None  # current real observation; None = start a new episode
        self._ac_state: Any = None

    # ------------------------------------------------------------------ persistence
    def save_checkpoint(self) -> None:
        """Replay first (incremental episode files), then the checkpoint naming its size: resume truncates to it."""
        self.replay.save()
        state = {
            "epoch": self.epoch,
            "num_epochs": self.num_epochs,
            "agent": self.agent.state_dict(),
            "learner": self.learner.state_dict(),
            "replay_steps": self.replay.num_steps,
            "wall_time": self.wall_time,
            "rng": rng_state(self.rng),
        }
        save_checkpoint(self.ckpt_path, state, config_hash(self.cfg))

    def load_checkpoint(self) -> bool:
        state = load_checkpoint(self.ckpt_path, config_hash(self.cfg), self.device)
        if state is None:
            return False
        self.agent.load_state_dict(state["agent"])
        self.learner.load_state_dict(state["learner"])
        self.epoch, self.wall_time = int(state["epoch"]), float(state["wall_time"])
        self.num_epochs = state.get("num_epochs", run_epochs(self.cfg.training) if self.epoch else None)
        self.replay = ReplayBuffer.load(self.run_dir / "replay")
        self.replay.truncate(int(state["replay_steps"]))
        self.replay.close_open_episode()  # the emulator mid-episode is not checkpointed: a resumed run starts a fresh episode
        restore_rng(state["rng"], self.rng)
        return True

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def _policy_action(self, obs: np.ndarray, epsilon: float) -> int:
        x = to_float(torch.from_numpy(obs).to(self.device)[None])
        logits, _, self._ac_state = self.agent.actor_critic(x, self._ac_state)
        if self.rng.random() < epsilon:
            return int(self.rng.integers(self.num_actions))
        probs = policy_probs(logits[0], self.cfg.training.collect_temperature).cpu().numpy().astype(np.float64)
        return int(self.rng.choice(self.num_actions, p=probs / probs.sum()))

    def collect(self, steps: int, uniform: bool, desc: str) -> dict[str, float]:
        """Play `steps` real transitions into the replay (Alg. 1 collect_experience); episodes span epochs."""
        self.agent.actor_critic.eval()
        returns, rewards_seen, sign_sum, ends = [], 0, 0.0, 0
        for _ in tqdm(range(steps), desc=desc, leave=False, dynamic_ncols=True):
            if self._obs is None:
                self._obs, _ = self.env.reset()  # seeded once in make_env; after a life loss the game continues
                self._ac_state, self._ep_return = None, 0.0
                self.replay.start_episode(self._obs)
            if uniform:
                action = int(self.rng.integers(self.num_actions))
            else:
                action = self._policy_action(self._obs, self.cfg.training.epsilon)
            obs, rew, term, trunc, _ = self.env.step(action)
            self.replay.add_step(action, float(rew), bool(term), bool(trunc), obs)
            rewards_seen += int(rew != 0)
            sign_sum += float(np.sign(rew))
            ends += int(term)
            self._ep_return += float(rew)
            self._obs = obs
            if term or trunc:
                returns.append(self._ep_return)
                self._obs = None
        # the real counterparts of imagination/reward_mean and imagination/end_rate (sign-clipped, per step)
        out = {"collect/steps": steps, "collect/reward_events": rewards_seen,
               "collect/reward_rate": sign_sum / max(steps, 1), "collect/end_rate": ends / max(steps, 1)}
        if returns:
            out["collect/episode_return"] = float(np.mean(returns))
        return out

    def collect_heldout(self, steps: int) -> ReplayBuffer:
        """`steps` uniform-policy transitions of fresh games in a replay of their own, which no learner samples: held-out
        data for measuring a model; the run's replay is left as it was and its next step starts a new game."""
        train, self.replay, self._obs = self.replay, ReplayBuffer(), None
        self.collect(steps, uniform=True, desc="held-out collection")
        heldout, self.replay, self._obs = self.replay, train, None
        return heldout

    def initial_collection(self) -> dict[str, float]:
        """Uniform policy for initial_collect_steps, extended by 100-step chunks until enough reward events."""
        t = self.cfg.training
        info = self.collect(t.initial_collect_steps, uniform=True, desc="initial collection")
        events = info["collect/reward_events"]
        while events < t.initial_min_reward_events and self.replay.num_steps + 100 <= t.initial_collect_max_steps:
            events += self.collect(100, uniform=True, desc="extending collection")["collect/reward_events"]
        if self.cfg.reward_end.prior_offset:  # R_ψ starts at the base rate of what was collected
            self.agent.reward_end.set_prior(class_frequencies(self.replay))
        return {"collect/steps": self.replay.num_steps, "collect/reward_events": events}

    # ------------------------------------------------------------------ learning
    def _segments(self, seq_len: int, pad: str, batch: int | None = None) -> Any:
        t = self.cfg.training
        batch = t.batch_size if batch is None else batch
        if self.cfg.perf.replay_on_device:
            if self._device_replay is None or self._device_replay.buffer is not self.replay:
                self._device_replay = DeviceReplay(self.replay, self.device)
            seg = self._device_replay.sample(batch, seq_len, self.rng, pad=pad, recency_weights=t.recency_weights)
        else:
            seg = sample_segments(self.replay, batch, seq_len, self.rng, pad=pad,
                                  recency_weights=t.recency_weights).to_torch(self.device)
        obs = to_float(seg.obs) * seg.mask[:, :, None, None, None]
        return obs, seg

    def _new_contexts(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n fresh real contexts for imagined envs that terminated (the `refill` of world_model.imagine)."""
        obs, seg = self._segments(self.cfg.training.burn_in, "left", batch=n)
        return obs, seg.act

    def train_phase(self, name: str, steps: int) -> dict[str, float]:
        t = self.cfg.training
        logs: list[dict[str, float]] = []
        for _ in tqdm(range(steps), desc=f"epoch {self.epoch + 1} {name}", leave=False, dynamic_ncols=True):
            if name == "denoiser":
                obs, seg = self._segments(self.agent.world_model.segment_length, "left")  # the model says how long
                logs.append(self.learner.update_denoiser(obs, seg.act, seg.mask))
            elif name == "reward_end":
                obs, seg = self._segments(t.reward_end_seq_len + 1, "both")
                logs.append(self.learner.update_reward_end(obs, seg.act, seg.rew, seg.end, seg.mask))
            else:
                obs, seg = self._segments(t.burn_in, "left")
                logs.append(self.learner.update_actor_critic(obs, seg.act, refill=self._new_contexts))
        return {k: float(np.mean([l[k] for l in logs])) for k in logs[0]} if logs else {}

    # ------------------------------------------------------------------ evaluation
    def agent_policy(self) -> AgentPolicy:
        return AgentPolicy(self.agent.actor_critic.eval(), self.num_actions, self.device, self.rng,
                           self.cfg.training.eval_epsilon)

    @torch.no_grad()
    def evaluate(self, episodes: int, policy: Policy | None = None) -> list[float]:
        """Full test games (no life-loss termination, raw rewards) played by `policy` (default: the agent's, sampled
        at eval_epsilon) on the evaluation envs, seeded seed + 10_000 + i: every policy meets the same games.

        Each env plays a fixed quota of episodes decided up front, so short episodes are not over-represented."""
        t, e = self.cfg.training, self.cfg.env
        policy = self.agent_policy() if policy is None else policy
        n_envs = max(1, min(t.eval_num_envs, episodes))
        quota = [episodes // n_envs + (i < episodes % n_envs) for i in range(n_envs)]
        envs = EnvBatch([self.make_env(e.game, train=False, seed=self.cfg.seed + 10_000 + i, size=e.size, frameskip=e.frameskip,
                                  noop_max=e.noop_max, max_episode_frames=e.eval_max_episode_frames,
                                  pool_first_frame=e.pool_first_frame) for i in range(n_envs)])
        obs = envs.reset()
        running = np.zeros(n_envs)
        returns: list[float] = []
        done_count = [0] * n_envs
        bar = tqdm(total=episodes, desc="evaluation", leave=False, dynamic_ncols=True)
        while len(returns) < episodes:
            obs, rew, term, trunc, _ = envs.step(policy.act(obs))
            running += rew
            for i in np.flatnonzero(term | trunc):
                if done_count[i] < quota[i]:
                    returns.append(float(running[i]))
                    done_count[i] += 1
                    bar.update(1)
                running[i] = 0.0
                policy.end_episode(int(i))
        bar.close()
        envs.close()
        return returns

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        if self.result_path.exists():
            print(f"{self.run_dir}: already finished (result.json present); nothing to do")
            return read_json(self.result_path)
        atomic_write_yaml(self.run_dir / "config.yaml", to_dict(self.cfg))
        resumed = self.load_checkpoint()
        if resumed:
            print(f"{self.run_dir}: resuming after epoch {self.epoch} ({self.replay.num_steps} env steps in replay)")
        note = repair_metrics(self.metrics_path, upto=self.epoch)  # lines a kill left past the checkpoint
        if note:
            print(note)
        t = self.cfg.training
        self.tensorboard = TensorBoard(self.run_dir, t.tensorboard)
        while self.epoch < (run_epochs(t) if self.num_epochs is None else self.num_epochs):
            start = time.perf_counter()
            first = self.epoch == 0
            before = self.replay.num_steps
            if first:
                metrics = self.initial_collection()
                self.num_epochs = run_epochs(t, self.replay.num_steps)
                if t.final_epochs is not None:  # the released first epoch also collects before it trains
                    extra = self.collect(min(t.collect_steps_per_epoch, max(0, t.total_env_steps
                                                                            - self.replay.num_steps)),
                                         uniform=False, desc="epoch 1 collect")
                    metrics.update({"collect/steps": self.replay.num_steps,
                                    "collect/reward_events": metrics["collect/reward_events"]
                                    + extra["collect/reward_events"]})
            elif self.replay.num_steps < t.total_env_steps:
                steps = min(t.collect_steps_per_epoch, t.total_env_steps - self.replay.num_steps)
                metrics = self.collect(steps, uniform=False, desc=f"epoch {self.epoch + 1} collect")
            else:
                metrics = {}
            new_steps = self.replay.num_steps - before
            if t.diag_every and (self.epoch + 1) % t.diag_every == 0 and new_steps > 0:
                # the steps just collected, before any learner has trained on them: held-out real data
                metrics.update(heldout_diagnostics(self.agent.world_model, self.agent.reward_end, self.replay,
                                                   new_steps, t.reward_end_seq_len, self.device,
                                                   t.imagination_horizon))
            for name, n, n_first in (("denoiser", t.denoiser_steps, t.first_epoch_denoiser_steps),
                                     ("reward_end", t.reward_end_steps, t.first_epoch_reward_end_steps),
                                     ("actor_critic", t.actor_critic_steps, t.first_epoch_actor_critic_steps)):
                metrics.update(self.train_phase(name, n_first if first else n))
            self.epoch += 1
            if t.eval_every and self.epoch % t.eval_every == 0 and self.epoch < self.num_epochs:
                returns = self.evaluate(t.eval_every_episodes)
                metrics.update({"eval/return": float(np.mean(returns)), "eval/episode_returns": returns})
            elapsed = time.perf_counter() - start
            self.wall_time += elapsed
            metrics.update({"epoch": self.epoch, "env_steps": self.replay.num_steps, "epoch_time_s": elapsed,
                            "wall_time_s": self.wall_time})
            append_jsonl(self.metrics_path, metrics)
            self.tensorboard.write(metrics, self.replay.num_steps)
            self.save_checkpoint()
            if self.epoch_hook is not None:
                self.epoch_hook(self.epoch, self)
        return self.finish()

    def finish(self) -> dict[str, Any]:
        """The final evaluation, then the screen-blind controls on the same envs (diamond/loop/controls.py)."""
        start = time.perf_counter()
        agent = self.agent_policy()
        returns = self.evaluate(self.cfg.training.eval_episodes, agent)
        rng = np.random.default_rng([self.cfg.seed, CONTROL_STREAM])  # not the run's RNG, whose state the training left
        controls = {name: self.evaluate(self.cfg.training.control_episodes, policy)
                    for name, policy in control_policies(agent.stats, rng).items()}
        random_returns = controls["uniform"]
        self.wall_time += time.perf_counter() - start
        mean = float(np.mean(returns))
        result = {
            "game": self.cfg.env.game, "seed": self.cfg.seed, "profile": self.cfg.profile,
            "config_hash": config_hash(self.cfg), "episode_returns": returns, "mean_return": mean, "score": mean,
            "hns": float(human_normalized_score(self.cfg.env.game, mean)) if self.cfg.env.game in GAMES else None,
            "num_episodes": len(returns),
            "random_returns": random_returns, "random_mean_return": float(np.mean(random_returns)),
            "controls": controls, "action_frequencies": agent.stats.frequencies,
            "action_repeat_rate": agent.stats.repeat_rate,
            "shuffled_imagined_rewards": self.cfg.training.shuffle_imagined_rewards,
            "env_steps": self.replay.num_steps, "epochs": self.epoch, "wall_time_s": self.wall_time,
            "device": str(self.device), "nfe": self.agent.world_model.nfe,
        }
        final = {"epoch": self.epoch, "env_steps": self.replay.num_steps, "eval/return": mean,
                 "eval/random_return": result["random_mean_return"], "final": True}
        append_jsonl(self.metrics_path, final)
        self.tensorboard.write(final, self.replay.num_steps)
        self.tensorboard.close()
        atomic_write_json(self.result_path, result)
        return result


def check_gpu(cfg: Config) -> None:
    """perf.device=cuda on a machine without a usable GPU: one sentence, not a CUDA traceback mid-run."""
    device = cfg.perf.device
    if not device.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise UsageError(f"perf.device={device} asks for a GPU, but PyTorch sees none here; use perf.device=cpu "
                         "(or auto), or run on a machine with a GPU")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise UsageError(f"perf.device={device}: this machine has {torch.cuda.device_count()} GPU(s), "
                         f"numbered from 0")


def set_matmul_precision(cfg: Config, device: torch.device) -> None:
    """TF32 matmuls on CUDA as perf.tf32 says: process-wide, as the released trainer's first line sets it."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = cfg.perf.tf32


def run_epochs(t: TrainingConfig, initial_steps: int | None = None) -> int:
    """Epochs of a run: training.epochs, or with training.final_epochs the released count, capped by
    training.epochs: one collection epoch per collect_steps_per_epoch still to collect after the initial
    collection, then final_epochs (released src/trainer.py: num_epochs_collect + num_final_epochs; 1,000 when the
    initial collection stops at 5,000 of 100,000 steps). `initial_steps`: the replay after the initial collection
    (projected: initial_collect_steps)."""
    if t.final_epochs is None:
        return t.epochs
    left = max(0, t.total_env_steps - (t.initial_collect_steps if initial_steps is None else initial_steps))
    return min(t.epochs, -(-left // t.collect_steps_per_epoch) + t.final_epochs)


def schedule(cfg: Config, eval_episode_steps: float) -> dict[str, float]:
    """How many times a whole run does each measured thing, following Trainer.run: the first epoch's long phases
    and uniform collection, later epochs' phases and policy collection until total_env_steps, a checkpoint per
    epoch, and the env steps of the intermediate and final evaluations (episodes of `eval_episode_steps` steps)."""
    t = cfg.training
    epochs = run_epochs(t)
    later = epochs - 1
    updates = {"denoiser": t.first_epoch_denoiser_steps + later * t.denoiser_steps,
               "reward_end": t.first_epoch_reward_end_steps + later * t.reward_end_steps,
               "actor_critic": t.first_epoch_actor_critic_steps + later * t.actor_critic_steps}
    intermediate = later // t.eval_every if t.eval_every else 0
    episodes = t.eval_episodes + intermediate * max(1, t.eval_episodes // 10)
    counts = {f"{k}_update": float(v) for k, v in updates.items()}
    counts.update({f"sample_{k}": float(v) for k, v in updates.items()})
    counts.update({
        "collect_uniform": float(t.initial_collect_steps),
        "collect_policy": float(min(t.total_env_steps - t.initial_collect_steps,  # the released first epoch collects
                                    t.collect_steps_per_epoch * (later if t.final_epochs is None else epochs))),
        "eval_step": float(episodes * eval_episode_steps),
        "checkpoint": float(epochs),
    })
    return counts
