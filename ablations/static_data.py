"""Run entry: the static expert dataset of §5.1 (100k Breakout frames) as one resumable run folder.

The episodes live in `<run_dir>/dataset/` (a ReplayBuffer plus summary.json); result.json repeats
the summary (expert and random scores, size) for the report. Collection is cached by
`collect_static_dataset`, so a rerun after a crash restarts the (minutes-long) collection and a
finished one is never redone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ablations.breakout_expert import collect_static_dataset
from diamond.run.io import atomic_write_json, read_json
from diamond.run.rundir import locked_run

DATASET_SUBDIR = "dataset"
EXPERT_GAMES = ("Breakout",)  # games with a scripted expert


def dataset_dir(run_dir: str | Path) -> Path:
    """Where a static_data run keeps its episodes (what ablations.static_wm reads)."""
    return Path(run_dir) / DATASET_SUBDIR


@locked_run
def run(run_dir: str | Path, game: str = "Breakout", num_frames: int = 100_000, seed: int = 0,
        epsilon: float = 0.03, random_games: int = 10) -> dict[str, Any]:
    """Collect (or reuse) the expert dataset and write result.json last."""
    if game not in EXPERT_GAMES:
        raise ValueError(f"no scripted expert for {game!r}: static datasets can be collected for "
                         f"{', '.join(EXPERT_GAMES)} only.")
    result_path = Path(run_dir) / "result.json"
    if result_path.is_file():
        return read_json(result_path)
    summary = collect_static_dataset(dataset_dir(run_dir), num_frames=num_frames, seed=seed, epsilon=epsilon,
                                     random_games=random_games)
    result = {**summary, "dataset_dir": str(dataset_dir(run_dir))}
    atomic_write_json(result_path, result)
    return result
