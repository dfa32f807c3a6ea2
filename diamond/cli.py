"""One error path for every command line (diamond.train, diamond.evaluate, diamond.bench, run_suite.py).

Usage, at the bottom of a CLI module:

    def main(argv: list[str]) -> int: ...            # parse argv, do the work, return an exit status
    if __name__ == "__main__":
        raise SystemExit(run_cli("python -m diamond.train", main))

`run_cli(prog, main, argv=None)` calls `main(argv)` (argv defaults to sys.argv[1:], with `--debug` removed)
and turns every failure a user can act on into one line on stderr, without a traceback:

    exit 0    success
    exit 1    a known error (`diamond.errors.KnownError`: a bad file, a refused run folder, a failed run)
    exit 2    a usage error (a bad flag or value; also argparse's own errors)
    exit 74   the operating system refused a read or write (disk full, permission denied): the file is named
    exit 75   the run folder is locked by another process (`RunLockedError`): it is running elsewhere
    exit 130  interrupted (Ctrl-C or SIGTERM): the message repeats the command, which resumes the run

A known error prints `<prog>: error: <message>` and exits with the error's `exit_code`. Anything else is a
bug and keeps its traceback. `--debug` anywhere on the command line, or DIAMOND_DEBUG=1 in the environment,
re-raises every error with its traceback.
"""

from __future__ import annotations

import errno
import os
import shlex
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from diamond.errors import KnownError

EXIT_OS_ERROR = 74
EXIT_INTERRUPTED = 130

_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space, then run the same command to resume",
    errno.EDQUOT: "the disk quota is exceeded: free space, then run the same command to resume",
    errno.EACCES: "permission denied: check the folder's permissions or choose another path",
    errno.EPERM: "operation not permitted: check the folder's permissions or choose another path",
    errno.EROFS: "the file system is read-only: choose another path",
    errno.ENOTDIR: "a path component is a file, not a folder: choose another path",
    errno.EISDIR: "it is a folder where a file was expected",
}


def debug_requested(argv: list[str]) -> bool:
    """--debug on the command line or DIAMOND_DEBUG=1: show tracebacks."""
    return "--debug" in argv or os.environ.get("DIAMOND_DEBUG", "") not in ("", "0")


def os_error_message(e: OSError) -> str:
    """One sentence naming the file the operating system refused and what to do about it."""
    name = e.filename if e.filename is not None else "a file"
    hint = _OS_HINTS.get(e.errno or -1, e.strerror or str(e))
    return f"cannot use {name}: {hint}"


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (`kill`, a scheduler stopping us) unwinds like Ctrl-C: the launcher's cleanup cancels local jobs,
    which would otherwise outlive us and keep writing into run folders (submitit jobs ignore SIGTERM)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_cli(prog: str, main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Run `main(argv)` under the shared error path and return the exit status (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    args = [a for a in argv if a != "--debug"]
    try:
        with sigterm_as_interrupt():
            return main(args)
    except KnownError as e:
        if debug:
            raise
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)  # one line, whatever the message
        return e.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"\n{prog}: interrupted; run the same command to resume: {prog} {shlex.join(args)}".rstrip(),
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:
        if debug:
            raise
        print(f"{prog}: error: {os_error_message(e)} (--debug shows the traceback)", file=sys.stderr)
        return EXIT_OS_ERROR
