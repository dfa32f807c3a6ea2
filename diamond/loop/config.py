"""Plain-dataclass configuration: defaults are the paper's Tables 2–3 (the `paper` profile), other
profiles are data (dotted overrides), and invalid combinations fail here, when the config is built."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from diamond.loop.fields import (
    Bool,
    Choice,
    Float,
    Int,
    Keywords,
    Optional,
    Rule,
    Seq,
    Text,
    check_device,
    check_game,
    history_kwargs,
    registry_names,
)
from diamond.loop.profiles import GAME_OVERRIDES, PROFILES  # noqa: F401 (re-exported: profiles are data)
from diamond.models.diffusion.paradigms import DDPMConfig, EDMConfig
from diamond.run.errors import ConfigError


@dataclass
class EnvConfig:
    """Atari 100k protocol (Table 3)."""

    game: str = "Breakout"
    size: int = 64
    frameskip: int = 4
    noop_max: int = 30
    max_episode_frames: int = 108_000
    eval_max_episode_frames: int = 108_000
    pool_first_frame: bool = False  # released: a game's first frame is the last raw frame alone, later ones max-pooled


@dataclass
class DiffusionConfig:
    """World-model axes the ablations vary: paradigm × sampler × NFE × history conditioning."""

    paradigm: str = "edm"
    sampler: str = "euler"
    num_steps: int = 3
    history: str = "frame_stack"
    num_history: int = 4  # L
    train_chain: int = 2  # released code chains 2 predictions per segment; the paper's Alg. 1 has 1
    edm: EDMConfig = field(default_factory=EDMConfig)
    ddpm: DDPMConfig = field(default_factory=DDPMConfig)


@dataclass
class DenoiserNetConfig:
    channels: tuple[int, ...] = (64, 64, 64, 64)
    depths: tuple[int, ...] = (2, 2, 2, 2)
    cond_dim: int = 256
    bottleneck_attention: bool = True
    attention_residual: str = "normed"  # released code: attention output added to the normed input; "input": x + attn
    history_kwargs: dict = field(default_factory=dict)  # extra arguments of the history module, e.g. encoder_channels


@dataclass
class RewardEndNetConfig:
    channels: tuple[int, ...] = (32, 32, 32, 32)
    depths: tuple[int, ...] = (2, 2, 2, 2)
    cond_dim: int = 128
    lstm_dim: int = 512
    bottleneck_attention: bool = True
    attention_residual: str = "normed"  # as DenoiserNetConfig.attention_residual
    frame_difference: float = 0.0  # g > 0: g * (o_{t+1} - o_t) as 3 more input channels; 0: the released input
    prior_offset: bool = False  # logits offset by the log class frequencies of the initial collection


@dataclass
class ActorCriticNetConfig:
    channels: tuple[int, ...] = (32, 32, 64, 64)
    depths: tuple[int, ...] = (1, 1, 1, 1)
    lstm_dim: int = 512


@dataclass
class OptimConfig:
    """AdamW (Table 3) with the released code's linear warm-up and grad clipping."""

    lr: float = 1e-4
    eps: float = 1e-8
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    warmup_steps: int = 100
    warmup_from_zero: bool = False  # True: factor step/warmup_steps, first update at lr 0 (released code)


@dataclass
class TrainingConfig:
    """Algorithm 1 schedule, following the released code where it adds to Table 3."""

    epochs: int = 1000  # the run length (with final_epochs: at most)
    # the released schedule: every epoch from the first (right after the initial collection) collects
    # collect_steps_per_epoch until total_env_steps, then final_epochs more; the run length follows the initial
    # collection (diamond.loop.trainer.run_epochs). None: `epochs` epochs, the first trains right after the initial one
    final_epochs: int | None = 50
    total_env_steps: int = 100_000
    collect_steps_per_epoch: int = 100
    initial_collect_steps: int = 5_000
    initial_collect_max_steps: int = 10_000
    initial_min_reward_events: int = 10  # extend the uniform collection until this many non-zero rewards
    epsilon: float = 0.01
    recency_weights: tuple[float, ...] | None = (0.1, 0.1, 0.1, 0.7)
    batch_size: int = 32
    denoiser_steps: int = 400
    reward_end_steps: int = 400
    actor_critic_steps: int = 400
    first_epoch_denoiser_steps: int = 10_000
    first_epoch_reward_end_steps: int = 10_000
    first_epoch_actor_critic_steps: int = 5_000
    imagination_horizon: int = 15  # H
    imagination_refill: bool = True  # released: a terminated imagined env restarts from new real frames; False: masked
    reward_end_seq_len: int = 18  # transitions of a B_R + H = 19-frame segment (released code: 3 burn-in + 15)
    burn_in: int = 4  # B_{π,V} = B_R = L in practice
    gamma: float = 0.985
    lambda_: float = 0.95
    entropy_weight: float = 0.001
    eval_episodes: int = 100
    eval_every: int = 0  # epochs; 0 = only at the end (the released code: 4 test episodes every 10 epochs)
    eval_every_episodes: int = 4  # full test episodes of each intermediate evaluation (learning curve)
    diag_every: int = 10  # epochs between diagnostics on held-out real data (world model, R_ψ); 0 = never
    tensorboard: bool = True  # also write metrics to <run>/tensorboard when the tensorboard package is installed
    eval_epsilon: float = 0.0
    eval_num_envs: int = 8
    collect_temperature: float = 1.0  # real-env collection samples softmax(logits / T) (IRIS App. H; GAME_OVERRIDES)
    control_episodes: int = 100  # full test games of each screen-blind control after the final evaluation
    shuffle_imagined_rewards: bool = False  # the reward-blind control: imagined rewards permuted over the batch
    # fraction of each R_ψ batch whose frames after the first L are the world model's open-loop imagination under the
    # real actions, labels still the real rewards (0 = the paper: R_ψ sees real frames only)
    reward_end_imagined: float = 0.0


@dataclass
class PerfConfig:
    """Fast-path switches; every one off is the plain reference path."""

    device: str = "auto"
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    fused_adamw: bool = False
    cuda_graphs: bool = False  # capture the imagination step (n-step sampling + R_ψ) as one CUDA graph
    tf32: bool = True  # released: TF32 matmuls on CUDA (torch.backends.cuda.matmul.allow_tf32), set when a run starts
    replay_on_device: bool = False


@dataclass
class WorldModelConfig:
    """Which world model every trainer and suite builds (diamond/models/registry.py, docs/plugins.md)."""

    factory: str = "diamond"  # a registered name (diamond, recurrent, an entry point's) or package.module:function
    options: dict = field(default_factory=dict)  # the factory's own settings (e.g. the recurrent model's sizes)


class WorldModelOptions:
    """The rule of world_model.options: a mapping from option names to YAML scalars or lists of them; the
    chosen factory checks the names and values it takes (diamond/models/recurrent_wm.py: recurrent_options)."""

    def describe(self) -> str:
        return "a mapping from option names to numbers, strings, booleans or lists of them"

    def coerce(self, key: str, value: Any) -> dict:
        def plain(v: Any) -> bool:
            return isinstance(v, (int, float, str, bool)) or (isinstance(v, (list, tuple)) and all(map(plain, v)))

        if not isinstance(value, dict) or not all(isinstance(k, str) and k.isidentifier() and plain(v)
                                                  for k, v in value.items()):
            raise ConfigError(f"config key {key!r} must be {self.describe()}, got {value!r}")
        return dict(value)

    def wrong_type(self) -> Any:
        return "abc"

    def out_of_range(self) -> Any:
        return {"not a name": 1}


@dataclass
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    denoiser: DenoiserNetConfig = field(default_factory=DenoiserNetConfig)
    reward_end: RewardEndNetConfig = field(default_factory=RewardEndNetConfig)
    actor_critic: ActorCriticNetConfig = field(default_factory=ActorCriticNetConfig)
    denoiser_optim: OptimConfig = field(default_factory=OptimConfig)
    reward_end_optim: OptimConfig = field(default_factory=lambda: OptimConfig(max_grad_norm=100.0))
    actor_critic_optim: OptimConfig = field(default_factory=lambda: OptimConfig(weight_decay=0.0, max_grad_norm=100.0))
    training: TrainingConfig = field(default_factory=TrainingConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    profile: str = "paper"
    seed: int = 0


MAX_SEED = 10**9  # env seeds add up to 10_000 + episode index; the emulator takes 31-bit seeds
_CHANNELS, _DEPTHS = Seq(Int(1, 1024)), Seq(Int(1, 16))
_RESIDUAL = Choice(registry_names("diamond.models.nets.blocks", "ATTENTION_RESIDUALS"))
_STEPS = Int(0, 10**7)  # gradient steps of one component in one epoch
_POSITIVE = Float(0.0, 1e4, lo_open=True)

# Every field of every config dataclass: its type and valid range (diamond/loop/fields.py). A field without an
# entry cannot be set, and tests/test_config.py fails: a new field comes with its rule.
FIELD_RULES: dict[type, dict[str, Rule]] = {
    EnvConfig: {
        "game": Text(check_game, "an ALE game name such as Breakout", "Breakot"),
        "size": Int(8, 256), "frameskip": Int(1, 32), "noop_max": Int(0, 1000),
        "max_episode_frames": Int(1, 10**7), "eval_max_episode_frames": Int(1, 10**7), "pool_first_frame": Bool(),
    },
    DiffusionConfig: {
        "paradigm": Choice(registry_names("diamond.models.diffusion.paradigms", "PARADIGMS")),
        "sampler": Choice(registry_names("diamond.models.diffusion.samplers", "SAMPLERS")),
        "num_steps": Int(1, 1000),
        "history": Choice(registry_names("diamond.models.nets.history", "HISTORY_CONDITIONINGS")),
        "num_history": Int(1, 64), "train_chain": Int(1, 64),
    },
    EDMConfig: {
        "sigma_data": _POSITIVE, "p_mean": Float(-20.0, 20.0), "p_std": _POSITIVE,
        "train_sigma_min": _POSITIVE, "train_sigma_max": _POSITIVE, "sigma_offset_noise": Float(0.0, 100.0),
        "sigma_min": _POSITIVE, "sigma_max": _POSITIVE, "rho": _POSITIVE, "init_noise_scale": _POSITIVE,
        "quantize": Bool(), "s_churn": Float(0.0, 1e4), "s_tmin": Float(0.0, 1e4), "s_tmax": Float(0.0, 1e4),
        "s_noise": _POSITIVE, "eta": Float(0.0, 100.0),
    },
    DDPMConfig: {
        "num_train_timesteps": Int(2, 100_000), "beta_start": Float(0.0, 1.0, lo_open=True),
        "beta_end": Float(0.0, 1.0, lo_open=True), "single_step_start_t": Int(0, 100_000),
        "offset_noise": Float(0.0, 100.0), "sigma_data": _POSITIVE, "quantize": Bool(), "quantize_each_step": Bool(),
    },
    DenoiserNetConfig: {
        "channels": _CHANNELS, "depths": _DEPTHS, "cond_dim": Int(1, 4096), "bottleneck_attention": Bool(),
        "attention_residual": _RESIDUAL, "history_kwargs": Keywords(history_kwargs),
    },
    RewardEndNetConfig: {
        "channels": _CHANNELS, "depths": _DEPTHS, "cond_dim": Int(1, 4096), "lstm_dim": Int(1, 8192),
        "bottleneck_attention": Bool(), "attention_residual": _RESIDUAL, "frame_difference": Float(0.0, 1000.0),
        "prior_offset": Bool(),
    },
    ActorCriticNetConfig: {"channels": _CHANNELS, "depths": _DEPTHS, "lstm_dim": Int(1, 8192)},
    OptimConfig: {
        "lr": Float(0.0, 1.0, lo_open=True), "eps": Float(0.0, 1.0, lo_open=True), "weight_decay": Float(0.0, 10.0),
        "max_grad_norm": Float(0.0, 1e6, lo_open=True), "warmup_steps": Int(0, 10**7),
        "warmup_from_zero": Bool(),
    },
    TrainingConfig: {
        "epochs": Int(1, 10**6), "final_epochs": Optional(Int(0, 10**6)), "total_env_steps": Int(1, 10**9),
        "collect_steps_per_epoch": Int(0, 10**7),
        "initial_collect_steps": Int(1, 10**9), "initial_collect_max_steps": Int(1, 10**9),
        "initial_min_reward_events": Int(0, 10**6), "epsilon": Float(0.0, 1.0),
        "recency_weights": Optional(Seq(Float(0.0, 1e6), 1, 64)), "batch_size": Int(1, 65_536),
        "denoiser_steps": _STEPS, "reward_end_steps": _STEPS, "actor_critic_steps": _STEPS,
        "first_epoch_denoiser_steps": _STEPS, "first_epoch_reward_end_steps": _STEPS,
        "first_epoch_actor_critic_steps": _STEPS, "imagination_horizon": Int(1, 1000), "imagination_refill": Bool(),
        "reward_end_seq_len": Int(2, 1000), "burn_in": Int(1, 64), "gamma": Float(0.0, 1.0),
        "lambda_": Float(0.0, 1.0), "entropy_weight": Float(0.0, 100.0), "eval_episodes": Int(1, 100_000),
        "eval_every": Int(0, 10**6), "eval_every_episodes": Int(1, 10_000), "diag_every": Int(0, 10**6),
        "tensorboard": Bool(), "eval_epsilon": Float(0.0, 1.0), "eval_num_envs": Int(1, 1024),
        "collect_temperature": Float(0.0, 100.0, lo_open=True), "control_episodes": Int(1, 100_000),
        "shuffle_imagined_rewards": Bool(), "reward_end_imagined": Float(0.0, 1.0),
    },
    PerfConfig: {
        "device": Text(check_device, "auto, cpu, cuda or cuda:N", "tpu"), "bf16": Bool(), "channels_last": Bool(),
        "compile": Bool(), "fused_adamw": Bool(), "cuda_graphs": Bool(), "replay_on_device": Bool(),
        "tf32": Bool(),
    },
    WorldModelConfig: {
        "factory": Text(lambda spec: importlib.import_module("diamond.models.registry").check_factory(spec),
                        "a world-model name (diamond, recurrent, an entry point's) or package.module:function",
                        "no-such-world-model"),
        "options": WorldModelOptions(),
    },
    Config: {"profile": Choice(lambda: tuple(PROFILES)), "seed": Int(0, MAX_SEED)},
}


def build_config(profile: str = "paper", overrides: list[str] | dict[str, Any] | None = None, **top: Any) -> Config:
    """Profile defaults, the game's GAME_OVERRIDES, overrides (`a.b=c` strings or a dict), then validation."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    cfg = Config(profile=profile)
    set_dotted(cfg, PROFILES[profile])
    given = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides or {})
    given.update({k: v for k, v in top.items() if v is not None})
    set_dotted(cfg, given)
    if cfg.env.game in GAME_OVERRIDES:  # the game is known only now; explicit overrides then keep the last word
        set_dotted(cfg, GAME_OVERRIDES[cfg.env.game])
        set_dotted(cfg, given)
    validate(cfg)
    return cfg


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`a.b=c` strings → {"a.b": value}, values parsed as YAML scalars/lists (safe_load). A value safe_load refuses
    (a typo, a `!!python/...` tag) is the user's usage error, named, not a parser traceback."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form section.field=value")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            why = getattr(e, "problem", None) or type(e).__name__
            raise ConfigError(f"override {item!r}: its value is not valid YAML ({why}); give a number, true/false, "
                              "a [list], a {mapping} or a quoted string") from None
    return out


def set_dotted(cfg: Any, values: dict[str, Any], prefix: str = "") -> None:
    """Set dotted fields, coercing to the declared field's type; unknown keys fail with the valid ones."""
    for key, value in values.items():
        obj, parts, key = cfg, str(key).split("."), f"{prefix}{key}"
        for i, part in enumerate(parts):
            names = [f.name for f in dataclasses.fields(obj)]
            if part not in names:
                where = (prefix + ".".join(parts[:i])).rstrip(".") or "config"
                raise ConfigError(f"unknown config key {key!r}: {where} has fields {', '.join(names)}")
            if i == len(parts) - 1:
                setattr(obj, part, _coerce(obj, part, value, key))
            else:
                obj = getattr(obj, part)
                if not dataclasses.is_dataclass(obj):
                    raise ConfigError(f"config key {key!r}: {prefix}{'.'.join(parts[: i + 1])} is not a section")


def _coerce(obj: Any, name: str, value: Any, key: str) -> Any:
    """The value of field `name` of `obj` after its rule (FIELD_RULES): type enforced, range checked."""
    current = getattr(obj, name)
    if dataclasses.is_dataclass(current):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} is a section; give a mapping or set its fields")
        set_dotted(current, value, f"{key}.")
        return current
    rule = FIELD_RULES.get(type(obj), {}).get(name)
    if rule is None:  # a field added without a rule: tests/test_config.py fails until it has one
        raise ConfigError(f"config key {key!r} has no declared type and range in diamond/loop/config.py FIELD_RULES")
    return rule.coerce(key, value)


def check_fields(obj: Any, prefix: str = "") -> None:
    """Every field of `obj` (nested sections included) against its rule: defaults and profiles obey them too."""
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_fields(value, f"{key}.")
        else:
            setattr(obj, f.name, _coerce(obj, f.name, value, key))


def validate(cfg: Config) -> None:
    """Fail at build time, in one sentence: every field against its rule, then the combinations that cannot run."""
    from diamond.models.diffusion.paradigms import PARADIGMS
    from diamond.models.nets.blocks import GN_GROUP_SIZE, num_groups
    from diamond.models.nets.history import HISTORY_CONDITIONINGS

    check_fields(cfg)
    d, t = cfg.diffusion, cfg.training
    supported = PARADIGMS[d.paradigm].supported_samplers
    if d.sampler not in supported:
        raise ConfigError(
            f"sampler {d.sampler!r} does not apply to paradigm {d.paradigm!r}; use one of {', '.join(supported)}"
        )
    for section in ("edm", "ddpm"):  # rerun each paradigm config's own checks (e.g. churn) on the overridden values
        value = getattr(d, section)
        try:
            type(value)(**dataclasses.asdict(value))
        except ValueError as e:
            raise ConfigError(f"diffusion.{section}: {e}") from e
    if t.burn_in != d.num_history:
        raise ConfigError(
            f"training.burn_in ({t.burn_in}) must equal diffusion.num_history L ({d.num_history}): "
            "imagination starts from L real frames that also burn in the LSTMs"
        )
    import inspect

    accepted = inspect.signature(HISTORY_CONDITIONINGS[d.history].__init__).parameters
    unknown = sorted(set(cfg.denoiser.history_kwargs) - set(accepted))
    if unknown:
        raise ConfigError(f"denoiser.history_kwargs {', '.join(unknown)} do not apply to diffusion.history "
                          f"{d.history!r}")
    for section in ("denoiser", "reward_end", "actor_critic"):
        net = getattr(cfg, section)
        if len(net.channels) != len(net.depths):
            raise ConfigError(f"{section}.channels and {section}.depths must have one entry per U-Net level, got "
                              f"{len(net.channels)} and {len(net.depths)}")
        factor = 2 ** (len(net.channels) - (section != "actor_critic"))  # the actor-critic also pools its last level
        if cfg.env.size % factor:
            raise ConfigError(f"env.size ({cfg.env.size}) must be divisible by {factor} for the "
                              f"{len(net.channels)} levels of {section}.channels")
        odd = [c for c in net.channels if c % num_groups(c)]
        if odd:
            raise ConfigError(f"{section}.channels {odd[0]} does not split into GroupNorm groups of about "
                              f"{GN_GROUP_SIZE} channels evenly: use at most {GN_GROUP_SIZE}, or e.g. 64, 96, 128")
    if cfg.denoiser.cond_dim % d.num_history or cfg.denoiser.cond_dim % 2:
        raise ConfigError(f"denoiser.cond_dim ({cfg.denoiser.cond_dim}) must be even and divisible by "
                          f"diffusion.num_history ({d.num_history}): each of the L action embeddings has cond_dim / L")
    if t.final_epochs is not None and t.collect_steps_per_epoch < 1:
        raise ConfigError("training.final_epochs (the released schedule) needs training.collect_steps_per_epoch >= 1; "
                          "set training.final_epochs=null to run training.epochs epochs")
    if t.reward_end_seq_len <= t.burn_in:
        raise ConfigError("training.reward_end_seq_len (B_R + H) must exceed training.burn_in (B_R)")
    if t.initial_collect_steps > t.total_env_steps:
        raise ConfigError("training.initial_collect_steps exceeds training.total_env_steps")
    if t.initial_collect_max_steps < t.initial_collect_steps:
        raise ConfigError("training.initial_collect_max_steps must be >= training.initial_collect_steps")


# Fields added after runs were made, each with the value that reproduces the behaviour from before it: a config
# file without the field ran that way (from_dict), and a config at that value keeps the hash it had (config_hash),
# so run folders and checkpoints from before stay resumable and loadable.
LATER_FIELDS: dict[str, Any] = {"training.reward_end_imagined": 0.0, "training.final_epochs": None,
                                "env.pool_first_frame": True}


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) for config.yaml."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(data: dict[str, Any]) -> Config:
    """Rebuild and validate a Config from a config.yaml mapping."""
    if not isinstance(data, dict):
        raise ConfigError("a config file must hold a mapping")
    cfg = Config()
    set_dotted(cfg, LATER_FIELDS)
    set_dotted(cfg, data)
    validate(cfg)
    return cfg


def config_hash(cfg: Config) -> str:
    """Stable short hash of everything that changes results (device/perf excluded; a LATER_FIELDS field at its
    earlier behaviour left out, so that adding it changed no earlier hash)."""
    d = to_dict(cfg)
    d.pop("perf", None)
    for key, before in LATER_FIELDS.items():
        section, name = key.split(".")
        if d[section][name] == before:
            del d[section][name]
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
