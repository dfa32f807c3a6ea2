"""tools/diag_table.py: per-epoch held-out diagnostics of several runs, from metrics.jsonl or metrics_long.csv."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from diag_table import main  # noqa: E402


def test_rows_are_the_diagnosed_epochs_of_each_run(tmp_path: Path) -> None:
    lines = [{"epoch": 1, "env_steps": 1000, "denoiser/loss": 0.1},
             {"epoch": 5, "env_steps": 1800, "diag/reward_auroc": 0.6, "diag/heldout_transitions": 200},
             {"epoch": 5, "env_steps": 1800, "eval/return": 3.0, "final": True}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    pd.DataFrame([{"epoch": 10, "env_steps": 2800, "diag/reward_auroc": 0.9, "diag/imagined_reward_auroc": 0.5,
                   "final": None}, {"epoch": 11, "env_steps": 3000, "final": None}]).to_csv(tmp_path / "m.csv")
    out = tmp_path / "t.csv"
    assert main(["--run", f"a={tmp_path / 'm.jsonl'}", "--run", f"b={tmp_path / 'm.csv'}", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table["run"]) == ["a", "b"] and list(table["epoch"]) == [5, 10]
    assert list(table["diag/reward_auroc"]) == [0.6, 0.9] and table["diag/imagined_reward_auroc"].isna().tolist() == [
        True, False]
