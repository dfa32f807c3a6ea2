"""Algorithm 1 end to end on CPU: the run folder contract, kill-and-resume, finished runs, seeding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from diamond.config import build_config
from diamond.io import read_jsonl, read_yaml
from diamond.train import main, run

# An even smaller schedule than `smoke`, so several runs fit in the default test budget.
TINY = ["training.epochs=3", "training.total_env_steps=260", "training.initial_collect_steps=200",
        "training.initial_collect_max_steps=200", "training.collect_steps_per_epoch=30",
        "training.first_epoch_denoiser_steps=3", "training.first_epoch_reward_end_steps=3",
        "training.first_epoch_actor_critic_steps=2", "training.denoiser_steps=2", "training.reward_end_steps=2",
        "training.actor_critic_steps=1", "training.eval_episodes=1", "training.eval_num_envs=1",
        "env.eval_max_episode_frames=600", "training.imagination_horizon=3"]

RESULT_KEYS = {"game", "seed", "profile", "config_hash", "episode_returns", "mean_return", "score", "hns",
               "num_episodes", "env_steps", "epochs", "wall_time_s", "device", "nfe"}


class Interrupt(RuntimeError):
    pass


def test_smoke_profile_run_writes_the_run_folder(tmp_path: Path) -> None:
    """The actual `smoke` profile (no overrides) finishes on CPU and writes every file of the contract."""
    run_dir = tmp_path / "run"
    assert main(["--game", "Breakout", "--seed", "0", "--profile", "smoke", "--out", str(run_dir)]) == 0
    result = json.loads((run_dir / "result.json").read_text())
    assert RESULT_KEYS <= set(result)
    cfg = build_config("smoke")
    assert result["epochs"] == cfg.training.epochs and result["env_steps"] == cfg.training.total_env_steps
    assert result["num_episodes"] == cfg.training.eval_episodes == len(result["episode_returns"])
    assert result["mean_return"] == pytest.approx(sum(result["episode_returns"]) / len(result["episode_returns"]))
    assert read_yaml(run_dir / "config.yaml")["env"]["game"] == "Breakout"
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [m["epoch"] for m in metrics if not m.get("final")] == [1, 2, 3]
    assert all(k in metrics[0] for k in ("denoiser/loss", "reward_end/loss_reward", "actor_critic/loss_policy"))
    assert (run_dir / "checkpoints" / "last.pt").exists() and any((run_dir / "replay").iterdir())


def test_kill_and_resume_continues_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"

    def kill_after_first(epoch: int, trainer) -> None:
        if epoch == 1:
            raise Interrupt("simulated kill after epoch 1")

    with pytest.raises(Interrupt):
        run(run_dir, "Breakout", seed=1, profile="smoke", overrides=TINY, epoch_hook=kill_after_first)
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["replay_steps"] == 200
    assert ckpt["learner"]["steps"] == {"denoiser": 3, "reward_end": 3, "actor_critic": 2}
    assert not (run_dir / "result.json").exists()

    seen: list[tuple[int, int, dict]] = []
    result = run(run_dir, "Breakout", seed=1, profile="smoke", overrides=TINY,
                 epoch_hook=lambda e, t: seen.append((e, t.replay.num_steps, dict(t.learner.steps))))
    assert "resuming after epoch 1" in capsys.readouterr().out
    assert [s[0] for s in seen] == [2, 3]  # no repeated or lost epoch
    assert [s[1] for s in seen] == [230, 260]  # replay continues from 200 by 30 per epoch
    assert seen[-1][2] == {"denoiser": 3 + 2 * 2, "reward_end": 3 + 2 * 2, "actor_critic": 2 + 2 * 1}
    epochs = [m["epoch"] for m in read_jsonl(run_dir / "metrics.jsonl") if not m.get("final")]
    assert epochs == [1, 2, 3]
    assert result["env_steps"] == 260 and result["epochs"] == 3

    # A finished run does nothing and says so.
    mtime = (run_dir / "result.json").stat().st_mtime_ns
    again = run(run_dir, "Breakout", seed=1, profile="smoke", overrides=TINY,
                epoch_hook=lambda e, t: pytest.fail("a finished run must not train"))
    assert "already finished" in capsys.readouterr().out
    assert again == result and (run_dir / "result.json").stat().st_mtime_ns == mtime


def test_same_seed_same_run(tmp_path: Path) -> None:
    a = run(tmp_path / "a", "Pong", seed=3, profile="smoke", overrides=TINY)
    b = run(tmp_path / "b", "Pong", seed=3, profile="smoke", overrides=TINY)
    la = [{k: v for k, v in m.items() if "time" not in k} for m in read_jsonl(tmp_path / "a" / "metrics.jsonl")]
    lb = [{k: v for k, v in m.items() if "time" not in k} for m in read_jsonl(tmp_path / "b" / "metrics.jsonl")]
    assert la == lb
    assert a["episode_returns"] == b["episode_returns"] and a["config_hash"] == b["config_hash"]


def test_resume_with_other_config_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(Interrupt):
        run(run_dir, "Breakout", seed=0, profile="smoke", overrides=TINY,
            epoch_hook=lambda e, t: (_ for _ in ()).throw(Interrupt()))
    with pytest.raises(ValueError, match="different config"):
        run(run_dir, "Breakout", seed=0, profile="smoke", overrides=TINY + ["training.gamma=0.9"])


def test_cli_reports_config_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--game", "NotAGame", "--profile", "smoke", "--out", str(tmp_path / "x")]) == 2
    assert "NotAGame" in capsys.readouterr().err
