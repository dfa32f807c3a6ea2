"""The measurements of `python -m diamond.bench` (diamond/bench/__init__.py): throughput, FLOPs and peak memory of
one profile's networks and data path, and the projected wall time of one whole run of that profile.

Every measurement runs the Trainer's own code (its agent, Learner, replay sampler, collection and checkpoint), on
real Breakout frames collected first; warm-up calls are excluded, the device is synchronised, medians are reported.
"""

from __future__ import annotations

import argparse
import copy
import re
import statistics
import tempfile
import time
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from diamond.loop.agent import Learner, build_agent
from diamond.loop.config import Config, PerfConfig, set_dotted, validate
from diamond.loop.data import to_float
from diamond.loop.envs import EnvBatch, num_actions
from diamond.loop.trainer import Trainer, resolve_device, schedule
from diamond.models.diffusion.samplers import nfe
from diamond.models.world_model import world_model_step

PHASES = {"denoiser": "left", "reward_end": "both", "actor_critic": "left"}  # segment padding of each learner
TIMED = ("denoiser_update", "reward_end_update", "actor_critic_update", "imagination")  # Workload steps with a row


@dataclass
class Row:
    """One measurement: median seconds per call (at the measured batch) and what one call does."""

    name: str
    unit: str  # what `items` counts
    seconds: float  # median over repeats, at the measured batch
    items: int  # units per call, at the target batch
    scale: float = 1.0  # seconds at the target batch / seconds at the measured batch (linear extrapolation)
    flops: float | None = None  # matmul/conv FLOPs per call, at the target batch
    peak_bytes: int = 0

    @property
    def target_seconds(self) -> float:
        return self.seconds * self.scale

    @property
    def rate(self) -> float:
        return self.items / self.target_seconds


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model from /proc/cpuinfo with the number of torch threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M) if cpuinfo.exists() else None
    return f"{match.group(1).strip() if match else 'CPU'} ({torch.get_num_threads()} torch thread(s))"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory of a section: torch.cuda.max_memory_allocated on CUDA, else the process's peak RSS (VmHWM,
    reset through /proc/self/clear_refs where the kernel allows; otherwise the process peak so far)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass

    def peak(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        match = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
        return int(match.group(1)) * 1024 if match else 0


def measure(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> tuple[float, int]:
    """(median seconds per call, peak memory bytes) of `fn` after `warmup` excluded calls."""
    memory = PeakMemory(device)
    memory.reset()
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), memory.peak()


def matmul_peak(device: torch.device, repeats: int = 5) -> tuple[float, str]:
    """Measured matmul rate in FLOP/s: bf16 8192² on GPU, fp32 1024² on CPU (the ceiling we compare with)."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (1024, torch.float32)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    seconds, _ = measure(lambda: a @ b, device, warmup=2, repeats=repeats)
    return 2 * n**3 / seconds, f"{str(dtype).removeprefix('torch.')} {n}x{n} matmul"


def _flops(fn: Callable[[], Any]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def count_flops(cfg: Config, n_actions: int) -> dict[str, int]:
    """Matmul/conv/attention FLOPs per sample (batch 1, plain CPU modules; every op is per sample, so a batch of B
    costs B times this): one update of each learner (forward + backward) and one imagined frame (NFE denoiser
    passes + R_ψ step + actor step)."""
    cfg = with_values(cfg, {"perf": {f.name: f.default for f in fields(PerfConfig)}, "perf.device": "cpu",
                            "training.batch_size": 1})
    torch.manual_seed(0)
    agent = build_agent(cfg, n_actions)
    learner = Learner(agent, cfg)
    t, s = cfg.training, cfg.env.size
    n_den, n_re = agent.world_model.segment_length, t.reward_end_seq_len + 1

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.rand(1, n, 3, s, s) * 2 - 1, torch.randint(0, n_actions, (1, n))

    (o_d, a_d), (o_r, a_r), (o_a, a_a) = batch(n_den), batch(n_re), batch(t.burn_in)
    ones = torch.ones(1, n_re, dtype=torch.bool)
    out = {
        "denoiser_update": _flops(lambda: learner.update_denoiser(o_d, a_d, ones[:, :n_den])),
        "reward_end_update": _flops(lambda: learner.update_reward_end(o_r, a_r, torch.zeros(1, n_re), ~ones, ones)),
        "actor_critic_update": _flops(lambda: learner.update_actor_critic(o_a, a_a)),
        "world_model_step": _flops(lambda: world_model_step(agent.world_model, agent.reward_end, o_a, a_a, None)),
    }
    with torch.no_grad():
        out["actor_step"] = _flops(lambda: agent.actor_critic(o_a[:, -1]))
        out["reward_end_step"] = _flops(lambda: agent.reward_end(o_a[:, -1:], a_a[:, -1:], o_a[:, -1:], None))
    out["denoiser_passes"] = out["world_model_step"] - out["reward_end_step"]
    out["imagined_frame"] = out["world_model_step"] + out["actor_step"]
    return out


def with_values(cfg: Config, values: dict[str, Any]) -> Config:
    """A validated copy of `cfg` with dotted fields set (the measured batch, a ladder's switches)."""
    new = copy.deepcopy(cfg)
    set_dotted(new, values)
    validate(new)
    return new


@dataclass
class Workload:
    """A Trainer on real frames with one batch per learner, and what is timed as zero-argument calls: the three
    updates, imagination (H world-model steps) and imagination_step (one, the unit of the side by side with the
    released code in tools/gpu)."""

    trainer: Trainer
    seq: dict[str, int]  # segment length of each learner
    steps: dict[str, Callable[[], Any]]
    uniform_s: float  # seconds per uniform-collection env step


def workload(cfg: Config, batch: int, collect_steps: int, workdir: Path) -> Workload:
    """Build cfg's Trainer at `batch`, collect real frames uniformly, sample one batch per learner."""
    run_cfg = with_values(cfg, {"training.batch_size": batch})
    trainer = Trainer(run_cfg, workdir)
    device, t, agent, learner = trainer.device, run_cfg.training, trainer.agent, trainer.learner
    start = time.perf_counter()
    trainer.collect(max(collect_steps, 4 * t.reward_end_seq_len), uniform=True, desc="bench: uniform collection")
    uniform_s = (time.perf_counter() - start) / trainer.replay.num_steps
    seq = {"denoiser": agent.world_model.segment_length,
           "reward_end": t.reward_end_seq_len + 1, "actor_critic": t.burn_in}
    batches = {name: trainer._segments(seq[name], pad) for name, pad in PHASES.items()}
    (o_d, s_d), (o_r, s_r), (obs, seg) = batches["denoiser"], batches["reward_end"], batches["actor_critic"]
    step = learner.imagine_step or partial(world_model_step, agent.world_model, agent.reward_end)

    @torch.no_grad()
    def imagine_frames() -> None:
        hist_obs, hist_act, state = obs, seg.act, None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=run_cfg.perf.bf16):
            for _ in range(t.imagination_horizon):  # the new action fills the last slot, as in imagine()
                action = torch.randint_like(hist_act[:, :1], trainer.num_actions)
                hist_act = torch.cat([hist_act[:, :-1], action], 1)
                nxt, _, _, state = step(hist_obs, hist_act, state)
                hist_obs = torch.cat([hist_obs[:, 1:], nxt[:, None]], dim=1)
                hist_act = torch.cat([hist_act[:, 1:], action], 1)

    @torch.no_grad()
    def imagine_one() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=run_cfg.perf.bf16):
            step(obs, seg.act, None)

    steps = {
        "denoiser_update": lambda: learner.update_denoiser(o_d, s_d.act, s_d.mask),
        "reward_end_update": lambda: learner.update_reward_end(o_r, s_r.act, s_r.rew, s_r.end, s_r.mask),
        "actor_critic_update": lambda: learner.update_actor_critic(obs, seg.act),
        "imagination": imagine_frames,
        "imagination_step": imagine_one,
    }
    return Workload(trainer, seq, steps, uniform_s)


def benchmark(cfg: Config, batch: int, warmup: int, repeats: int, collect_steps: int, workdir: Path,
              learners_only: bool = False) -> list[Row]:
    """All rows for one configuration, measured at `batch` and extrapolated linearly to cfg's batch size."""
    target = cfg.training.batch_size
    work = workload(cfg, batch, collect_steps, workdir)
    trainer, device, t = work.trainer, work.trainer.device, work.trainer.cfg.training
    scale = target / batch
    rows: list[Row] = []
    for name, pad in PHASES.items():
        seconds, peak = measure(partial(trainer._segments, work.seq[name], pad), device, warmup, repeats)
        rows.append(Row(f"sample_{name}", "batches", seconds, 1, scale, None, peak))
    for name in TIMED:
        seconds, peak = measure(work.steps[name], device, warmup, repeats)
        frames = name == "imagination"
        rows.append(Row(name, "frames" if frames else "steps", seconds,
                        target * t.imagination_horizon if frames else 1, scale, None, peak))
    if learners_only:
        return rows
    rows.append(Row("collect_uniform", "env steps", work.uniform_s, 1))
    seconds, peak = measure(lambda: trainer.collect(collect_steps, uniform=False, desc="bench: policy collection"),
                            device, warmup, repeats)
    rows.append(Row("collect_policy", "env steps", seconds / collect_steps, 1, 1.0, None, peak))
    rows.append(_eval_row(trainer, collect_steps, warmup, repeats))
    seconds, peak = measure(trainer.save_checkpoint, device, warmup + 1, repeats)  # the first save writes the replay
    rows.append(Row("checkpoint", "checkpoints", seconds, 1, 1.0, None, peak))
    return rows


def _eval_row(trainer: Trainer, steps: int, warmup: int, repeats: int) -> Row:
    """Batched evaluation as Trainer.evaluate steps it: eval_num_envs full-game envs, one policy call per step."""
    cfg, device = trainer.cfg, trainer.device
    e, n = cfg.env, max(1, min(cfg.training.eval_num_envs, cfg.training.eval_episodes))
    envs = EnvBatch.make(e.game, n, train=False, seed=cfg.seed + 10_000, size=e.size, frameskip=e.frameskip,
                         noop_max=e.noop_max, max_episode_frames=e.eval_max_episode_frames)
    ac, rng = trainer.agent.actor_critic.eval(), np.random.default_rng(0)
    obs, state = envs.reset(), None

    @torch.no_grad()
    def play() -> None:
        nonlocal obs, state
        for _ in range(max(1, steps // n)):
            logits, _, state = ac(to_float(torch.from_numpy(obs).to(device)), state)
            probs = torch.softmax(logits.float(), -1).cpu().numpy().astype(np.float64)
            obs = envs.step(np.array([rng.choice(len(p), p=p / p.sum()) for p in probs]))[0]

    seconds, peak = measure(play, device, warmup, repeats)
    envs.close()
    return Row("eval_step", "env steps", seconds / max(1, steps // n), n, 1.0, None, peak)


def project(rows: list[Row], counts: dict[str, float]) -> dict[str, float]:
    """Seconds of a whole run per measured item (units × seconds per unit); imagination is inside actor_critic."""
    by_name = {r.name: r for r in rows}
    return {k: n * by_name[k].target_seconds / by_name[k].items for k, n in counts.items() if k in by_name}


FLOP_KEYS = {"denoiser_update": "denoiser_update", "reward_end_update": "reward_end_update",
             "actor_critic_update": "actor_critic_update", "imagination": "world_model_step"}


def attach_flops(rows: list[Row], per_sample: dict[str, int], batch: int) -> None:
    """FLOPs per call at the target batch (imagination: per imagined frame × frames)."""
    for row in rows:
        if row.name in FLOP_KEYS:
            per_item = per_sample[FLOP_KEYS[row.name]] * (1 if row.name == "imagination" else batch)
            row.flops = float(per_item * row.items if row.name == "imagination" else per_item)


def fmt_time(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.3g} s"


def fmt_bytes(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def markdown(report: dict[str, Any], rows: list[Row]) -> str:
    """The tables of docs/performance.md: measurements, FLOPs, projection."""
    peak = report["peak_flops"]
    head = (f"Device: **{report['device_name']}**, torch {report['torch']}, profile `{report['profile']}`, batch "
            f"{report['batch_size']}" + (f" (measured at batch {report['measured_batch']}, per-call times extrapolated"
                                        " linearly in the batch)" if report['measured_batch'] != report['batch_size']
                                        else "") + f"; {report['warmup']} warm-up + median of {report['repeats']}"
            f" repeats. Peak: {peak / 1e12:.3f} TFLOP/s ({report['peak_op']}).\n")
    lines = [head, "| measurement | time per call | rate | GFLOP per call | achieved TFLOP/s | of peak | peak memory |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        flops = "" if r.flops is None else f"{r.flops / 1e9:,.1f}"
        achieved = "" if r.flops is None else f"{r.flops / r.target_seconds / 1e12:.4f}"
        frac = "" if r.flops is None else f"{100 * r.flops / r.target_seconds / peak:.0f} %"
        lines.append(f"| {r.name} | {fmt_time(r.target_seconds)} | {r.rate:,.3g} {r.unit}/s | {flops} | {achieved} "
                     f"| {frac} | {fmt_bytes(r.peak_bytes) if r.peak_bytes else ''} |")
    f = report["flops_per_sample"]
    lines += ["", f"FLOPs (FlopCounterMode, matmul/conv/attention only): one imagined frame "
              f"{f['imagined_frame'] / 1e9:.2f} GFLOP ({report['nfe']} denoiser passes {f['denoiser_passes'] / 1e9:.2f}"
              f" + R_ψ step {f['reward_end_step'] / 1e9:.3f} + actor step {f['actor_step'] / 1e9:.3f}); "
              f"per sample of an update: denoiser {f['denoiser_update'] / 1e9:.2f}, reward/end "
              f"{f['reward_end_update'] / 1e9:.2f}, actor-critic {f['actor_critic_update'] / 1e9:.2f} GFLOP. "
              f"All updates of one run: {report['run_update_flops']:.3g} FLOP, i.e. "
              f"{report['run_update_flops'] / 43200 / 1e12:.0f} TFLOP/s sustained to finish them in 12 h.", ""]
    proj = report["projection"]
    lines += [f"Projected wall time of one `{report['profile']}` run ({proj['assumption']}):", "",
              "| item | count | time |", "|---|---:|---:|"]
    for k, sec in proj["seconds"].items():
        lines.append(f"| {k} | {proj['counts'][k]:,.0f} | {fmt_time(sec)} |")
    lines += [f"| **total** | | **{fmt_time(proj['total_s'])}** |",
              f"| total if every evaluation episode hits the time limit | | {fmt_time(proj['total_upper_s'])} |", "",
              f"Peak memory of a whole run (estimate): largest phase peak {fmt_bytes(report['peak_memory_bytes'])} + "
              f"replay frames {fmt_bytes(report['replay_bytes'])} (on the device under perf.replay_on_device, "
              "else in host memory).", ""]
    return "\n".join(lines)


def projection(cfg: Config, rows: list[Row], eval_episode_steps: float) -> dict[str, Any]:
    """Projected wall time of one whole run of cfg from measured rows (evaluation episodes of
    `eval_episode_steps` agent steps, capped at the time limit; the upper bound assumes every one hits it)."""
    cap = cfg.env.eval_max_episode_frames / cfg.env.frameskip  # the time limit, in agent steps
    episode_steps = min(eval_episode_steps, cap)
    counts = schedule(cfg, episode_steps)
    seconds = project(rows, counts)
    return {"assumption": f"{episode_steps:,.0f} agent steps per evaluation episode; replay sampling "
                          "measured on a small replay; imagination is part of each actor-critic update",
            "counts": counts, "seconds": seconds, "total_s": sum(seconds.values()),
            "total_upper_s": sum(project(rows, schedule(cfg, cap)).values())}


def run_benchmark(cfg: Config, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    device = resolve_device(cfg.perf.device)
    per_sample = count_flops(cfg, num_actions(cfg.env.game))
    with tempfile.TemporaryDirectory(prefix="diamond-bench-") as tmp:
        rows = benchmark(cfg, args.batch_size or cfg.training.batch_size, args.warmup, args.repeats,
                         args.collect_steps, Path(tmp))
    attach_flops(rows, per_sample, cfg.training.batch_size)
    peak, peak_op = matmul_peak(device)
    counts = schedule(cfg, args.eval_episode_steps)
    run_flops = sum(counts[f"{k}_update"] * cfg.training.batch_size * per_sample[f"{k}_update"] for k in PHASES)
    report = {
        "device": str(device), "device_name": device_name(device), "torch": torch.__version__,
        "profile": cfg.profile, "batch_size": cfg.training.batch_size,
        "measured_batch": args.batch_size or cfg.training.batch_size, "warmup": args.warmup, "repeats": args.repeats,
        "perf": {f.name: getattr(cfg.perf, f.name) for f in fields(cfg.perf)},
        "nfe": nfe(cfg.diffusion.sampler, cfg.diffusion.num_steps),
        "peak_flops": peak, "peak_op": peak_op, "flops_per_sample": per_sample,
        "rows": [{**r.__dict__, "target_seconds": r.target_seconds, "rate": r.rate} for r in rows],
        "peak_memory_bytes": max(r.peak_bytes for r in rows), "run_update_flops": run_flops,
        "replay_bytes": cfg.training.total_env_steps * 3 * cfg.env.size**2,
        "projection": projection(cfg, rows, args.eval_episode_steps),
    }
    return report, markdown(report, rows)
