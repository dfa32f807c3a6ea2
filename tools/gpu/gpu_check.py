"""One step of the GPU evidence run (tools/gpu/run.sh runs each under its own time cap): setup (device, versions,
measured matmul rate, FLOPs per sample), the fast-path ladder, fast path vs plain on one denoiser step, and the
side by side with the released code at both sides' fastest setting and in plain fp32 eager.

Every number comes from diamond.bench (its Workload, `measure`, ladder rungs and projection); `--cpu-dry` runs the
same code at tiny sizes on the CPU. Results go to gpu-results.json / .md through tools/gpu/results.py.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import fields
from pathlib import Path
from typing import Any

import released
import results
import torch

from diamond.bench.measure import PHASES, count_flops, device_name, matmul_peak, measure, with_values, workload
from diamond.bench.ladder import LADDER, ladder_configs, ladder_rung
from diamond.loop.config import Config, build_config
from diamond.loop.envs import num_actions
from diamond.loop.trainer import Trainer
from diamond.models.diffusion.samplers import nfe

ROOT = Path(__file__).resolve().parents[2]
# Tiny sizes of the dry run: the smoke profile's networks on 32×32 frames, batch 2, a 2-step horizon.
DRY = {"perf.device": "cpu", "env.size": 32, "training.batch_size": 2, "training.imagination_horizon": 2,
       "training.reward_end_seq_len": 5}
FAST = {switch: True for _, switch in LADDER if switch}
SBS_STEPS = ("denoiser_update", "reward_end_update", "actor_critic_update", "imagination_step")


class SkipStep(Exception):
    """The step cannot run here (one sentence why); recorded as skipped, not failed."""


def base_config(dry: bool) -> Config:
    return build_config("smoke", DRY) if dry else build_config("paper", {"perf.device": "cuda"})


def sizes(dry: bool) -> dict[str, int]:
    """Measurement sizes: calls per measurement, A/B rounds, env steps collected, released-code preload."""
    if dry:
        return {"warmup": 0, "repeats": 1, "collect_steps": 20, "rounds": 2, "per_round": 1, "preload": 2}
    return {"warmup": 2, "repeats": 5, "collect_steps": 200, "rounds": 4, "per_round": 3, "preload": 256}


def bench_args(dry: bool) -> argparse.Namespace:
    s = sizes(dry)
    return argparse.Namespace(batch_size=None, warmup=s["warmup"], repeats=s["repeats"],
                              collect_steps=s["collect_steps"], eval_episode_steps=2500.0)


def _git_commit() -> str:
    """GPU_COMMIT when given (a copy of the tree without its git history), else git's answer."""
    if os.environ.get("GPU_COMMIT"):
        return os.environ["GPU_COMMIT"]
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def step_setup(cfg: Config) -> dict[str, Any]:
    device = torch.device(cfg.perf.device)
    peak, peak_op = matmul_peak(device)
    meta = {"device_name": device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None, "driver": _driver(),
            "python": platform.python_version(), "date": datetime.date.today().isoformat(), "commit": _git_commit(),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "wheels": os.environ.get("GPU_WHEELS", "").split(), "compile_disabled": os.environ.get(
                "TORCH_COMPILE_DISABLE") == "1"}
    return {"meta": meta, "peak_flops": peak, "peak_op": peak_op,
            "flops_per_sample": count_flops(cfg, num_actions(cfg.env.game))}


def step_ladder(cfg: Config, dry: bool, out: Path) -> dict[str, Any]:
    """Rung by rung, recording after each. The first (plain) rung also measures collection, evaluation and
    checkpoints; each rung's whole-run projection is its learner time plus those (the switches barely touch them)."""
    setup = results.load(out)["steps"].get("setup", {}).get("result", {})
    args = bench_args(dry)
    res = {"profile": cfg.profile, "batch_size": cfg.training.batch_size, "warmup": args.warmup,
           "repeats": args.repeats, "nfe": nfe(cfg.diffusion.sampler, cfg.diffusion.num_steps),
           "peak_flops": setup.get("peak_flops"), "peak_op": setup.get("peak_op"), "rungs": []}
    other_s = 0.0
    for i, (label, rung_cfg) in enumerate(ladder_configs(cfg)):
        rung = ladder_rung(label, rung_cfg, args, setup.get("flops_per_sample"), learners_only=i > 0)
        if i == 0:
            other_s = rung["projection"]["total_s"] - 3600 * rung["learner_hours"]
            res["other_s"] = other_s
        rung["projected_run_s"] = 3600 * rung["learner_hours"] + other_s
        res["rungs"].append(rung)
        results.record(out, "ladder", "running", res)
    return res


def step_equivalence(cfg: Config, dry: bool) -> dict[str, Any]:
    """Plain fp32 and the full fast path with the same weights (zero-initialised layers filled with the same random
    values): one EDM training step's loss and denoised estimate on the same batch, σ and noise."""
    outs = {}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        plain = Trainer(cfg, Path(tmp) / "plain")
        fast = Trainer(with_values(cfg, FAST), Path(tmp) / "fast")
        plain.collect(sizes(dry)["collect_steps"] + 4 * cfg.training.reward_end_seq_len, uniform=True, desc="frames")
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():  # zero-initialised output layers would make both outputs exactly 0
            for param in plain.agent.world_model.parameters():
                if not param.any():
                    param.copy_(0.02 * torch.randn(param.shape, generator=gen))
        fast.agent.world_model.load_state_dict(plain.agent.world_model.state_dict())
        d = cfg.diffusion
        obs, seg = plain._segments(d.num_history + 1, PHASES["denoiser"])
        target, cond = obs[:, -1], (obs[:, :-1], seg.act[:, :-1])
        for name, trainer in (("plain", plain), ("fast", fast)):
            wm = trainer.agent.world_model.train()
            gen = torch.Generator(trainer.device).manual_seed(1234)
            with trainer.learner._amp(trainer.device):
                per_sample, denoised = wm.paradigm.training_loss(wm._inner, target, cond, generator=gen)
            outs[name] = (per_sample.float().mean().detach(), denoised.float().detach())
    checks = []
    for i, (quantity, rtol) in enumerate((("loss", 2e-2), ("denoised estimate", 5e-2))):
        ref, got = outs["plain"][i], outs["fast"][i]
        diff, scale = (got - ref).abs().max().item(), max(ref.abs().max().item(), 1e-3)
        checks.append({"name": quantity, "max_abs_diff": diff, "scale": scale, "rtol": rtol,
                       "pass": bool(diff <= rtol * scale)})
    return {"fast": " + ".join(FAST), "checks": checks}


def step_side_by_side(cfg: Config, dry: bool, fast: bool, root: Path) -> dict[str, Any]:
    """A/B in one process: each round times every step of one side then the other (order alternating by round)."""
    why = released.available(root)
    if why:
        raise SkipStep(why)
    s = sizes(dry)
    ours_cfg = with_values(cfg, FAST) if fast else cfg
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = workload(ours_cfg, cfg.training.batch_size, s["collect_steps"], Path(tmp))
        device = work.trainer.device
        theirs = released.released_workload(root, cfg, work.trainer.replay, work.trainer.num_actions, device, fast,
                                            s["preload"])
        sides = {"released": theirs.steps, "ours": work.steps}
        for side in sides.values():
            for name in SBS_STEPS:
                measure(side[name], device, s["warmup"], 1)
        times: dict[str, dict[str, list[float]]] = {n: {"released": [], "ours": []} for n in SBS_STEPS}
        for r in range(s["rounds"]):
            for side in (("released", "ours") if r % 2 == 0 else ("ours", "released")):
                for name in SBS_STEPS:
                    times[name][side].append(measure(sides[side][name], device, 0, s["per_round"])[0])
        agent = work.trainer.agent
        ours_params = {"denoiser": agent.world_model, "rew_end_model": agent.reward_end,
                       "actor_critic": agent.actor_critic}
    batch = cfg.training.batch_size
    steps = {}
    for name, t in times.items():
        per_call = batch if name == "imagination_step" else 1
        rel, ours = statistics.median(t["released"]), statistics.median(t["ours"])
        steps[name] = {"released_s": rel, "ours_s": ours, "released_per_s": per_call / rel,
                       "ours_per_s": per_call / ours, "ratio": rel / ours, "released_rounds_s": t["released"],
                       "ours_rounds_s": t["ours"]}
    on = [f.name for f in fields(ours_cfg.perf) if getattr(ours_cfg.perf, f.name) is True]
    return {"ours_setting": " + ".join(on) if on else "plain fp32 eager",
            "released_setting": "TF32 matmuls + compile_wm (reduce-overhead)" if fast else "plain fp32 eager",
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "rounds": s["rounds"],
            "calls_per_round": s["per_round"], "warmup": s["warmup"], "steps": steps,
            "params": {k: [theirs.params[k], released.count_params(m)] for k, m in ours_params.items()},
            "overrides": theirs.overrides, "differs_from_release": theirs.differs_from_release}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/gpu/gpu_check.py", description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=results.STEPS)
    parser.add_argument("--out", type=Path, required=True, help="folder of gpu-results.json / .md")
    parser.add_argument("--cpu-dry", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--released", type=Path, default=ROOT / ".official",
                        help="copy of the released code made by prepare.sh (.official)")
    parser.add_argument("--command", default="", help="the command line to record")
    args = parser.parse_args(argv)
    state = results.load(args.out)
    state["cpu_dry"], state["command"] = args.cpu_dry, args.command or state.get("command", "")
    results.save(args.out, state)
    torch.manual_seed(0)
    start = time.perf_counter()
    results.record(args.out, args.step, "running")
    try:
        cfg = base_config(args.cpu_dry)
        if args.step == "setup":
            res = step_setup(cfg)
        elif args.step == "ladder":
            res = step_ladder(cfg, args.cpu_dry, args.out)
        elif args.step == "equivalence":
            res = step_equivalence(cfg, args.cpu_dry)
        else:
            res = step_side_by_side(cfg, args.cpu_dry, args.step == "side_by_side_fast", args.released)
    except SkipStep as e:
        results.record(args.out, args.step, "skipped", error=str(e), seconds=time.perf_counter() - start)
        print(f"{args.step}: skipped: {e}")
        return 0
    except Exception as e:  # noqa: BLE001 - any failure of one step is recorded and the others still run
        traceback.print_exc()
        results.record(args.out, args.step, "failed", error=f"{type(e).__name__}: {e}",
                       seconds=time.perf_counter() - start)
        return 1
    results.record(args.out, args.step, "ok", res, seconds=time.perf_counter() - start)
    print(f"{args.step}: ok in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
