"""The suite's own progress while it waits: finished runs, and what each running run is doing right now.

A run is silent to the launcher until it ends (minutes to days), so every `every_s` seconds we print one line
per running run whose progress moved: the counters of its last metrics.jsonl row (epoch, step, env_steps) and
the last progress bar its job wrote to its log (e.g. "denoiser 340/1000", "rollouts 12/30"). In a terminal
the lines go above a bar of finished runs; in a log file every line is a plain, time-stamped line.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import IO, Iterable

from tqdm import tqdm

_COUNTERS = ("epoch", "step", "env_steps")
# tqdm's default format: "desc:  34%|███▍      | 340/1000 [...]"
_BAR = re.compile(r"(?:(?P<desc>[^|\r\n]*?):\s*)?\d+%\|[^|]*\|\s*(?P<n>[\d.]+[kMG]?)/(?P<total>[\d.]+[kMG]?)")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # nested tqdm bars move the cursor
_TAIL_BYTES = 16384
_MAX_LINES = 12  # per round: a 64-run array must not flood the log


def _tail(path: Path) -> str:
    """The file's last bytes (runs' files can be large; only the end tells where they are)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - _TAIL_BYTES))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def last_metrics(path: Path) -> dict:
    """The last complete JSON row of a metrics.jsonl ({} when none yet); a torn last line is skipped."""
    for line in reversed(_tail(path).splitlines()):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            return row
    return {}


def last_bar(path: Path) -> str:
    """The last progress bar a job wrote to its log, as 'desc n/total' ('' when none)."""
    for segment in reversed(re.split(r"[\r\n]", _ANSI.sub("", _tail(path)))):
        m = _BAR.search(segment)
        if m:
            desc = (m.group("desc") or "").strip()
            return f"{desc} {m.group('n')}/{m.group('total')}".strip()
    return ""


def describe(run_dir: Path, log: Path | None, state: str = "") -> str:
    """'epoch 3, env_steps 1200, denoiser 340/1000' for one running run; its Slurm state while not running."""
    if state and state not in ("RUNNING", "COMPLETING", "UNKNOWN"):
        return state.lower()
    row = last_metrics(run_dir / "metrics.jsonl")
    parts = [f"{k} {row[k]}" for k in _COUNTERS if isinstance(row.get(k), (int, float))]
    bar = last_bar(log) if log is not None else ""
    if bar:
        parts.append(bar)
    return ", ".join(parts) or "started, no progress written yet"


class SuiteProgress:
    """Finished runs as a bar (terminal) or lines (log file), plus per-run status lines every `every_s` s."""

    def __init__(self, total: int, desc: str, enabled: bool = True, every_s: float = 30.0,
                 stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled, self.every_s, self.total, self.desc = enabled, every_s, total, desc
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=total, desc=desc, unit="run", file=self.stream, disable=not self.tty)
        self.done = self.failed = 0
        self._shown: dict[str, str] = {}
        self._last = time.monotonic()

    def note(self, text: str) -> None:
        """One line about the launch itself (what was submitted, what was re-attached)."""
        if self.enabled:
            self._line(text)

    def _line(self, text: str) -> None:
        if self.tty:
            self.bar.write(text, file=self.stream)
        else:
            print(f"[{time.strftime('%H:%M:%S')}] {text}", file=self.stream, flush=True)

    def finished(self, name: str, outcome: str) -> None:
        """One run is over: outcome 'finished', 'FAILED' or 'running elsewhere'."""
        self.done += 1
        self.failed += outcome == "FAILED"
        self._shown.pop(name, None)
        if not self.enabled:
            return
        self.bar.update(1)
        self.bar.set_postfix(failed=self.failed)
        if not self.tty:
            self._line(f"{self.desc}: {self.done}/{self.total} ended ({self.failed} failed); {name} {outcome}")

    def running(self, runs: Iterable[tuple[str, Path, Path | None, str]]) -> None:
        """(name, run folder, job log, Slurm state) of each running run; prints the ones that moved."""
        if not self.enabled or time.monotonic() - self._last < self.every_s:
            return
        self._last = time.monotonic()
        moved = []
        for name, run_dir, log, state in runs:
            status = describe(run_dir, log, state)
            if self._shown.get(name) != status:
                self._shown[name] = status
                moved.append(f"  {name}: {status}")
        for line in moved[:_MAX_LINES]:
            self._line(line)
        if len(moved) > _MAX_LINES:
            self._line(f"  ... and {len(moved) - _MAX_LINES} more runs moved")

    def close(self) -> None:
        self.bar.close()
