"""A resumable toy 'training run' honouring the run-folder contract, for the launcher tests.

Its checkpoint is JSON (under the contract's name checkpoints/last.pt) so that the processes the
local executor spawns need not import torch; the launcher only checks that the file exists.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from diamond.run.io import append_jsonl, atomic_write_json, atomic_write_yaml, read_json


def toy_entry(run_dir: Path, steps: int = 4, fail: bool = False, raise_at_step: int | None = None,
              hang_at_step: int | None = None, sleep_s: float = 0.0) -> None:
    """Run `steps` steps from the last checkpoint. `raise_at_step` crashes once there (a killed run, to be
    relaunched); `hang_at_step` blocks once there until the scheduler's timeout/preemption signal."""
    run_dir = Path(run_dir)
    append_jsonl(run_dir / "calls.jsonl", {"pid": os.getpid(), "t": time.time(),
                                           "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                           "setup_mark": os.environ.get("TOY_SETUP_MARK")})
    if fail:
        raise ValueError(f"toy run {run_dir.name} was told to fail")
    atomic_write_yaml(run_dir / "config.yaml", {"steps": steps, "raise_at_step": raise_at_step,
                                                "hang_at_step": hang_at_step, "sleep_s": sleep_s})
    ckpt = run_dir / "checkpoints" / "last.pt"
    start = read_json(ckpt)["step"] if ckpt.is_file() else 0
    for step in range(start, steps):
        marker = run_dir / f".interrupted_at_{step}"
        if step in (raise_at_step, hang_at_step) and not marker.exists():
            marker.touch()
            if step == raise_at_step:
                raise RuntimeError(f"simulated kill of {run_dir.name} at step {step}")
            time.sleep(120)
        append_jsonl(run_dir / "metrics.jsonl", {"step": step, "value": step * step})
        atomic_write_json(ckpt, {"step": step + 1})
        time.sleep(sleep_s)
    atomic_write_json(run_dir / "result.json", {"name": run_dir.name, "t_end": time.time(),
                                                "score": float(sum(i * i for i in range(steps)))})
