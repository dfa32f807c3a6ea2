"""The fast-path ladder of `python -m diamond.bench --ladder`: the learner measurements of diamond.bench.measure
repeated for cumulative diamond.loop.perf switches (plain fp32 → … → replay on device), so each switch's gain is
measured alone."""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from diamond.bench.measure import (
    attach_flops,
    benchmark,
    device_name,
    fmt_bytes,
    fmt_time,
    project,
    projection,
    with_values,
)
from diamond.loop.config import Config
from diamond.loop.trainer import resolve_device, schedule

# Cumulative fast-path configurations (each adds one switch to the previous one).
LADDER: tuple[tuple[str, str | None], ...] = (
    ("plain", None), ("+bf16", "perf.bf16"), ("+channels_last", "perf.channels_last"),
    ("+fused_adamw", "perf.fused_adamw"), ("+compile", "perf.compile"), ("+cuda_graphs", "perf.cuda_graphs"),
    ("+replay_on_device", "perf.replay_on_device"),
)

def ladder_configs(cfg: Config) -> list[tuple[str, Config]]:
    """The cumulative fast-path configurations of LADDER, each a validated copy of cfg."""
    values: dict[str, Any] = {}
    out = []
    for label, switch in LADDER:
        if switch:
            values[switch] = True
        out.append((label, with_values(cfg, values)))
    return out


def ladder_rung(label: str, cfg: Config, args: argparse.Namespace, per_sample: dict[str, int] | None = None,
                learners_only: bool = True) -> dict[str, Any]:
    """One rung: the learner rows (with FLOPs when `per_sample` is given), their share of a whole run, and, unless
    `learners_only`, the whole-run projection with collection, evaluation and checkpoints measured too."""
    with tempfile.TemporaryDirectory(prefix="diamond-bench-") as tmp:
        rows = benchmark(cfg, args.batch_size or cfg.training.batch_size, args.warmup, args.repeats,
                         args.collect_steps, Path(tmp), learners_only=learners_only)
    if per_sample is not None:
        attach_flops(rows, per_sample, cfg.training.batch_size)
    counts = schedule(cfg, args.eval_episode_steps)
    base = {k: v for k, v in counts.items() if not k.startswith(("collect", "eval", "checkpoint"))}
    by = {r.name: r for r in rows}
    result = {"config": label, "perf": {f.name: getattr(cfg.perf, f.name) for f in fields(cfg.perf)},
              "rows": [{**r.__dict__, "target_seconds": r.target_seconds, "rate": r.rate} for r in rows],
              "learner_hours": sum(project(rows, base).values()) / 3600,
              "peak_memory_bytes": max(r.peak_bytes for r in rows),
              **{f"{k}_per_s": by[k].rate for k in ("denoiser_update", "reward_end_update", "actor_critic_update",
                                                   "imagination")}}
    if not learners_only:
        result["projection"] = projection(cfg, rows, args.eval_episode_steps)
    return result


def ladder_markdown(cfg: Config, args: argparse.Namespace, results: list[dict[str, Any]]) -> str:
    device = resolve_device(cfg.perf.device)
    lines = [f"Ladder on **{device_name(device)}**, torch {torch.__version__}, profile `{cfg.profile}`, batch "
             f"{cfg.training.batch_size} (measured at {args.batch_size or cfg.training.batch_size}); learner phases "
             "of a whole run only (collection, evaluation and checkpoints excluded).", "",
             "| configuration | denoiser steps/s | reward/end steps/s | actor-critic steps/s | imagined frames/s "
             "| learner time of a run | gain vs previous | peak memory |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    prev = None
    for r in results:
        gain = "" if prev is None else f"×{prev / r['learner_hours']:.2f}"
        lines.append(f"| {r['config']} | {r['denoiser_update_per_s']:.3g} | {r['reward_end_update_per_s']:.3g} | "
                     f"{r['actor_critic_update_per_s']:.3g} | {r['imagination_per_s']:,.0f} | "
                     f"{fmt_time(3600 * r['learner_hours'])} | {gain} | {fmt_bytes(r['peak_memory_bytes'])} |")
        prev = r["learner_hours"]
    return "\n".join(lines) + "\n"


def run_ladder(cfg: Config, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The learner rows and the projected run time for each cumulative fast-path configuration."""
    results = [ladder_rung(label, step_cfg, args) for label, step_cfg in ladder_configs(cfg)]
    return {"device_name": device_name(resolve_device(cfg.perf.device)), "torch": torch.__version__,
            "profile": cfg.profile, "ladder": results}, ladder_markdown(cfg, args, results)
