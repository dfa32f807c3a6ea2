"""Tables of a folder of tools/measure_reward_model.py results: tables/auroc.csv (one row per measurement: game,
head, when its held-out games were played, updates, held-out events, AUROC, mean p(event) on event and non-event steps, recall) and tables/curve.csv
(the same against updates, where measured with --every).

    python tools/reward_model_tables.py docs/results/reward-model-cpu
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

COLUMNS = ("reward_auroc", "reward_p_event", "reward_p_nonevent", "reward_recall", "reward_precision")


def head_of(result: dict) -> str:
    """'released' when the run switched both cpu options off, 'cpu' for the profile's R_ψ."""
    re = result["config"]["reward_end"]
    return "cpu" if re["prior_offset"] and re["frame_difference"] else "released" if not (
        re["prior_offset"] or re["frame_difference"]) else "partial"


def tables(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, curve = [], []
    for path in sorted((folder / "raw").glob("*.json")):
        r = json.loads(path.read_text())
        # held-out games: played before the training games (this tool now), or after them (its first version)
        key = {"game": r["game"], "seed": r["seed"], "head": head_of(r), "heldout": "before" if "curve" in r else "after"}
        rows.append({**key, "updates": r["updates"], "train_steps": r["train_steps"],
                     "heldout_transitions": r["heldout_transitions"], "heldout_reward_events": r["heldout_reward_events"],
                     **{c: r[c] for c in COLUMNS}})
        curve += [{**key, "updates": c["updates"], **{k: c[k] for k in COLUMNS}} for c in r.get("curve", [])]
        curve.append({**key, "updates": r["updates"], **{c: r[c] for c in COLUMNS}})
    return pd.DataFrame(rows), pd.DataFrame(curve).sort_values(["game", "head", "heldout", "updates"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="holds raw/*.json; tables/ is written beside it")
    folder = p.parse_args().folder
    auroc, curve = tables(folder)
    (folder / "tables").mkdir(exist_ok=True)
    auroc.to_csv(folder / "tables" / "auroc.csv", index=False, float_format="%.4f")
    curve.to_csv(folder / "tables" / "curve.csv", index=False, float_format="%.4f")
    print(auroc.to_string(index=False))


if __name__ == "__main__":
    main()
