"""Known errors: each is one sentence naming the file or flag at fault, printed by a CLI without a traceback.

Every CLI (diamond.train, diamond.evaluate, diamond.bench, run_suite.py) catches `KnownError` at its top and
exits with the error's `exit_code`; anything else is a bug and keeps its traceback."""

from __future__ import annotations


class KnownError(Exception):
    """A failure the user can fix from the message alone; exit status `exit_code`."""

    exit_code: int = 1
