"""tools/gpu: the CPU dry run of run.sh end to end (every step, the files it leaves), and how results.py records
steps that time out or fail and judges the targets."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "tools" / "gpu"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"gpu_{name}", GPU / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


results = _load("results")


def _released_importable() -> str | None:
    """None when the side by side can run here, else why not (what released.available says)."""
    sys.path.insert(0, str(GPU))
    try:
        return _load("released").available(ROOT / ".official")
    finally:
        sys.path.remove(str(GPU))


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("gpu-dry")
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(GPU / "run.sh"), "--cpu-dry", str(out)], capture_output=True, text=True,
                          env=env, timeout=600)
    return out, proc


def test_dry_run_runs_every_step_and_writes_the_files_to_commit(dry_run) -> None:
    out, proc = dry_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["gpu-results.json", "gpu-results.md", "gpu-run.log"]
    res = json.loads((out / "gpu-results.json").read_text())
    assert res["cpu_dry"] is True and res["command"].startswith("tools/gpu/run.sh --cpu-dry")
    steps = res["steps"]
    for name in ("setup", "ladder", "equivalence"):
        assert steps[name]["status"] == "ok", (name, steps[name], (out / "gpu-run.log").read_text()[-3000:])
    assert steps["setup"]["result"]["meta"]["compile_disabled"] is True
    assert steps["setup"]["result"]["peak_flops"] > 0
    ladder = steps["ladder"]["result"]
    assert [r["config"] for r in ladder["rungs"]] == ["plain", "+bf16", "+channels_last", "+fused_adamw", "+compile",
                                                      "+cuda_graphs", "+replay_on_device"]
    for rung in ladder["rungs"]:
        rows = {r["name"]: r for r in rung["rows"]}
        assert all(rows[k]["flops"] > 0 for k in ("denoiser_update", "actor_critic_update", "imagination"))
        assert rung["imagination_per_s"] > 0 and rung["projected_run_s"] > 3600 * rung["learner_hours"] > 0
    last = ladder["rungs"][-1]["perf"]
    assert all(last[k] for k in ("bf16", "channels_last", "fused_adamw", "compile", "cuda_graphs", "replay_on_device"))
    checks = {c["name"]: c for c in steps["equivalence"]["result"]["checks"]}
    assert set(checks) == {"loss", "denoised estimate"} and all(c["pass"] for c in checks.values())
    assert 0 < checks["denoised estimate"]["max_abs_diff"]  # bf16 really ran: the outputs are not bit-identical
    targets = res["targets"]
    assert len(targets) == 5 and all(t["measured"] is not None for t in targets[3:])
    text = (out / "gpu-results.md").read_text()
    assert text.startswith("# CPU dry run") and "| +replay_on_device |" in text and "| ladder | ok |" in text


def test_dry_run_side_by_side_with_the_released_code(dry_run) -> None:
    out, _ = dry_run
    steps = json.loads((out / "gpu-results.json").read_text())["steps"]
    why = _released_importable()
    for name in ("side_by_side_fast", "side_by_side_plain"):
        if why:
            assert steps[name]["status"] == "skipped" and steps[name]["error"] == why
            continue
        assert steps[name]["status"] == "ok", steps[name]
        res = steps[name]["result"]
        assert set(res["steps"]) == {"denoiser_update", "reward_end_update", "actor_critic_update", "imagination_step"}
        for s in res["steps"].values():
            assert s["ratio"] == pytest.approx(s["released_s"] / s["ours_s"]) and len(s["ours_rounds_s"]) == 2
        assert res["params"]["actor_critic"][0] == res["params"]["actor_critic"][1]  # the same network sizes
    if why:
        pytest.skip(why)


def test_a_step_killed_at_its_cap_keeps_what_it_recorded(tmp_path) -> None:
    results.record(tmp_path, "ladder", "running", {"rungs": []})
    results.mark(tmp_path, "ladder", 124, 200.0, 200.0)
    results.mark(tmp_path, "equivalence", 1, 3.0, 60.0)
    results.record(tmp_path, "side_by_side_fast", "ok")
    results.mark(tmp_path, "side_by_side_fast", 0, 5.0, 95.0)
    steps = results.load(tmp_path)["steps"]
    assert steps["ladder"]["status"] == "timeout" and steps["ladder"]["result"] == {"rungs": []}
    assert steps["equivalence"]["status"] == "failed" and "status 1" in steps["equivalence"]["error"]
    assert steps["side_by_side_fast"]["status"] == "ok" and steps["side_by_side_fast"]["cap_s"] == 95.0
    assert "| ladder | timeout | 200.0 (200.0) |" in (tmp_path / "gpu-results.md").read_text()


def test_targets_pass_and_fail_at_their_thresholds() -> None:
    def sbs(ratio: float) -> dict:
        return {n: {"ratio": ratio} for n in results.UPDATES}

    rungs = [{"config": "plain", "imagination_per_s": 9_999.0, "projected_run_s": 12 * 3600.0},
             {"config": "+bf16", "imagination_per_s": 10_000.0, "projected_run_s": 12 * 3600.0 - 1}]
    state = {"steps": {"side_by_side_fast": {"result": {"steps": sbs(5.0)}}, "ladder": {"result": {"rungs": rungs}}}}
    assert [t["pass"] for t in results.evaluate_targets(state)] == [True] * 5
    state["steps"]["side_by_side_fast"]["result"]["steps"] = sbs(4.99)
    rungs[1].update(imagination_per_s=9_999.9, projected_run_s=12 * 3600.0)
    assert [t["pass"] for t in results.evaluate_targets(state)] == [False] * 5
    assert [t["pass"] for t in results.evaluate_targets({"steps": {}})] == [None] * 5


def test_scripts_reject_bad_arguments(tmp_path) -> None:
    bad = subprocess.run(["bash", str(GPU / "run.sh"), "--gpu"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown option --gpu" in bad.stderr
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    missing = subprocess.run(["bash", str(GPU / "run.sh")], capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "set OUT" in missing.stderr
    not_a_checkout = subprocess.run(["bash", str(GPU / "prepare.sh"), str(tmp_path)], capture_output=True, text=True)
    assert not_a_checkout.returncode == 2 and "not a checkout of eloialonso/diamond" in not_a_checkout.stderr
