"""A resumable toy run for the real-Slurm tests, honouring the run-folder contract in a second or two.

Its metrics and result depend only on its arguments and on the state carried by its checkpoint, so a run
that was interrupted and resumed must leave files identical to an uninterrupted one, byte for byte.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from diamond.run.io import append_jsonl, atomic_write_json, atomic_write_text, atomic_write_yaml, read_json, read_jsonl


def toy_run(run_dir: Path, steps: int = 6, step_s: float = 0.2, wait_at_step: int | None = None) -> None:
    """`steps` steps from the last checkpoint; on its first pass through `wait_at_step` the run blocks (and
    touches `.waiting_at_<step>`) until the scheduler's signal or kill ends it."""
    run_dir = Path(run_dir)
    ckpt, metrics = run_dir / "checkpoints" / "last.pt", run_dir / "metrics.jsonl"
    state = read_json(ckpt) if ckpt.is_file() else {"step": 0, "acc": 1}
    append_jsonl(run_dir / "calls.jsonl", {"start_step": state["step"], "job": os.environ.get("SLURM_JOB_ID"),
                                           "restarts": os.environ.get("SLURM_RESTART_COUNT")})
    atomic_write_yaml(run_dir / "config.yaml", {"steps": steps})
    if metrics.is_file():  # rows logged after the checkpoint are redone
        kept = [r for r in read_jsonl(metrics) if r["step"] < state["step"]]
        atomic_write_text(metrics, "".join(f"{json.dumps(r)}\n" for r in kept))
    for step in range(state["step"], steps):
        marker = run_dir / f".waiting_at_{step}"
        if step == wait_at_step and not marker.exists():
            marker.touch()
            time.sleep(300)
        time.sleep(step_s)
        state = {"step": step + 1, "acc": (state["acc"] * 31 + step) % 1_000_000_007}
        append_jsonl(metrics, {"step": step, "acc": state["acc"]})
        atomic_write_json(ckpt, state)
    atomic_write_json(run_dir / "result.json", {"steps": steps, "acc": state["acc"]})
