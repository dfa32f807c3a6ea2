"""reports/memory.py: where each model's probe error reaches its blind floor (issue 30, item 1)."""

from __future__ import annotations

import pandas as pd

from reports.memory import first_failure

# The frame-stack column of the committed cpu result (docs/results/ablation_memory-cpu/tables/probe.csv):
# below its floor up to k = 2, at it from k = 4 on (a frame stack of L = 4 sees only blanks there).
FRAME_STACK = [(0, 0.0015, 0.0015, 0.0016), (1, 0.0020, 0.0019, 0.0021), (2, 0.0027, 0.0025, 0.0029),
               (4, 0.0087, 0.0082, 0.0093), (8, 0.0087, 0.0082, 0.0093), (16, 0.0087, 0.0082, 0.0093)]


def _curves(rows: list[tuple[int, float, float, float]], setting: str = "model") -> pd.DataFrame:
    return pd.DataFrame([{"setting": setting, "k": k, "value": v, "ci_low": lo, "ci_high": hi}
                         for k, v, lo, hi in rows])


def test_first_failure_is_where_the_ci_reaches_up_to_the_floor() -> None:
    """A model below its floor at k = 0 has not failed there: it fails where its CI's upper end reaches the floor."""
    curves = pd.concat([_curves(FRAME_STACK[::-1]), _curves([(0, 0.5, 0.4, 0.6)], "other")])
    assert first_failure(curves, "model", floor=0.0087) == 4
    assert first_failure(curves, "model", floor=0.01) is None, "a CI that never reaches the floor: never"
    assert first_failure(curves, "model", floor=0.0010) == 0, "a model at its floor from the start"
