"""World models entered in a suite: the suite's own model (the config's `world_model.factory`, `diamond` unless
--set changes it) and the models `--models` adds, each named by its registered name or the user's label.

A suite runs its arms on every entrant; an arm that cannot apply to a model (it declares no such paradigm, no
offset noise, no chained training: diamond/models/registry.py's declarations) is left out for that model, and the
report gives the reason. `--only-models` leaves out the suite's own model and runs only the added ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import yaml

from diamond.loop.config import build_config
from diamond.models.registry import (
    FACTORY_KEY,
    OPTIONS_KEY,
    Declarations,
    build_world_model,
    declarations,
    saved_rng,
)
from reports.common import name_key

MODELS_FLAG = "--models"
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@lru_cache(maxsize=64)
def _declared(factory: str, options: str, profile: str, overrides: tuple[str, ...], num_actions: int) -> Declarations:
    cfg = build_config(profile, [*overrides, f"{FACTORY_KEY}={factory}", f"{OPTIONS_KEY}={options}"])
    with saved_rng():
        return declarations(build_world_model(cfg, num_actions))


def declared(factory: str, options: str, profile: str, overrides: tuple[str, ...] = (),
             num_actions: int = 4) -> Declarations:
    """The declarations of the model `factory` builds (with `options`, a YAML mapping) at `profile`: built once
    through the door (so a broken plug-in is refused when a suite is planned, not after training), then cached."""
    return _declared(factory, options, profile, tuple(overrides), num_actions)


@dataclass(frozen=True)
class Entrant:
    """One world model of a suite: the label reports show, the factory that builds it and its options (YAML)."""

    label: str
    factory: str
    options: str = "{}"
    added: bool = True  # by --models; False: the suite's own model, whose runs keep their historical names

    @property
    def key(self) -> str:
        """Run-name part: the label with anything but letters, digits, '_', '.' and '-' made '-'."""
        return name_key(self.label)

    def overrides(self) -> list[str]:
        """The config keys that choose this model (after the user's --set, so they win for an added model)."""
        return [f"{FACTORY_KEY}={self.factory}", f"{OPTIONS_KEY}={self.options}"] if self.added else []

    def declarations(self, profile: str, overrides: tuple[str, ...] = ()) -> Declarations:
        """What the model supports, from one build through the registry's door (cached)."""
        return declared(self.factory, self.options, profile, overrides)


def parse_models(text: str) -> tuple[Entrant, ...]:
    """`--models A,B,...`: each a registered name, an entry point or package.module:function, optionally as
    LABEL=FACTORY and followed by its options as a YAML mapping (`rec12=recurrent{memory_frames: 12}`)."""
    out: list[Entrant] = []
    for item in _split(text):
        label, sep, rest = item.partition("=")
        if not sep or "{" in label:
            label, rest = "", item
        factory, brace, options = rest.partition("{")
        factory, options = factory.strip(), "{" + options if brace else "{}"
        label = label.strip() or factory
        try:
            parsed = yaml.safe_load(options)
        except yaml.YAMLError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ValueError(f"{MODELS_FLAG}: the options of {item!r} are not a YAML mapping like {{key: value}}")
        if not factory or not _LABEL.fullmatch(label.replace(":", ".")):
            raise ValueError(f"{MODELS_FLAG}: {item!r} is not NAME, LABEL=FACTORY or either followed by {{options}} "
                             "(labels: letters, digits, '_', '.', '-')")
        out.append(Entrant(label, factory, options))
    labels = [e.label for e in out]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{MODELS_FLAG}: each model needs its own label, got {labels}")
    return tuple(out)


def _split(text: str) -> list[str]:
    """Commas outside braces separate models (options may hold commas)."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "{") - (ch == "}")
        if ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    items = [i.strip() for i in items if i.strip()]
    if not items:
        raise ValueError(f"{MODELS_FLAG} needs at least one model name")
    return items


def suite_entrants(profile: str, overrides: tuple[str, ...], models: tuple[Entrant, ...],
                   only_models: bool) -> list[Entrant]:
    """The suite's own model (unless only_models), then the added ones; an added model that is the suite's own
    (same factory and options) is entered once."""
    cfg = build_config(profile, list(overrides))
    own = Entrant(cfg.world_model.factory, cfg.world_model.factory,
                  yaml.safe_dump(dict(cfg.world_model.options), default_flow_style=True).strip(), added=False)
    if only_models and not models:
        raise ValueError(f"--only-models needs {MODELS_FLAG}: name the models to run")
    if only_models:
        return list(models)
    return [own, *(m for m in models if (m.factory, _canon(m.options)) != (own.factory, _canon(own.options)))]


def _canon(options: str) -> str:
    return yaml.safe_dump(yaml.safe_load(options) or {}, default_flow_style=True)
