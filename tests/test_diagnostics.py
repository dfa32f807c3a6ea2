"""Diagnostics of the agent loop: held-out windows, world-model error against copy-last-frame with an exact and
a copying model, R_ψ event detection with a model that reads the answer from the frames, the measured random
baseline and its bootstrap, and a whole run writing them per epoch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from diamond.loop.data import Episode, ReplayBuffer, to_float
from diamond.loop.diagnostics import (
    TensorBoard,
    detection_counts,
    imagined_reward_detection,
    newest_windows,
    one_step_error,
    precision_recall,
    reward_end_detection,
)
from diamond.run.io import read_jsonl
from diamond.train import main
from evaluation.learning import cluster_bootstrap_mean, controls_table, diagnostics_table, episode_table
from tests.test_trainer import TINY

L = 4


def _episode(start: int, steps: int, rewards: dict[int, float] | None = None, end: bool = True) -> Episode:
    """Frame t is filled with the value (start + t) % 256, so a window's frames name their own time steps; the
    action at t is t % 3; the reward at transition t is rewards.get(t, 0)."""
    obs = np.stack([np.full((3, 8, 8), (start + t) % 256, np.uint8) for t in range(steps + 1)])
    act = np.arange(steps) % 3
    rew = np.array([(rewards or {}).get(t, 0.0) for t in range(steps)], np.float32)
    ends = np.zeros(steps, bool)
    ends[-1] = end
    return Episode.from_arrays(obs, act, rew, ends, np.zeros(steps, bool))


def _replay(*episodes: Episode) -> ReplayBuffer:
    replay = ReplayBuffer()
    for ep in episodes:
        replay.add_episode(ep)
    return replay


def test_newest_windows_hold_exactly_the_newest_transitions() -> None:
    replay = _replay(_episode(0, 10), _episode(100, 6))
    w = newest_windows(replay, 8, L + 1, torch.device("cpu"))
    assert w is not None and len(w.obs) == 8  # 6 of the last episode + the last 2 of the one before
    last = ((w.obs[:, -1, 0, 0, 0] + 1) * 127.5).round().long().tolist()
    assert sorted(last) == [9, 10, 101, 102, 103, 104, 105, 106]
    first_of_episode = [i for i, v in enumerate(last) if v == 101][0]  # transition 0 -> 1: 3 padded frames
    assert w.mask[first_of_episode].tolist() == [False, False, False, True, True]
    assert float(w.obs[first_of_episode, 0].abs().sum()) == 0.0
    assert w.act[first_of_episode, -2].item() == 0  # the action of the transition, beside its first frame
    assert newest_windows(ReplayBuffer(), 5, L + 1, torch.device("cpu")) is None


class _Scripted(nn.Module):
    """predict_next either knows the dynamics of _episode (frame value + 1) or copies the last frame."""

    num_history = L

    def __init__(self, exact: bool) -> None:
        super().__init__()
        self.exact = exact

    def predict_next(self, obs: Tensor, act: Tensor, generator: torch.Generator | None = None) -> Tensor:
        assert obs.shape[1] == L and act.shape[1] == L
        return obs[:, -1] + 1 / 127.5 if self.exact else obs[:, -1]


def test_one_step_error_separates_an_exact_model_from_copying() -> None:
    w = newest_windows(_replay(_episode(0, 30)), 20, L + 1, torch.device("cpu"))
    exact, copy = one_step_error(_Scripted(True), w), one_step_error(_Scripted(False), w)
    assert exact["diag/wm_mse"] == pytest.approx(0.0, abs=1e-10) and exact["diag/wm_over_copy"] < 1e-6
    assert copy["diag/wm_over_copy"] == pytest.approx(1.0)
    assert copy["diag/copy_last_mse"] == pytest.approx((1 / 127.5) ** 2, rel=1e-4)


class _ReadsFrames(nn.Module):
    """An R_ψ that reads the reward from the next frame's value: +1 on frames 5 and 17, 'end' on frame 30; with
    `wrong`, it predicts a reward everywhere and never an end."""

    def __init__(self, wrong: bool = False) -> None:
        super().__init__()
        self.wrong = wrong

    def forward(self, obs: Tensor, act: Tensor, nxt: Tensor, state=None):
        value = ((nxt[:, :, 0, 0, 0] + 1) * 127.5).round()
        rew_cls = torch.where((value == 5) | (value == 17), 2, 1)
        end_cls = (value == 30).long()
        if self.wrong:
            rew_cls, end_cls = torch.full_like(rew_cls, 2), torch.zeros_like(end_cls)
        return (nn.functional.one_hot(rew_cls, 3).float() * 10, nn.functional.one_hot(end_cls, 2).float() * 10,
                state)


def test_reward_end_detection_against_a_model_that_knows_the_answer() -> None:
    replay = _replay(_episode(0, 30, rewards={4: 1.0, 16: 1.0}))
    w = newest_windows(replay, 30, 8, torch.device("cpu"))
    right = reward_end_detection(_ReadsFrames(), w)
    assert (right["diag/reward_tp"], right["diag/reward_fp"], right["diag/reward_fn"]) == (2, 0, 0)
    assert right["diag/end_precision"] == right["diag/end_recall"] == 1.0
    assert right["diag/reward_p_event"] > 0.99 and right["diag/reward_p_nonevent"] < 0.01
    wrong = reward_end_detection(_ReadsFrames(wrong=True), w)
    assert wrong["diag/reward_precision"] == pytest.approx(2 / 30) and wrong["diag/reward_recall"] == 1.0
    assert wrong["diag/end_recall"] == 0.0 and np.isnan(wrong["diag/end_precision"])
    assert wrong["diag/reward_p_nonevent"] > 0.99 and wrong["diag/end_p_event"] < 0.01


def test_imagined_rewards_are_found_only_where_the_world_model_imagines_the_events() -> None:
    """Imagination of the real windows with the real actions: a world model that knows the dynamics shows R_ψ the
    frames it rewards at the right steps (AUROC 1); one that copies the last frame never does."""
    replay = _replay(_episode(0, 30, rewards={4: 1.0, 16: 1.0}))
    w = newest_windows(replay, 30, L + 6, torch.device("cpu"))
    exact = imagined_reward_detection(_Scripted(True), _ReadsFrames(), w)
    copy = imagined_reward_detection(_Scripted(False), _ReadsFrames(), w)
    assert exact["diag/imagined_reward_auroc"] == 1.0
    assert exact["diag/imagined_reward_p_event"] > 0.99 and exact["diag/imagined_reward_p_nonevent"] < 0.01
    assert copy["diag/imagined_reward_auroc"] < 0.75 and copy["diag/imagined_reward_p_event"] < 0.01


def test_detection_counts_require_the_right_sign() -> None:
    pred, target = torch.tensor([1, -1, 0, 1, 0]), torch.tensor([1, 1, 1, 0, 0])
    assert detection_counts(pred, target) == (1, 2, 2)
    assert precision_recall(1, 2, 2) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    assert all(np.isnan(precision_recall(0, 0, 0)))


def test_cluster_bootstrap_and_the_verdict() -> None:
    point, low, high = cluster_bootstrap_mean([[1.0, 3.0], [5.0, 7.0, 9.0]], reps=500)
    assert point == pytest.approx((2.0 + 7.0) / 2) and low < point < high
    assert cluster_bootstrap_mean([[2.0, 2.0], [2.0]], reps=50)[1:] == (2.0, 2.0)
    results = pd.DataFrame({"game": ["A", "A", "B", "B"], "seed": [0, 1, 0, 1],
                            "episode_returns": [[10, 11, 12], [9, 10, 11], [1, 5, 0], [2, 0, 4]],
                            "random_returns": [[1, 2, 0], [2, 1, 0], [1, 4, 2], [0, 3, 1]], "controls": None})
    table = controls_table(episode_table(results), reps=300).set_index("game")
    assert bool(table.loc["A", "above_random"]) and not bool(table.loc["B", "above_random"])
    assert table.loc["A", "episodes"] == 6
    assert not table["learnt"].any() and table.loc["A", "missing"] == "matched, sticky, reward-blind"


def test_learnt_means_above_every_control() -> None:
    """A game is learnt only when the agent's CI clears all four controls: a matched or reward-blind control
    that plays as well as the agent refutes it, even where the agent beats uniform play."""
    def run(game: str, seed: int, matched: list[float]) -> dict:
        return {"game": game, "seed": seed, "episode_returns": [10.0, 11.0, 12.0], "random_returns": [1.0, 2.0],
                "controls": {"uniform": [1.0, 2.0, 0.0], "matched": matched, "sticky": [2.0, 3.0, 1.0]}}
    results = pd.DataFrame([run("A", 0, [3.0, 2.0, 4.0]), run("A", 1, [2.0, 3.0, 3.0]),
                            run("B", 0, [10.0, 12.0, 11.0]), run("B", 1, [11.0, 12.0, 10.0])])
    blind = pd.DataFrame({"game": ["A", "A", "B", "B"], "seed": [0, 1, 0, 1],
                          "episode_returns": [[4.0, 5.0], [3.0, 4.0], [1.0, 2.0], [2.0, 1.0]]})
    episodes = episode_table(results, blind)
    assert set(episodes["policy"]) == {"agent", "uniform", "matched", "sticky", "reward-blind"}
    assert len(episodes) == 4 * (3 + 3 + 3 + 3) + 4 * 2
    table = controls_table(episodes, reps=300).set_index("game")
    assert table["above_random"].all()
    assert bool(table.loc["A", "learnt"]) and not bool(table.loc["B", "learnt"])  # B: its matched control ties it
    no_blind = controls_table(episode_table(results), reps=300).set_index("game")
    assert not no_blind["learnt"].any() and set(no_blind["missing"]) == {"reward-blind"}


def test_diagnostics_table_pools_event_counts_over_the_second_half() -> None:
    rows = [{"game": "G", "seed": s, "epoch": e, "diag/reward_tp": 1.0, "diag/reward_fp": float(e <= 2),
             "diag/reward_fn": 0.0, "diag/wm_over_copy": 0.5, "collect/reward_rate": 0.1} for s in (0, 1)
            for e in (1, 2, 3, 4)]
    table = diagnostics_table(pd.DataFrame(rows)).iloc[0]
    assert table["rew prec"] == 1.0 and table["rew events"] == 4 and table["wm/copy"] == 0.5


def test_a_run_writes_diagnostics_learning_curve_and_random_baseline(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert main(["--game", "Breakout", "--seed", "0", "--profile", "smoke", "--out", str(run_dir), *TINY,
                 "training.diag_every=1", "training.eval_every=1", "training.eval_every_episodes=1"]) == 0
    lines = read_jsonl(run_dir / "metrics.jsonl")
    epochs = [m for m in lines if not m.get("final")]
    assert all("diag/wm_over_copy" in m and "diag/reward_recall" in m and "diag/reward_auroc" in m for m in epochs)
    assert all("diag/imagined_reward_auroc" in m for m in epochs)
    assert epochs[0]["diag/heldout_transitions"] == 200 and epochs[1]["diag/heldout_transitions"] == 30
    assert all("eval/return" in m and len(m["eval/episode_returns"]) == 1 for m in epochs[:-1])
    assert all("collect/reward_rate" in m for m in epochs[1:])
    result = json.loads((run_dir / "result.json").read_text())
    assert sorted(result["controls"]) == ["matched", "sticky", "uniform"]
    assert all(len(v) == 2 for v in result["controls"].values())  # the smoke profile's training.control_episodes
    assert result["random_returns"] == result["controls"]["uniform"]
    assert sum(result["action_frequencies"]) == pytest.approx(1.0) and 0 <= result["action_repeat_rate"] <= 1
    assert lines[-1]["final"] and lines[-1]["eval/random_return"] == result["random_mean_return"]


def test_tensorboard_writes_scalars_when_installed(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the optional tensorboard package is not installed")
    tb = TensorBoard(tmp_path, enabled=True)
    tb.write({"a/b": 1.5, "flag": True, "bad": float("nan"), "list": [1]}, step=3)
    tb.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert TensorBoard(tmp_path / "off", enabled=False).writer is None
