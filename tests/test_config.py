"""Config: the paper profile is Tables 2-3, profiles are data, invalid combinations fail at build time."""

import pytest

from diamond.config import ConfigError, build_config, config_hash, from_dict, parse_overrides, to_dict


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
        (["diffusion.num_steps=0"], "must be >= 1"),
        (["diffusion.sampler=rk4"], "unknown diffusion.sampler 'rk4'"),
        (["diffusion.history=lstm"], "unknown diffusion.history"),
        (["diffusion.num_history=6"], "must equal diffusion.num_history"),
        (["training.nope=1"], "unknown config key 'training.nope'"),
        (["training.epochs=many"], "expects int"),
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
