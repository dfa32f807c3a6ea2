"""Run entry: train a diffusion world model (the denoiser D_θ only) on a static dataset, then evaluate it.

§5.1 compares EDM and DDPM world models with the same network on the same static data; nothing
else of Algorithm 1 is involved. The last episodes (~10 % of the steps) are held out: the test loss is
tracked on them and the evaluation protocol (evaluation/wm_protocol.py) rolls out from them.

Run folder: config.yaml, metrics.jsonl (train loss, test loss), checkpoints/last.pt (model,
optimizer, scheduler, step, RNG states; written atomically every `checkpoint_every` steps, resumed
from), rollout_errors.csv, rollout_frames.npz, result.json (last).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from diamond.loop.agent import make_optimizer, warmup_schedule
from diamond.loop.config import Config, build_config, config_hash, to_dict
from diamond.loop.data import ReplayBuffer, sample_segments, to_float
from diamond.loop.envs import num_actions
from diamond.loop.trainer import resolve_device
from diamond.models.registry import build_world_model, check_buildable
from diamond.run.checkpoint import load_checkpoint, restore_rng, rng_state, save_checkpoint
from diamond.run.io import (
    append_jsonl,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    atomic_write_yaml,
    read_json,
    read_jsonl,
)
from diamond.run.rundir import locked_run, record_identity, repair_metrics
from evaluation.drift import reference_frames
from evaluation.wm_protocol import (
    clip_metrics,
    error_table_times,
    load_feature_networks,
    num_parameters,
    rollout_vs_real,
)

StepHook = Callable[[int], None]
TEST_SEGMENT_SEED = 12345  # fixed test batches and noise: test losses are comparable across steps and runs
TEST_BATCHES = 4  # held-out batches per test-loss evaluation
ERRORS_FILE, FRAMES_FILE = "rollout_errors.csv", "rollout_frames.npz"
TEST_FRACTION = 0.1  # of the dataset's steps, held out (split_episodes)


@dataclass(frozen=True)
class ProtocolSettings:
    """What the evaluation after training measures (kwargs of the run, so plain JSON values)."""

    horizon: int = 1000
    num_steps: tuple[int, ...] = (1, 2, 3, 5, 10)
    rollouts: int = 8
    grid_times: tuple[int, ...] | None = None  # None: evaluation.wm_protocol.default_grid_times
    clips: int = 64
    clip_context: int = 6
    clip_len: int = 16
    feature_networks: bool = True
    drift_frames: int = 2048  # real training frames the drift measures compare with (evaluation/drift.py); 0: off
    seed: int = 0
    long_steps: tuple[int, ...] | None = None  # the n rolled out to `horizon`; the others stop at short_horizon
    short_horizon: int | None = None  # horizon of the n outside long_steps

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> ProtocolSettings:
        values = dict(values or {})
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"unknown protocol setting(s) {unknown}; valid: {', '.join(names)}")
        for key in ("num_steps", "grid_times", "long_steps"):
            if values.get(key) is not None:
                values[key] = tuple(int(v) for v in values[key])
        settings = cls(**values)
        if (settings.horizon < 1 or settings.rollouts < 1 or not settings.num_steps or min(settings.num_steps) < 1
                or settings.drift_frames < 0):
            raise ValueError(f"protocol needs horizon >= 1, rollouts >= 1, every n >= 1 and drift_frames >= 0; "
                             f"got {settings}")
        if not set(settings.long_steps or ()) <= set(settings.num_steps):
            raise ValueError(f"protocol long_steps {settings.long_steps} must be among num_steps {settings.num_steps}.")
        if settings.short_horizon is not None and not 1 <= settings.short_horizon <= settings.horizon:
            raise ValueError(f"protocol short_horizon must be in [1, horizon = {settings.horizon}], "
                             f"got {settings.short_horizon}.")
        if settings.long_steps is not None and settings.short_horizon is None:
            raise ValueError("protocol long_steps needs short_horizon (the horizon of the other n).")
        return settings

    def horizons(self) -> dict[int, int]:
        """The shorter horizon of each n outside long_steps (rollout_vs_real's `horizons`)."""
        if self.long_steps is None or self.short_horizon is None:
            return {}
        return {n: self.short_horizon for n in self.num_steps if n not in self.long_steps}


def split_episodes(buffer: ReplayBuffer, test_fraction: float) -> tuple[ReplayBuffer, list[Any]]:
    """Train replay and held-out test episodes: the fewest last episodes holding >= test_fraction of the steps.

    Counted in steps, not episodes: life-loss episodes range from tens to thousands of steps, and the
    last one is usually cut short by the collection budget, so "the last 10 % of episodes" of a small
    dataset can be a 25-step stub too short for any rollout."""
    n = buffer.num_episodes
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    if n < 2:
        raise ValueError(f"a train/test split needs at least 2 episodes, the dataset has {n}; collect more frames.")
    steps_from_end = np.cumsum([ep.num_steps for ep in reversed(buffer.episodes)])
    n_test = min(n - 1, int(np.searchsorted(steps_from_end, test_fraction * buffer.num_steps)) + 1)
    train = ReplayBuffer()
    for ep in buffer.episodes[: n - n_test]:
        train.add_episode(ep)
    return train, list(buffer.episodes[n - n_test :])


def load_dataset(directory: str | Path) -> tuple[ReplayBuffer, dict[str, Any]]:
    """The episodes and summary.json of a complete static dataset (summary.json is written last)."""
    summary_path = Path(directory) / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path} is missing: {directory} is not a complete static dataset "
                                "(collect it with ablations.static_data first).")
    return ReplayBuffer.load(directory), read_json(summary_path)


def held_out_segments(test: list[Any], batch_size: int, seq_len: int) -> list[Any]:
    """The fixed held-out batches (TEST_BATCHES, seeded): the same in every run on the same data."""
    test_buf = ReplayBuffer()
    for ep in test:
        test_buf.add_episode(ep)
    rng = np.random.default_rng(TEST_SEGMENT_SEED)
    return [sample_segments(test_buf, batch_size, seq_len, rng, pad="left", recency_weights=None)
            for _ in range(TEST_BATCHES)]


def masked_frames(seg: Any) -> torch.Tensor:
    """A (torch) segment's frames in [-1, 1] with padded frames 0: what the denoiser trains and is tested on."""
    return to_float(seg.obs) * seg.mask[:, :, None, None, None]


class StaticTrainer:
    """Denoiser-only training on fixed data, checkpointed and resumable."""

    def __init__(self, cfg: Config, run_dir: Path, train: ReplayBuffer, test: list[Any], n_actions: int) -> None:
        self.cfg, self.run_dir, self.train_buf = cfg, run_dir, train
        self.device = resolve_device(cfg.perf.device)
        self.ckpt_path = run_dir / "checkpoints" / "last.pt"
        self.metrics_path = run_dir / "metrics.jsonl"
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.model = build_world_model(cfg, n_actions).to(self.device)  # whichever world_model.factory names
        self.opt = make_optimizer(self.model, cfg.denoiser_optim, cfg.perf.fused_adamw)
        self.sched = warmup_schedule(self.opt, cfg.denoiser_optim.warmup_steps)
        self.step, self.train_time = 0, 0.0
        self.test_batches = held_out_segments(test, cfg.training.batch_size, self.model.segment_length)

    def _loss(self, seg: Any) -> torch.Tensor:
        seg = seg.to_torch(self.device)
        obs = masked_frames(seg)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.perf.bf16):
            return self.model.loss(obs, seg.act, seg.mask)

    def train_step(self) -> float:
        """Eq. 5 (EDM: Eq. 7; DDPM: ε-prediction) on one uniformly sampled batch."""
        self.model.train()
        seg = sample_segments(self.train_buf, self.cfg.training.batch_size, self.model.segment_length, self.rng,
                              pad="left", recency_weights=None)
        loss = self._loss(seg)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.denoiser_optim.max_grad_norm)
        self.opt.step()
        self.sched.step()
        self.step += 1
        return loss.item()

    @torch.no_grad()
    def test_loss(self) -> float:
        """Mean loss on the fixed held-out batches, with fixed noise; the training RNG streams are untouched."""
        self.model.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(TEST_SEGMENT_SEED)
            return float(np.mean([self._loss(seg).item() for seg in self.test_batches]))

    def save(self) -> None:
        state = {"step": self.step, "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                 "scheduler": self.sched.state_dict(), "train_time": self.train_time, "rng": rng_state(self.rng)}
        save_checkpoint(self.ckpt_path, state, config_hash(self.cfg))

    def resume(self) -> bool:
        """Load checkpoints/last.pt if any, and drop metric lines logged after it (they will be redone)."""
        state = load_checkpoint(self.ckpt_path, config_hash(self.cfg), self.device)
        if state is None:
            return False
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.step, self.train_time = int(state["step"]), float(state["train_time"])
        restore_rng(state["rng"], self.rng)
        note = repair_metrics(self.metrics_path, upto=self.step, key="step")
        if note:
            print(note)
        return True

    def fit(self, train_steps: int, checkpoint_every: int, test_every: int, log_every: int,
            step_hook: StepHook | None) -> None:
        """Train to `train_steps`, logging and checkpointing on the step grid (so a resume is exact)."""
        losses: list[float] = []
        with tqdm(total=train_steps, initial=self.step, desc="denoiser", unit="step", dynamic_ncols=True) as bar:
            while self.step < train_steps:
                start = time.perf_counter()
                losses.append(self.train_step())
                self.train_time += time.perf_counter() - start
                bar.update(1)
                last = self.step == train_steps
                ckpt = last or self.step % checkpoint_every == 0
                if ckpt or self.step % log_every == 0:
                    record = {"step": self.step, "train/loss": float(np.mean(losses)),
                              "lr": self.sched.get_last_lr()[0], "train_time_s": self.train_time}
                    if last or self.step % test_every == 0:
                        record["test/loss"] = self.test_loss()
                    append_jsonl(self.metrics_path, record)
                    bar.set_postfix(loss=f"{record['train/loss']:.4f}")
                    losses = []
                if ckpt:
                    self.save()
                if step_hook is not None:
                    step_hook(self.step)


def run_config(profile: str, overrides: Sequence[str], seed: int, game: str) -> Config:
    """The config a run resolves its arguments to (what its config.yaml holds)."""
    return build_config(profile, list(overrides), seed=seed, **{"env.game": game})


def _resolved_config(run_dir: Path, profile: str, overrides: Sequence[str], seed: int, game: str,
                     extra_identity: dict[str, Any] | None = None) -> Config:
    """The run's config, claimed for the folder (diamond/run/rundir.py) with any `extra_identity` keys: resuming with
    different arguments fails, naming the differing keys, instead of mixing two configs. The world model is built
    and probed first (diamond/models/registry.py): a refused one claims no folder."""
    cfg = run_config(profile, overrides, seed, game)
    check_buildable(cfg, num_actions(game))
    record_identity(run_dir, {"game": game, "seed": seed, "profile": profile, "config_hash": config_hash(cfg),
                              **(extra_identity or {})}, config=to_dict(cfg), flag="run folder")
    atomic_write_yaml(run_dir / "config.yaml", to_dict(cfg))
    return cfg


def load_trained_model(cfg: Config, model_dir: Path, n_actions: int, device: torch.device
                       ) -> tuple[torch.nn.Module, int]:
    """A finished model run's last weights (checked against `cfg`'s hash) in eval mode, and its update count."""
    model = build_world_model(cfg, n_actions).to(device)
    ckpt = Path(model_dir) / "checkpoints" / "last.pt"
    state = load_checkpoint(ckpt, config_hash(cfg), device)
    if state is None:
        raise FileNotFoundError(f"{ckpt} is missing: the model run in {model_dir} kept no weights to measure.")
    model.load_state_dict(state["model"])
    return model.eval(), int(state["step"])


def evaluate(model: torch.nn.Module, test: list[Any], settings: ProtocolSettings, run_dir: Path,
             train: ReplayBuffer | None = None) -> dict[str, Any]:
    """The reusable protocol on the held-out episodes; per-step errors and grid frames go to files.

    The drift measures compare imagined frames with real frames drawn from `train` (real frames that the
    rollouts neither start from nor continue into, so the real continuation gives the measures' floor)."""
    device = next(model.parameters()).device
    nets = {k: v.to(device) if isinstance(v, torch.nn.Module) else v
            for k, v in load_feature_networks(settings.feature_networks).items()}
    lpips_net = nets["lpips"] if isinstance(nets["lpips"], torch.nn.Module) else None
    reference = (reference_frames(train.episodes, settings.drift_frames, settings.seed)
                 if train is not None and settings.drift_frames > 0 else None)
    errors, frames = rollout_vs_real(model, test, starts=settings.rollouts, horizon=settings.horizon,
                                     num_steps_list=settings.num_steps, keep_times=settings.grid_times,
                                     lpips_net=lpips_net, seed=settings.seed, drift_reference=reference,
                                     horizons=settings.horizons())
    atomic_write_text(run_dir / ERRORS_FILE, errors.to_csv(index=False))
    atomic_write(run_dir / FRAMES_FILE, lambda f: np.savez_compressed(f, **frames))
    horizon = int(errors["step"].max())
    at = errors[errors["step"].isin({*error_table_times(horizon), *settings.horizons().values()})]
    kept = [k for k in ("mse", "psnr", "nn_mse", "static_mse") if k in at.columns]  # drift: when measured
    error_at = {s: {str(int(r["step"])): {k: r[k] for k in kept} for r in rows.to_dict("records")}
                for s, rows in at.groupby("setting", sort=False)}
    clips = {f"n={n}": clip_metrics(model, test, num_clips=settings.clips, context=settings.clip_context,
                                    clip_len=settings.clip_len, num_steps=n, extractors=nets, seed=settings.seed)
             for n in settings.num_steps}
    return {"rollouts": {"horizon": horizon, "horizon_requested": settings.horizon,
                         "horizon_capped": horizon < settings.horizon, "num_rollouts": len(frames["starts"]),
                         "errors_file": ERRORS_FILE, "frames_file": FRAMES_FILE, "error_at": error_at,
                         "horizons": {f"n={n}": min(horizon, settings.horizons().get(n, horizon))
                                      for n in settings.num_steps}},
            "clips": clips}


@locked_run
def run(run_dir: str | Path, dataset_dir: str | Path, profile: str = "paper", overrides: Sequence[str] = (),
        train_steps: int = 120_000, protocol: dict[str, Any] | None = None, seed: int = 0,
        checkpoint_every: int = 1000, test_every: int = 1000, log_every: int = 100,
        test_fraction: float = TEST_FRACTION,
        step_hook: StepHook | None = None) -> dict[str, Any]:
    """Train (or resume) the denoiser on `dataset_dir`, evaluate it, write result.json; the launcher's entry.

    `protocol` holds ProtocolSettings fields; `step_hook(step)` runs after every step (tests interrupt there)."""
    run_dir = Path(run_dir)
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return read_json(result_path)
    settings = ProtocolSettings.from_dict(protocol)
    for name, value in {"train_steps": train_steps, "checkpoint_every": checkpoint_every,
                        "test_every": test_every, "log_every": log_every}.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}.")
    buffer, summary = load_dataset(dataset_dir)
    cfg = _resolved_config(run_dir, profile, overrides, seed, summary["game"])
    n_actions = num_actions(summary["game"])
    top = max(int(ep.act.max(initial=0)) for ep in buffer.episodes)
    if top >= n_actions:
        raise ValueError(f"{dataset_dir} holds action {top} but {summary['game']} has {n_actions} actions.")
    train, test = split_episodes(buffer, test_fraction)
    trainer = StaticTrainer(cfg, run_dir, train, test, n_actions)
    if trainer.resume():
        print(f"{run_dir}: resuming at step {trainer.step} of {train_steps}")
    trainer.fit(train_steps, checkpoint_every, test_every, log_every, step_hook)
    start = time.perf_counter()
    evaluation = evaluate(trainer.model, test, settings, run_dir, train)
    eval_time = time.perf_counter() - start
    last = read_jsonl(trainer.metrics_path)[-1]
    result = {
        "game": summary["game"], "paradigm": cfg.diffusion.paradigm, "sampler": cfg.diffusion.sampler,
        "num_steps_list": list(settings.num_steps), "profile": profile, "seed": seed,
        "config_hash": config_hash(cfg), "train_steps": trainer.step, "batch_size": cfg.training.batch_size,
        "train_loss": last["train/loss"], "test_loss": last.get("test/loss"),
        "num_parameters": num_parameters(trainer.model),
        "dataset": {"dir": str(dataset_dir), "num_steps": buffer.num_steps, "num_episodes": buffer.num_episodes,
                    "train_episodes": train.num_episodes, "test_episodes": len(test),
                    "test_steps": sum(ep.num_steps for ep in test),
                    "expert_mean_return": summary.get("expert_mean_return"),
                    "random_mean_return": summary.get("random_mean_return")},
        **evaluation,
        "train_time_s": trainer.train_time, "eval_time_s": eval_time, "device": str(trainer.device),
    }
    atomic_write_json(result_path, result)
    return result
