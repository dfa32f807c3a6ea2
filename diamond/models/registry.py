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
  is a fresh one. Every rollout (diamond.models.world_model.imagine, evaluation.wm_protocol.generate, the memory
  probe) carries it: after each step, the frame leaving the window goes in.

The config key `world_model.factory` names the builder `factory(cfg, num_actions) -> world model`: a name
of `WORLD_MODELS`, a name an installed package declares in the entry-point group `diamond.world_models`,
or `package.module:function`. `world_model.options` is the factory's own settings. docs/plugins.md walks
through writing one.

What a model supports (`Declarations`, read by `declarations`): optional attributes with defaults, so that a
suite leaves out, with a reason, the arms that cannot apply to a model instead of training them to no effect:
`samplers` (default: its own `sampler` only), `paradigms` (the `diffusion.paradigm` values it trains under;
default none), `offset_noise` and `chained_training` (whether it reads the offset-noise keys and
`diffusion.train_chain`; default False), `config_fields` (the dotted config keys it reads besides
`world_model.options`, which reports show as its settings; default none).

Checked at the door: a name that cannot be loaded or called as factory(cfg, num_actions) fails when the config
is built; a builder's ValueError/TypeError/KeyError, a missing protocol member, and a tiny batch-1 call of
`loss`, `memory` and `predict_next` that raises or answers the wrong type or shape fail when the model is built.
Each is one sentence (WorldModelFactoryError, a ConfigError: exit 2); commands build and probe the model before
they claim a run folder (check_buildable).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, NoReturn

import torch
from torch import Tensor, nn

from diamond.run.errors import KnownError, WorldModelFactoryError

ENTRY_POINT_GROUP = "diamond.world_models"
FACTORY_KEY = "world_model.factory"
OPTIONS_KEY = "world_model.options"
WORLD_MODELS: dict[str, str] = {  # built-in names -> "module:function"; the first is the paper's model
    "diamond": "diamond.models.world_model:build_world_model",
    "recurrent": "diamond.models.recurrent_wm:build_recurrent_world_model",
}
PROTOCOL_ATTRIBUTES = ("num_history", "segment_length", "num_steps", "sampler", "nfe", "loss", "predict_next",
                       "memory")

Factory = Callable[[Any, int], nn.Module]


@dataclass(frozen=True)
class Declarations:
    """What a world model says it supports (docs/plugins.md, "Declaring what a model supports")."""

    samplers: tuple[str, ...]
    paradigms: tuple[str, ...] = ()
    offset_noise: bool = False
    chained_training: bool = False
    config_fields: tuple[str, ...] = ()


def declarations(model: Any) -> Declarations:
    """The model's optional declarations, each defaulted as documented; a wrong type is one sentence."""
    values = {"samplers": getattr(model, "samplers", (model.sampler,)), "paradigms": getattr(model, "paradigms", ()),
              "offset_noise": getattr(model, "offset_noise", False),
              "chained_training": getattr(model, "chained_training", False),
              "config_fields": getattr(model, "config_fields", ())}
    for key in ("samplers", "paradigms", "config_fields"):
        if isinstance(values[key], str) or not all(isinstance(v, str) for v in values[key]):
            raise WorldModelFactoryError(f"{type(model).__name__}.{key} must be a sequence of names, got "
                                         f"{values[key]!r} (docs/plugins.md)")
        values[key] = tuple(values[key])
    for key in ("offset_noise", "chained_training"):
        if not isinstance(values[key], bool):
            raise WorldModelFactoryError(f"{type(model).__name__}.{key} must be True or False, got {values[key]!r} "
                                         "(docs/plugins.md)")
    return Declarations(**values)


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


def _one_line(e: BaseException) -> str:
    """An exception as `Type: message` on one line (the CLI prints one sentence)."""
    return " ".join(f"{type(e).__name__}: {e}".split())


def _resolve(spec: Any) -> Factory:
    """The builder `spec` names, or ValueError in one sentence (without the config key)."""
    hint = f"valid: {', '.join(known_names())}, or package.module:function"
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"needs a world-model name or package.module:function ({hint}), got {spec!r}")
    eps = {} if spec in WORLD_MODELS or ":" in spec else _entry_point_names()
    if spec not in WORLD_MODELS and ":" not in spec and spec not in eps:
        raise ValueError(f"{spec!r} is not a registered world model ({hint})")
    try:
        factory = eps[spec].load() if spec in eps else _load(WORLD_MODELS.get(spec, spec))
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{spec!r} cannot be loaded ({_one_line(e)})") from None
    except SyntaxError as e:  # a plug-in module that does not parse: its file and line, not a traceback
        raise ValueError(f"{spec!r} cannot be loaded: {e.filename} line {e.lineno} is not valid Python "
                         f"({e.msg})") from None
    except Exception as e:  # the plug-in's module raised while it was imported
        raise ValueError(f"{spec!r} cannot be loaded: importing it raised {_one_line(e)}") from None
    if not callable(factory):
        raise ValueError(f"{spec!r} names a {type(factory).__name__}, not a callable")
    try:
        inspect.signature(factory).bind(None, 0)
    except TypeError:
        raise ValueError(f"{spec!r} names {getattr(factory, '__qualname__', factory)!s}"
                         f"{inspect.signature(factory)}, which cannot be called as factory(cfg, num_actions)") from None
    except ValueError:  # no signature to read (some built-ins): the call will tell
        pass
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


def _built(factory: Factory, cfg: Any, num_actions: int, spec: str) -> Any:
    """factory(cfg, num_actions); the exceptions of a refused option (ValueError, TypeError, KeyError) become
    one sentence naming world_model.options and keeping the builder's message."""
    try:
        return factory(cfg, num_actions)
    except KnownError:
        raise
    except (ValueError, TypeError, KeyError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e  # a KeyError's str is the key's repr
        raise WorldModelFactoryError(f"{OPTIONS_KEY} {dict(cfg.world_model.options)} refused by {FACTORY_KEY} "
                                     f"{spec!r} ({type(e).__name__}: {' '.join(str(message).split())})") from e


def saved_rng() -> Any:
    """A context that restores torch's CPU RNG (and the CUDA ones, once CUDA is in use) when it exits."""
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    return torch.random.fork_rng(devices=cuda)


def _shape(x: Any) -> str:
    if isinstance(x, Tensor):
        return f"a Tensor {list(x.shape)}"
    return "None" if x is None else f"a {type(x).__name__}"


class _Probe:
    """Calls one protocol method of a freshly built model; its exceptions and wrong answers become one sentence
    naming the plug-in, the method and what was wrong."""

    def __init__(self, model: nn.Module, spec: str) -> None:
        self.model, self.who = model, f"{FACTORY_KEY} {spec!r} built {type(model).__name__}, whose"
        self.where = ""  # the call being checked, as the messages show it

    def call(self, method: str, args: tuple[Tensor, ...], **kwargs: Any) -> Any:
        shown = ", ".join(f"[{', '.join(map(str, a.shape))}]" for a in args)
        self.where = f"{method}({shown}{', state=...' if kwargs.get('state') is not None else ''})"
        try:
            return getattr(self.model, method)(*args, **kwargs)
        except KnownError:
            raise
        except Exception as e:
            raise WorldModelFactoryError(f"{self.who} {self.where} raised {_one_line(e)} "
                                         "(docs/plugins.md)") from e

    def refuse(self, got: Any, wanted: str) -> NoReturn:
        raise WorldModelFactoryError(f"{self.who} {self.where} returned {_shape(got)}, not {wanted} "
                                     "(docs/plugins.md)")


def probe_world_model(model: nn.Module, spec: str, size: int) -> None:
    """One tiny call of `loss`, `memory` and `predict_next` (batch 1, frames of `size` pixels, no gradient),
    checked for types and shapes, so that a broken plug-in is refused at the door and not after collection
    and training. Torch's RNG streams, the modules' train/eval modes and the buffers are restored: a run
    that builds its model is bit-identical with or without the probe."""
    device = next(model.parameters(), torch.empty(0)).device
    L, S = model.num_history, model.segment_length
    obs, act = torch.zeros(1, S, 3, size, size, device=device), torch.zeros(1, S, dtype=torch.long, device=device)
    mask = torch.ones(1, S, dtype=torch.bool, device=device)
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    probe = _Probe(model, spec)
    try:
        with saved_rng(), torch.no_grad():
            loss = probe.call("loss", (obs, act, mask))
            if not (isinstance(loss, Tensor) and loss.numel() == 1 and loss.is_floating_point()):
                probe.refuse(loss, "a scalar floating-point Tensor")
            state = probe.call("memory", (obs[:, :1], act[:, :1]), state=None)
            if state is not None and not (isinstance(state, Tensor) and state.ndim >= 1 and state.shape[0] == 1):
                probe.refuse(state, "None or a Tensor whose first axis is the batch (1)")
            nxt = probe.call("predict_next", (obs[:, :L], act[:, :L]), state=state)
            if not (isinstance(nxt, Tensor) and tuple(nxt.shape) == (1, 3, size, size) and nxt.is_floating_point()):
                probe.refuse(nxt, f"the next frame, a floating-point Tensor [1, 3, {size}, {size}]")
    finally:
        for module, training in modes:
            module.training = training
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)


def build_world_model(cfg: Any, num_actions: int) -> nn.Module:
    """The world model the config names, checked against the protocol and probed with one tiny call of each
    method: what every trainer and suite calls. Every refusal is a WorldModelFactoryError (a ConfigError)."""
    spec = cfg.world_model.factory
    model = check_world_model(_built(resolve_factory(spec), cfg, num_actions, spec), spec)
    probe_world_model(model, spec, cfg.env.size)
    return model


def check_buildable(cfg: Any, num_actions: int) -> None:
    """Build and probe the model the config names, then drop it, with torch's RNG untouched: a command calls
    this before it claims a run folder, so that a refused configuration claims none."""
    with saved_rng():
        build_world_model(cfg, num_actions)
