"""Config: the paper profile is Tables 2-3, profiles are data, invalid combinations fail at build time."""

import hashlib
import json

import pytest

from diamond.loop.config import ConfigError, build_config, config_hash, from_dict, parse_overrides, to_dict


def test_paper_profile_matches_tables_2_and_3() -> None:
    cfg = build_config("paper")
    assert cfg.denoiser.channels == (64, 64, 64, 64) and cfg.denoiser.depths == (2, 2, 2, 2)
    assert cfg.denoiser.cond_dim == 256
    assert cfg.reward_end.channels == (32,) * 4 and cfg.reward_end.cond_dim == 128 and cfg.reward_end.lstm_dim == 512
    assert cfg.actor_critic.channels == (32, 32, 64, 64) and cfg.actor_critic.depths == (1,) * 4
    t = cfg.training
    assert (t.epochs, t.denoiser_steps, t.batch_size, t.collect_steps_per_epoch) == (1000, 400, 32, 100)
    assert (t.imagination_horizon, t.gamma, t.lambda_, t.entropy_weight) == (15, 0.985, 0.95, 0.001)
    assert (t.reward_end_seq_len, t.burn_in, t.epsilon) == (18, 4, 0.01)  # 19 frames, as released
    assert cfg.diffusion.sampler == "euler" and cfg.diffusion.num_steps == 3 and cfg.diffusion.num_history == 4
    assert cfg.denoiser_optim.weight_decay == 1e-2 and cfg.actor_critic_optim.weight_decay == 0.0
    assert cfg.denoiser_optim.lr == 1e-4 and cfg.denoiser_optim.eps == 1e-8
    assert (cfg.env.size, cfg.env.frameskip, cfg.env.noop_max) == (64, 4, 30)
    # released-code choices are named fields, one override from the paper-literal variant
    assert cfg.diffusion.edm.sigma_offset_noise == 0.3 and cfg.diffusion.train_chain == 2
    literal = build_config("paper", ["diffusion.edm.sigma_offset_noise=0", "diffusion.train_chain=1"])
    assert literal.diffusion.edm.sigma_offset_noise == 0.0 and literal.diffusion.train_chain == 1
    # 5k initial steps + 950 epochs x 100 = the 100k budget
    assert t.initial_collect_steps + (t.epochs - 50) * t.collect_steps_per_epoch == t.total_env_steps


def test_profiles_are_overrides_and_roundtrip() -> None:
    smoke = build_config("smoke", ["diffusion.sampler=heun", "diffusion.num_steps=5"], seed=3)
    assert smoke.denoiser.channels == (8, 8, 8, 8) and smoke.seed == 3
    assert smoke.diffusion.sampler == "heun" and smoke.diffusion.num_steps == 5
    again = from_dict(to_dict(smoke))
    assert again == smoke and config_hash(again) == config_hash(smoke)
    assert config_hash(smoke) != config_hash(build_config("smoke"))


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["diffusion.sampler=ddim"], "does not apply to paradigm 'edm'"),
        (["diffusion.paradigm=ddpm"], "does not apply to paradigm 'ddpm'"),
        (["diffusion.num_steps=0"], r"'diffusion.num_steps' must be an integer in \[1, 1000\], got 0"),
        (["diffusion.sampler=rk4"], "'diffusion.sampler' must be one of euler, .*got 'rk4'"),
        (["diffusion.history=lstm"], "'diffusion.history' must be one of frame_stack, cross_attention, got 'lstm'"),
        (["diffusion.num_history=6"], "must equal diffusion.num_history"),
        (["training.nope=1"], "unknown config key 'training.nope'"),
        (["training.epochs=many"], "'training.epochs' must be an integer"),
        (["env.game=Tetris2"], "Tetris2"),
    ],
)
def test_invalid_values_fail_in_one_sentence(overrides: list[str], match: str) -> None:
    with pytest.raises((ConfigError, ValueError), match=match):
        build_config("smoke", overrides)


def test_valid_ddpm_combination_and_unknown_profile() -> None:
    cfg = build_config("smoke", ["diffusion.paradigm=ddpm", "diffusion.sampler=ddpm_ancestral"])
    assert cfg.diffusion.paradigm == "ddpm"
    with pytest.raises(ConfigError, match="valid profiles: paper, small, smoke"):
        build_config("huge")
    with pytest.raises(ConfigError, match="section.field=value"):
        parse_overrides(["no_equals_sign"])


# ------------------------------------------------------------ every field: type enforced, range checked

def config_fields(obj: object = None, prefix: str = "") -> list[tuple[str, type, str]]:
    """(dotted key, owning dataclass, field name) of every leaf field of Config, sections walked."""
    import dataclasses

    from diamond.loop.config import Config

    obj = Config() if obj is None else obj
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out += config_fields(value, f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", type(obj), f.name))
    return out


FIELDS = config_fields()


def test_every_config_field_has_a_declared_type_and_range() -> None:
    """A field added without a rule in FIELD_RULES fails here (and cannot be set): ranges come with fields."""
    from diamond.loop.config import FIELD_RULES

    missing = [key for key, owner, name in FIELDS if name not in FIELD_RULES.get(owner, {})]
    assert not missing, f"fields without a rule in diamond/loop/config.py FIELD_RULES: {missing}"
    leaves = {(owner, name) for _, owner, name in FIELDS}
    stale = [f"{owner.__name__}.{name}" for owner, rules in FIELD_RULES.items() for name in rules
             if (owner, name) not in leaves]
    assert not stale, f"rules for fields that do not exist: {stale}"


def _refused(key: str, value: object) -> str:
    with pytest.raises(ConfigError) as err:
        build_config("smoke", {key: value})
    message = str(err.value)
    assert "\n" not in message and key in message, message
    return message


@pytest.mark.parametrize("key, owner, name", FIELDS, ids=[k for k, _, _ in FIELDS])
def test_every_field_rejects_a_wrong_type_and_an_out_of_range_value(key: str, owner: type, name: str) -> None:
    from diamond.loop.config import FIELD_RULES
    from diamond.loop.fields import Bool

    rule = FIELD_RULES[owner][name]
    assert repr(rule.wrong_type()) in _refused(key, rule.wrong_type())
    if isinstance(rule, Bool):  # true and false are its whole range
        return
    assert repr(rule.out_of_range()) in _refused(key, rule.out_of_range())


@pytest.mark.parametrize("override, message", [
    ("diffusion.edm.quantize=maybe", "'diffusion.edm.quantize' must be true or false, got 'maybe'"),
    ("training.gamma=2", r"'training.gamma' must be a number in \[0, 1\], got 2"),
    ("training.batch_size=-3", r"'training.batch_size' must be an integer in \[1, 65536\], got -3"),
    ("denoiser.channels=abc", "'denoiser.channels' must be a list of 1 to 8 items"),
    ("seed=1180591620717411303424", r"'seed' must be an integer in \[0, 1000000000\]"),
    ("perf.device=tpu", "perf.device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ("denoiser.history_kwargs={encoder_channels: [8]}", "do not apply to diffusion.history 'frame_stack'"),
    ("env.size=36", r"env.size \(36\) must be divisible by 8 for the 4 levels of denoiser"),
    ("denoiser.channels=[65, 8, 8, 8]", "denoiser.channels 65 does not split into GroupNorm groups"),
])
def test_examples_of_the_bad_input_probes(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config("smoke", [override])


def test_numbers_yaml_reads_as_strings_are_numbers_and_config_files_obey_the_rules() -> None:
    assert build_config("smoke", ["denoiser_optim.lr=3e-4"]).denoiser_optim.lr == 3e-4  # YAML 1.1: '3e-4' is a str
    data = to_dict(build_config("smoke"))
    data["training"]["gamma"] = 1.5
    with pytest.raises(ConfigError, match="'training.gamma' must be a number in"):
        from_dict(data)


def test_a_later_field_at_its_earlier_behaviour_changes_no_hash_and_old_files_load_as_they_ran() -> None:
    """LATER_FIELDS: a config file written before a field existed ran with the earlier behaviour (from_dict fills
    it in), and a config at that value hashes as it did, so older run folders and checkpoints stay valid."""
    from diamond.loop.config import LATER_FIELDS

    cfg = build_config("cpu", seed=0)
    old = to_dict(cfg)
    for key in LATER_FIELDS:
        section, name = key.split(".")
        del old[section][name]
    loaded = from_dict(old)
    assert to_dict(loaded) == to_dict(cfg) and config_hash(loaded) == config_hash(cfg)
    assert config_hash(cfg) == hashlib.sha256(json.dumps({k: v for k, v in old.items() if k != "perf"},
                                                         sort_keys=True).encode()).hexdigest()[:12]
    paper = build_config("paper")  # the released schedule and first frame: a new behaviour, a new hash
    assert paper.training.final_epochs == 50 and not paper.env.pool_first_frame
    assert config_hash(paper) != config_hash(build_config("paper", {"training.final_epochs": None,
                                                                    "env.pool_first_frame": True}))
