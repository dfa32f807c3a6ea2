"""A run folder belongs to one run: what it is (identity), who writes it (lock), and repair on resume.

- Identity: `run.json` records the run's game, seed, profile, config hash (and config) when the folder is first
  claimed; a later command asking for another run is refused in one sentence naming the differing fields,
  whether the run finished or not (folders from before this file existed are read from result.json or
  config.yaml).
- Lock: `.lock` is held with an exclusive OS lock (flock) for the whole run, so the kernel releases it
  when the process dies (SIGKILL, Slurm preemption): there is never a stale lock to clean up. It holds the
  holder's PID and host, which a second process names when it is refused.
- Repair: `metrics.jsonl` is cut back to the epochs (or steps) the checkpoint holds, dropping torn lines,
  before a resumed run appends to it.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

from diamond.run.errors import OSRefusedError, RunFolderError, RunIdentityError, RunLockedError
from diamond.run.io import CorruptFileError, atomic_write_json, atomic_write_text, read_json, read_yaml

IDENTITY_FILE = "run.json"
LOCK_FILE = ".lock"
T = TypeVar("T")
IDENTITY_FIELDS = ("game", "seed", "profile", "config_hash")


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config mapping → {"a.b": value}, lists as tuples (so a YAML list equals a config tuple): the
    dotted keys that run folders and reports compare."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = tuple(value) if isinstance(value, list) else value
    return out


def _describe(identity: Mapping[str, Any]) -> str:
    return " ".join(f"{k} {identity.get(k)}" for k in IDENTITY_FIELDS if k != "config_hash")


def recorded_identity(run_dir: Path) -> dict[str, Any] | None:
    """What the folder says it is: run.json, else result.json, else config.yaml, else None (a new folder)."""
    for name in (IDENTITY_FILE, "result.json"):
        path = run_dir / name
        if path.is_file():
            try:
                data = read_json(path)
            except CorruptFileError as e:
                raise CorruptFileError(f"{e}; move the folder {run_dir} away to start that run again") from e
            if not isinstance(data, dict) or not data:
                raise CorruptFileError(f"{path}: not a run's record (a non-empty JSON object); move the folder "
                                       f"{run_dir} away to start that run again")
            return {k: data.get(k) for k in IDENTITY_FIELDS}
    path = run_dir / "config.yaml"
    if path.is_file():  # an unfinished run from before run.json: its config, compared key by key
        cfg = read_yaml(path)
        if not isinstance(cfg, dict):
            raise CorruptFileError(f"{path}: expected a mapping of settings, got {type(cfg).__name__}")
        return {"game": (cfg.get("env") or {}).get("game"), "seed": cfg.get("seed"), "profile": cfg.get("profile"),
                "config_hash": None}
    return None


def check_identity(run_dir: Path, identity: Mapping[str, Any], config: Mapping[str, Any] | None = None,
                   flag: str = "--out") -> None:
    """Refuse a folder that holds another run; `config` (the requested flattened config) names changed keys."""
    found = recorded_identity(run_dir)
    if found is None:
        return
    differing = [k for k in IDENTITY_FIELDS if k != "config_hash" and found.get(k) != identity.get(k)]
    parts = [f"{k} {found.get(k)!r} on disk vs {identity.get(k)!r} requested" for k in differing]
    keys = changed_config_keys(run_dir, config) if config is not None and not differing else []
    if keys:
        parts.append(f"config differs in {', '.join(keys)}")
    elif not differing and found.get("config_hash") not in (None, identity.get("config_hash")):
        parts.append(f"config hash {found.get('config_hash')} on disk vs {identity.get('config_hash')} requested")
    if parts:
        raise RunIdentityError(f"{run_dir} holds another run ({_describe(found)}): {'; '.join(parts)}; "
                               f"repeat that run's own arguments to resume it, or choose another {flag}")


def read_result(run_dir: str | os.PathLike) -> dict[str, Any]:
    """result.json of a finished run: a non-empty JSON object; anything else (`{}`, a list, garbage) is a
    corrupt file, named (the caller says what to do)."""
    path = Path(run_dir) / "result.json"
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        shown = f"a {type(data).__name__}" if not isinstance(data, dict) else "an empty object"
        raise CorruptFileError(f"{path}: not a run's result (a non-empty JSON object), got {shown}")
    return data


def changed_config_keys(run_dir: Path, requested: Mapping[str, Any], limit: int = 4) -> list[str]:
    """Dotted keys whose value in the folder's config.yaml (else the config run.json recorded) differs from
    `requested`, with both values."""
    path = run_dir / "config.yaml"
    if path.is_file():
        recorded = read_yaml(path) or {}
    else:  # a run stopped before it wrote config.yaml: the config its claim recorded in run.json, if any
        record = read_json(run_dir / IDENTITY_FILE) if (run_dir / IDENTITY_FILE).is_file() else None
        recorded = record.get("config") if isinstance(record, dict) else None
        if not isinstance(recorded, Mapping):
            return []
    on_disk = flatten(recorded)
    want = flatten(requested)
    keys = sorted(k for k in set(on_disk) | set(want) if on_disk.get(k) != want.get(k))
    out = [f"{k} ({on_disk.get(k)!r} on disk, {want.get(k)!r} requested)" for k in keys[:limit]]
    return out + ([f"and {len(keys) - limit} more"] if len(keys) > limit else [])


def lock_holder(run_dir: Path) -> str | None:
    """'pid N on host H' when a live process holds the folder's lock, else None (the launcher's status check)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder_text(path)
    finally:
        os.close(fd)
    return None


def _holder_text(path: Path, wait_s: float = 2.0) -> str:
    """The holder writes its pid just after taking the lock: a reader that lands in between waits for it."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            holder = json.loads(path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            holder = {}
        holder = holder if isinstance(holder, dict) else {}
        if "pid" in holder or time.monotonic() >= deadline:
            return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"
        time.sleep(0.02)


@contextmanager
def hold_lock(run_dir: str | os.PathLike, flag: str = "--out") -> Iterator[Path]:
    """Hold the folder's exclusive lock while the block runs; a second holder fails at once, naming the first."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"{flag} {run_dir} is a file, not a run folder; choose another {flag}")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:  # exit 74, as every refusal of the operating system (diamond/run/cli.py)
        raise OSRefusedError(f"{flag} {run_dir} cannot be written ({e.strerror}); fix its permissions or "
                             f"choose another {flag}") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(f"{run_dir} is in use by {_holder_text(run_dir / LOCK_FILE)} (its lock "
                                 f"{run_dir / LOCK_FILE}); the run is going on there: wait for it, or stop "
                                 "that process first") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        yield run_dir
    finally:
        os.close(fd)  # releases the lock; the file stays (unlinking it would race a process opening it)


def record_identity(run_dir: Path, identity: Mapping[str, Any], config: Mapping[str, Any] | None = None,
                    flag: str = "--out") -> None:
    """Check the folder is this run's (check_identity), then record it in run.json if not yet recorded."""
    check_identity(run_dir, identity, config, flag)
    if not (run_dir / IDENTITY_FILE).is_file():  # with the config, so a later refusal can name the keys that differ
        extra = {} if config is None else {"config": dict(config)}
        atomic_write_json(run_dir / IDENTITY_FILE, {**{k: identity.get(k) for k in IDENTITY_FIELDS}, **extra})


@contextmanager
def claim(run_dir: str | os.PathLike, identity: Mapping[str, Any], config: Mapping[str, Any] | None = None,
          flag: str = "--out") -> Iterator[Path]:
    """Lock `run_dir` for this process, check and record its identity; the lock goes with the process."""
    with hold_lock(run_dir, flag) as path:
        record_identity(path, identity, config, flag)
        yield path


def repair_metrics(path: Path, upto: int, key: str = "epoch") -> str | None:
    """Keep only the lines a checkpoint at `key` = `upto` accounts for; say what was dropped, or None.

    Lines past the checkpoint, the closing `final` line and torn (non-JSON) lines are dropped: the resumed
    run writes them again, so every epoch ends up exactly once."""
    if not path.is_file():
        return None
    kept, dropped, torn = [], 0, 0
    for raw in path.read_bytes().splitlines():  # bytes: binary garbage (a torn write, a disk error) is a torn line
        try:
            line = raw.decode("utf-8")
            record = json.loads(line) if line.strip() else None
            step = record.get(key, upto + 1) if isinstance(record, dict) else None
            if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
                raise ValueError(f"{key} {step!r} is not an integer")
        except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            torn += 1
            continue
        if record is None:
            continue
        if isinstance(record, dict) and not record.get("final") and step <= upto:
            kept.append(line)
        else:
            dropped += 1
    if not dropped and not torn:
        return None
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))
    return (f"{path}: kept the {len(kept)} lines up to {key} {upto} (the checkpoint), dropped {dropped} "
            f"written after it and {torn} torn line(s)")


def locked_run(entry: Callable[..., T]) -> Callable[..., T]:
    """Decorate a launcher entry `entry(run_dir, ...)` so that it holds the run folder's lock while it runs."""

    @functools.wraps(entry)
    def wrapper(run_dir: str | os.PathLike, *args: Any, **kwargs: Any) -> T:
        with hold_lock(run_dir, flag="run folder"):
            return entry(run_dir, *args, **kwargs)

    return wrapper
