"""Atomic, validated file I/O shared by every layer: a run folder is the contract between them."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml

from diamond.run.errors import KnownError, OSRefusedError, UsageError


class CorruptFileError(KnownError, RuntimeError):
    """A file on disk could not be read back; the message names it."""


def _read_umask() -> int:
    """The process umask, read once: os.umask can only be read by setting it, so set it straight back."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write(path: str | os.PathLike, write_fn: Callable[[io.BufferedWriter], None]) -> Path:
    """Write through a temp file in the same folder, fsync, then rename: readers never see half a file.

    mkstemp creates the temp file 0600; it gets the mode a plain open() would give (0666 & ~umask) before
    the rename, so colleagues sharing a cluster folder can read reports, results and checkpoints."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_write_yaml(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False))


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a missing or malformed file raises one error naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        raise CorruptFileError(f"{path}: not valid JSON ({e})") from e


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file with safe_load; malformed files raise one error naming them."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, yaml.YAMLError) as e:  # ValueError: bytes that are not UTF-8 text
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise CorruptFileError(f"{path}: not valid YAML ({getattr(e, 'problem', None) or e}{where})") from e


def check_writable_folder(flag: str, path: Path) -> None:
    """A folder a command will write into: refused now, not after hours of work, if it cannot be created or
    written (a file in its place is a usage error, exit 2; the operating system's refusal exit 74)."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} is a file, not a folder; choose another {flag}")
    probe = path / f".write-test-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb"):
            pass
        probe.unlink()
    except OSError as e:
        raise OSRefusedError(f"{flag} {path} is not writable ({e.strerror}); choose another {flag}") from e


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one line; a crash can at worst leave a partial last line, which read_jsonl skips."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=_json_default) + "\n")
        f.flush()


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a metrics log; only a torn *last* line (crash mid-append) is tolerated."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()  # binary garbage: a bad line, named
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError as e:
            if i == len(lines) - 1:
                break
            raise CorruptFileError(f"{path}: line {i + 1} is not valid JSON ({e})") from e
    return out


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
