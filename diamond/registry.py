"""One door for every world model: the protocol a world model provides, and the registry that builds it by config.

A world model is an `nn.Module` (its parameters and state dict are what runs checkpoint) with:

- `num_history: int` (L): frames and actions `predict_next` sees;
- `segment_length: int`: frames per training segment `loss` takes (DIAMOND: L + train_chain; a model with
  memory asks for more, the frames before the window feeding its memory);
- `num_steps: int`, `sampler: str`, `nfe: int`: the denoising steps n, the sampler's name and the network
  evaluations per generated frame (the suites vary `num_steps` and, where a `paradigm` exists, `sampler`);
- `loss(obs [B, S, 3, H, W] in [-1, 1], act [B, S], mask [B, S] bool) -> scalar Tensor`: its training loss
  on replay segments of S = segment_length frames (padded frames are 0 and masked);
- `predict_next(obs_hist [B, L, 3, H, W], act_hist [B, L], num_steps=None, generator=None, state=None)
  -> [B, 3, H, W]`: a sample of the next frame, a_t being the last action;
- `memory(obs [B, T, 3, H, W], act [B, T], state=None) -> state`: folds T (frame, action) pairs that left
  the L-frame window into the model's memory (None: nothing seen yet). A stateless model returns None;
  a state that is not None is a Tensor whose first axis is the batch, and `memory(obs[:, :0], act[:, :0])`
  is a fresh one. Every rollout (diamond.world_model.imagine, evaluation.wm_protocol.generate, the memory
  probe) carries it: after each step, the frame leaving the window goes in.

The config key `world_model.factory` names the builder `factory(cfg, num_actions) -> world model`: a name
of `WORLD_MODELS`, a name an installed package declares in the entry-point group `diamond.world_models`,
or `package.module:function`. `world_model.options` is the factory's own settings. docs/plugins.md walks
through writing one.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any, Callable

from torch import nn

from diamond.config import ConfigError

ENTRY_POINT_GROUP = "diamond.world_models"
FACTORY_KEY = "world_model.factory"
WORLD_MODELS: dict[str, str] = {  # built-in names -> "module:function"; the first is the paper's model
    "diamond": "diamond.world_model:build_world_model",
    "recurrent": "diamond.recurrent_wm:build_recurrent_world_model",
}
PROTOCOL_ATTRIBUTES = ("num_history", "segment_length", "num_steps", "sampler", "nfe", "loss", "predict_next",
                       "memory")

Factory = Callable[[Any, int], nn.Module]


class WorldModelFactoryError(ConfigError):
    """world_model.factory names nothing buildable, or what it built breaks the protocol; names the key."""


def _entry_point_names() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_names() -> list[str]:
    """Registered names: built-in first, then those of installed packages."""
    return [*WORLD_MODELS, *(n for n in _entry_point_names() if n not in WORLD_MODELS)]


def _load(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    for part in attr.split("."):
        module = getattr(module, part)
    return module


def _resolve(spec: Any) -> Factory:
    """The builder `spec` names, or ValueError in one sentence (without the config key)."""
    hint = f"valid: {', '.join(known_names())}, or package.module:function"
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"needs a world-model name or package.module:function ({hint}), got {spec!r}")
    try:
        if spec in WORLD_MODELS:
            factory = _load(WORLD_MODELS[spec])
        elif ":" in spec:
            factory = _load(spec)
        elif spec in (eps := _entry_point_names()):
            factory = eps[spec].load()
        else:
            raise ValueError(f"{spec!r} is not a registered world model ({hint})")
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{spec!r} cannot be loaded ({type(e).__name__}: {e})") from None
    if not callable(factory):
        raise ValueError(f"{spec!r} names a {type(factory).__name__}, not a callable")
    return factory


def check_factory(spec: str) -> None:
    """The config rule of world_model.factory: it must name a loadable builder (ValueError otherwise)."""
    _resolve(spec)


def resolve_factory(spec: str) -> Factory:
    """The builder `spec` names (a registered name, an entry point, or module:function), or one sentence."""
    try:
        return _resolve(spec)
    except ValueError as e:
        raise WorldModelFactoryError(f"config key {FACTORY_KEY!r}: {e}") from None


def check_world_model(model: Any, spec: str) -> nn.Module:
    """The model, if it provides the protocol; else one sentence naming what is missing."""
    missing = [a for a in PROTOCOL_ATTRIBUTES if not hasattr(model, a)]
    if not isinstance(model, nn.Module):
        missing.insert(0, "nn.Module base (parameters, state dict)")
    if missing:
        raise WorldModelFactoryError(f"{FACTORY_KEY} {spec!r} built a {type(model).__name__} without "
                                     f"{', '.join(missing)} of the world-model protocol (docs/plugins.md)")
    L, S = model.num_history, model.segment_length
    if not (isinstance(L, int) and isinstance(S, int) and 1 <= L < S):
        raise WorldModelFactoryError(f"{FACTORY_KEY} {spec!r} built a model with num_history {L!r} and "
                                     f"segment_length {S!r}; need integers with 1 <= num_history < segment_length")
    return model


def build_world_model(cfg: Any, num_actions: int) -> nn.Module:
    """The world model the config names, checked against the protocol: what every trainer and suite calls."""
    spec = cfg.world_model.factory
    return check_world_model(resolve_factory(spec)(cfg, num_actions), spec)
