"""tools/budget_curve.py merges one atari100k report per update budget: its CIs are the report's, its update counts
the cpu profile's times the multiplier, and its 'learnt' verdict follows the agent's episodes, not the label."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import budget_curve  # noqa: E402

POLICIES = ("agent", "uniform", "matched", "sticky", "reward-blind")


def report_folder(root: Path, agent_mean: float, seed: int = 0) -> Path:
    """A report's two tables: 3 seeds x 8 episodes of each policy (controls around 100), two epochs of metrics."""
    rng = np.random.default_rng(seed)
    rows = [("MsPacman", s, p, e, float(rng.normal(agent_mean if p == "agent" else 100.0, 10.0)))
            for s in range(3) for p in POLICIES for e in range(8)]
    (root / "tables").mkdir(parents=True)
    pd.DataFrame(rows, columns=["game", "seed", "policy", "episode", "return"]).to_csv(
        root / "tables" / "episodes.csv", index=False)
    metrics = [{"game": "MsPacman", "seed": s, "epoch": e, "env_steps": 1000 * e, "diag/wm_over_copy": 2.0 / e,
                "diag/reward_auroc": 0.5 + 0.1 * e, "actor_critic/entropy": 2.0} for s in range(3) for e in (1, 2)]
    pd.DataFrame(metrics).to_csv(root / "tables" / "metrics_long.csv", index=False)
    return root


def test_points_merge_with_the_profiles_update_counts_and_the_learnt_rule(tmp_path: Path) -> None:
    small, large = report_folder(tmp_path / "x1", 105.0), report_folder(tmp_path / "x4", 200.0, seed=1)
    assert budget_curve.main(["--point", f"1={small}", "--point", f"4={large}", "--out", str(tmp_path / "out"),
                              "--reps", "200"]) == 0
    table = pd.read_csv(tmp_path / "out" / "tables" / "budget_vs_controls.csv").set_index("multiplier")
    assert table.loc[1.0, ["denoiser_updates", "reward_end_updates", "actor_critic_updates"]].tolist() == [590, 98, 194]
    assert table.loc[4.0, ["denoiser_updates", "reward_end_updates", "actor_critic_updates"]].tolist() == [
        2360, 392, 776]
    assert not table.loc[1.0, "learnt"] and table.loc[4.0, "learnt"]
    episodes = pd.read_csv(tmp_path / "out" / "tables" / "episodes.csv")
    assert len(episodes) == 2 * 3 * 5 * 8 and set(episodes["multiplier"]) == {1.0, 4.0}
    final = pd.read_csv(tmp_path / "out" / "tables" / "final_diagnostics.csv")
    assert final["wm_over_copy"].tolist() == [1.0] * 6 and final["reward_auroc"].round(3).tolist() == [0.7] * 6
    assert (tmp_path / "out" / "figures" / "budget_curve.png").stat().st_size > 0


def test_a_bad_point_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="MULTIPLIER=REPORT_FOLDER"):
        budget_curve.main(["--point", "x=folder", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="episodes.csv is missing"):
        budget_curve.main(["--point", f"2={tmp_path}", "--out", str(tmp_path)])
