"""Field rules of the config: each config field's type and valid range, checked when the config is built.

A rule turns a value from YAML or a `--set` override into the field's type, or raises ConfigError in one
sentence naming the dotted key, what it accepts, and what it got. diamond/loop/config.py holds one table
(FIELD_RULES) with a rule for every field of every config dataclass; tests/test_config.py checks that the
table covers every field and that each field rejects `wrong_type()` and `out_of_range()`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from diamond.run.errors import ConfigError


def _fail(key: str, wants: str, value: Any) -> ConfigError:
    return ConfigError(f"config key {key!r} must be {wants}, got {value!r}")


@dataclass(frozen=True)
class Int:
    """An integer in [lo, hi] (booleans and floats refused: `3.5` or `true` is not a count)."""

    lo: int
    hi: int

    def describe(self) -> str:
        return f"an integer in [{self.lo}, {self.hi}]"

    def coerce(self, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            raise _fail(key, self.describe(), value)
        return value

    def wrong_type(self) -> Any:
        return "abc"

    def out_of_range(self) -> Any:
        return self.lo - 1


@dataclass(frozen=True)
class Float:
    """A finite number in [lo, hi] (or (lo, hi] with `lo_open`); integers and numeric strings such as `1e-4`
    (which YAML reads as a string) are taken as floats."""

    lo: float
    hi: float
    lo_open: bool = False

    def describe(self) -> str:
        return f"a number in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]"

    def coerce(self, key: str, value: Any) -> float:
        number = value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise _fail(key, self.describe(), value) from None
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise _fail(key, self.describe(), value)
        number = float(number)
        if number < self.lo or number > self.hi or (self.lo_open and number == self.lo):
            raise _fail(key, self.describe(), value)
        return number

    def wrong_type(self) -> Any:
        return "abc"

    def out_of_range(self) -> Any:
        return self.lo if self.lo_open else self.lo - 1.0


@dataclass(frozen=True)
class Bool:
    """true or false, nothing else: `maybe`, `yes please` or 1 are refused, not read as true."""

    def describe(self) -> str:
        return "true or false"

    def coerce(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise _fail(key, self.describe(), value)
        return value

    def wrong_type(self) -> Any:
        return "maybe"

    def out_of_range(self) -> None:
        """A boolean has no value of the right type outside its range."""
        return None


@dataclass(frozen=True)
class Choice:
    """One name of a registry; `names` is called when checking, so a registry filled later is seen."""

    names: Callable[[], tuple[str, ...]]

    def describe(self) -> str:
        return f"one of {', '.join(self.names())}"

    def coerce(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or value not in self.names():
            raise _fail(key, self.describe(), value)
        return value

    def wrong_type(self) -> Any:
        return 3

    def out_of_range(self) -> Any:
        return "no-such-name"


@dataclass(frozen=True)
class Text:
    """A string that `check(value)` accepts (it raises ValueError in one sentence otherwise)."""

    check: Callable[[str], Any]
    wants: str
    invalid: str

    def describe(self) -> str:
        return self.wants

    def coerce(self, key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise _fail(key, self.describe(), value)
        try:
            self.check(value)
        except ValueError as e:
            raise ConfigError(f"config key {key!r}: {e}") from None
        return value

    def wrong_type(self) -> Any:
        return 3

    def out_of_range(self) -> Any:
        return self.invalid


@dataclass(frozen=True)
class Seq:
    """A list of `min_len`..`max_len` items, each checked by `item`; kept as a tuple."""

    item: Int | Float
    min_len: int = 1
    max_len: int = 8

    def describe(self) -> str:
        return f"a list of {self.min_len} to {self.max_len} items, each {self.item.describe()}"

    def coerce(self, key: str, value: Any) -> tuple:
        if not isinstance(value, (list, tuple)) or not self.min_len <= len(value) <= self.max_len:
            raise _fail(key, self.describe(), value)
        try:
            return tuple(self.item.coerce(key, v) for v in value)
        except ConfigError:
            raise _fail(key, self.describe(), value) from None

    def wrong_type(self) -> Any:
        return "abc"

    def out_of_range(self) -> Any:
        return [self.item.out_of_range()] * self.min_len


@dataclass(frozen=True)
class Optional:
    """null, or a value `rule` accepts."""

    rule: Seq

    def describe(self) -> str:
        return f"null or {self.rule.describe()}"

    def coerce(self, key: str, value: Any) -> Any:
        return None if value is None else self.rule.coerce(key, value)

    def wrong_type(self) -> Any:
        return self.rule.wrong_type()

    def out_of_range(self) -> Any:
        return self.rule.out_of_range()


@dataclass(frozen=True)
class Keywords:
    """A mapping of keyword arguments whose names `allowed()` lists (the values are the callee's to check)."""

    allowed: Callable[[], tuple[str, ...]]

    def describe(self) -> str:
        names = self.allowed()
        return f"a mapping with keys among {', '.join(names)}" if names else "an empty mapping"

    def coerce(self, key: str, value: Any) -> dict:
        if not isinstance(value, dict) or not set(value) <= set(self.allowed()):
            raise _fail(key, self.describe(), value)
        return dict(value)

    def wrong_type(self) -> Any:
        return "abc"

    def out_of_range(self) -> Any:
        return {"no_such_argument": 1}


def registry_names(module: str, registry: str) -> Any:
    """The keys of a registry, read when a value is checked (the registries import torch: not at import time)."""
    import importlib

    return lambda: tuple(getattr(importlib.import_module(module), registry))


def history_kwargs() -> tuple[str, ...]:
    """Keyword arguments a history conditioning takes beyond the ones the world model passes itself."""
    import inspect

    from diamond.models.nets.history import HISTORY_CONDITIONINGS

    own = {"self", "num_actions", "num_history", "num_levels", "img_channels", "sigma_data"}
    return tuple(sorted({p for cls in HISTORY_CONDITIONINGS.values()
                         for p in inspect.signature(cls.__init__).parameters} - own))


def check_game(game: str) -> None:
    from diamond.loop.envs import validate_game

    validate_game(game)


def check_device(device: str) -> None:
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise ValueError(f"perf.device must be auto, cpu, cuda or cuda:N, got {device!r}")


Rule = Int | Float | Bool | Choice | Text | Seq | Optional | Keywords
