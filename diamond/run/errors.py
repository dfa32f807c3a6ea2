"""Known errors: each is one sentence naming the file or flag at fault, printed by a CLI without a traceback.

Every CLI (diamond.train, diamond.evaluate, diamond.bench, run_suite.py) catches `KnownError` at its top and
exits with the error's `exit_code`; anything else is a bug and keeps its traceback."""

from __future__ import annotations


class KnownError(Exception):
    """A failure the user can fix from the message alone; exit status `exit_code`."""

    exit_code: int = 1


class UsageError(KnownError):
    """A bad command-line flag or value; the message names the flag."""

    exit_code = 2


class ConfigError(UsageError, ValueError):
    """An invalid configuration value or combination (a usage error: exit status 2); the message names the key."""


class WorldModelFactoryError(ConfigError):
    """world_model.factory names nothing buildable, or what it built breaks the protocol; names the key."""


class OSRefusedError(KnownError):
    """The operating system refused to create or write a path a flag names (permission denied, a file in the
    way): exit 74, like any OSError a CLI meets."""

    exit_code = 74


class RunFolderError(KnownError):
    """A run folder that cannot be used (a file, not writable, or another run's); the message names it."""


class RunIdentityError(RunFolderError):
    """The run folder holds another run (game, seed, profile or config differ); the message names the fields."""


class RunLockedError(RunFolderError):
    """Another live process holds the run folder's lock: the run is running elsewhere (exit 75, retry later)."""

    exit_code = 75
