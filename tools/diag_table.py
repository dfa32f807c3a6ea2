"""Per-epoch held-out diagnostics of several runs in one long table: which run names events in real and in imagined
frames, and when (issue 27).

    python tools/diag_table.py --run base=docs/results/atari100k-cpu-budget/x2/tables/metrics_long.csv \
        --run imagined=runs/x2i/metrics.jsonl --out docs/results/reward-end-imagined-cpu/tables/held_out.csv

A run is `LABEL=FILE`: a run folder's metrics.jsonl, or a report's tables/metrics_long.csv (one row per epoch).
Rows: label, epoch, env_steps and every `diag/` column either file has (NaN where a run did not measure it);
epochs without a diagnostic are left out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from diamond.run.io import atomic_write_text


def read_epochs(path: Path) -> pd.DataFrame:
    """One row per finished epoch (the final-evaluation line left out) of a metrics.jsonl or metrics_long.csv."""
    if path.suffix == ".jsonl":
        frame = pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
    elif path.suffix == ".csv":
        frame = pd.read_csv(path)
    else:
        raise SystemExit(f"{path}: give a metrics.jsonl or a metrics_long.csv")
    if "final" in frame:
        frame = frame[frame["final"] != True]  # noqa: E712 - NaN or True in the column
    return frame


def diag_table(runs: dict[str, Path]) -> pd.DataFrame:
    parts = []
    for label, path in runs.items():
        frame = read_epochs(path)
        cols = [c for c in frame.columns if c.startswith("diag/")]
        rows = frame.dropna(subset=[c for c in cols if c != "diag/heldout_transitions"], how="all")
        parts.append(rows[["epoch", "env_steps", *cols]].assign(run=label))
    table = pd.concat(parts, ignore_index=True)
    return table[["run", "epoch", "env_steps", *sorted(c for c in table.columns if c.startswith("diag/"))]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=FILE")
    parser.add_argument("--out", type=Path, required=True, help="CSV file")
    args = parser.parse_args(argv)
    runs = {}
    for item in args.run:
        label, sep, file = item.partition("=")
        if not sep or not Path(file).is_file():
            raise SystemExit(f"--run {item!r}: give LABEL=FILE with an existing file")
        runs[label] = Path(file)
    atomic_write_text(args.out, diag_table(runs).to_csv(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
