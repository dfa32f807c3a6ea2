"""Answer-block error against k of one memory-probe model at several training budgets (issue 30: what budget would
the probe need?), from each run's memory_probe.csv, beside blind (the floor's error with no cue in sight).

    python tools/memory_budget.py --probe 2000=RUN_A/memory_probe.csv --probe 5000=RUN_B/memory_probe.csv --out T.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from diamond.run.io import atomic_write_text
from evaluation.memory import FLOOR, MODEL, mean_error


def budget_table(probes: dict[int, Path]) -> pd.DataFrame:
    rows = []
    for updates, path in sorted(probes.items()):
        table = pd.read_csv(path).assign(seed=0)
        err = mean_error(table, MODEL).assign(updates=updates)
        blind = float(mean_error(table, FLOOR).set_index("k")["value"].iloc[-1])
        rows.append(err.assign(blind=blind, below_blind=err["ci_high"] < blind))
    out = pd.concat(rows, ignore_index=True)
    return out[["updates", "k", "value", "ci_low", "ci_high", "blind", "below_blind"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe", action="append", required=True, metavar="UPDATES=FILE")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    probes = {}
    for item in args.probe:
        updates, sep, file = item.partition("=")
        if not sep or not updates.isdigit() or not Path(file).is_file():
            raise SystemExit(f"--probe {item!r}: give UPDATES=FILE with a whole number and an existing file")
        probes[int(updates)] = Path(file)
    atomic_write_text(args.out, budget_table(probes).to_csv(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
