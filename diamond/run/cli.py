"""One error path for every command line (diamond.train, diamond.evaluate, diamond.bench, run_suite.py).

Usage, at the bottom of a CLI module:

    def main(argv: list[str]) -> int: ...            # parse argv, do the work, return an exit status
    if __name__ == "__main__":
        raise SystemExit(run_cli("python -m diamond.train", main))

`run_cli(prog, main, argv=None)` calls `main(argv)` (argv defaults to sys.argv[1:], with `--debug` removed)
and turns every failure a user can act on into one line on stderr, without a traceback, and an exit status
from EXIT_STATUSES (the README's table is tested against it): a known error (`diamond.run.errors.KnownError`)
prints `<prog>: error: <message>` and exits with the error's `exit_code`. Anything else is a bug and keeps
its traceback. `--debug` anywhere on the command line, or DIAMOND_DEBUG=1 in the environment, prints the
traceback of every error too, and keeps the exit status.
"""

from __future__ import annotations

import errno
import os
import shlex
import signal
import sys
import threading
import traceback
from contextlib import contextmanager
from typing import Callable, Iterator

from diamond.run.errors import KnownError, OSRefusedError, RunLockedError, UsageError

EXIT_OS_ERROR = OSRefusedError.exit_code
EXIT_INTERRUPTED = 130
DEBUG_HELP = "--debug (or DIAMOND_DEBUG=1) also prints the traceback of an error; the exit status stays the same."

# Every exit status of every CLI, from the error classes that produce them (README's table: tests/test_bad_input.py).
EXIT_STATUSES: dict[int, str] = {
    0: "success",
    KnownError.exit_code: "a known error: a bad or corrupt file, a refused run folder, a failed or blocked run, "
                          "a report that could not be built",
    UsageError.exit_code: "a usage error: a bad flag, config value or combination (`ConfigError`), or argparse's",
    EXIT_OS_ERROR: "the operating system refused a read or write (permission denied, disk full): the file is named",
    RunLockedError.exit_code: "the run folder is held by another live process (run_suite.py: nothing failed, but "
                              "some runs are still running elsewhere)",
    EXIT_INTERRUPTED: "interrupted by Ctrl-C or SIGTERM: the message repeats the command, which resumes",
}


def exit_status_table() -> str:
    """EXIT_STATUSES as the README's markdown table."""
    rows = [f"| {code} | {what} |" for code, what in EXIT_STATUSES.items()]
    return "\n".join(["| exit | meaning |", "|---|---|", *rows])

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
        _traceback_if(debug)
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)  # one line, whatever the message
        return e.exit_code
    except KeyboardInterrupt:
        _traceback_if(debug)
        print(f"\n{prog}: interrupted; run the same command to resume: {prog} {shlex.join(args)}".rstrip(),
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:
        _traceback_if(debug)
        print(f"{prog}: error: {os_error_message(e)} (--debug shows the traceback)", file=sys.stderr)
        return EXIT_OS_ERROR


def _traceback_if(debug: bool) -> None:
    if debug:
        traceback.print_exc()
