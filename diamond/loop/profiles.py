"""Profiles and per-game settings as data: dotted overrides that diamond.loop.config.build_config applies on top of the
paper defaults (Tables 2-3), in this order: profile, game, the user's overrides."""

from __future__ import annotations

from typing import Any

# Profiles are data: dotted overrides on top of the paper defaults.
PROFILES: dict[str, dict[str, Any]] = {
    "paper": {},
    "small": {  # paper networks, a short schedule: ~50 GPU-minutes at the paper's per-update speed
        "training.epochs": 40,
        "training.final_epochs": None,
        "training.total_env_steps": 4_900,
        "training.initial_collect_steps": 1_000,
        "training.initial_collect_max_steps": 2_000,
        "training.denoiser_steps": 100,
        "training.reward_end_steps": 100,
        "training.actor_critic_steps": 100,
        "training.first_epoch_denoiser_steps": 1_000,
        "training.first_epoch_reward_end_steps": 1_000,
        "training.first_epoch_actor_critic_steps": 500,
        "training.eval_episodes": 16,
        "env.eval_max_episode_frames": 27_000,
    },
    "smoke": {  # a whole run on a 2-core CPU in about a minute: tiny networks, tiny schedule
        "denoiser.channels": [8, 8, 8, 8],
        "denoiser.depths": [1, 1, 1, 1],
        "denoiser.cond_dim": 32,
        "denoiser.bottleneck_attention": False,
        "reward_end.channels": [8, 8, 8, 8],
        "reward_end.depths": [1, 1, 1, 1],
        "reward_end.cond_dim": 16,
        "reward_end.lstm_dim": 32,
        "reward_end.bottleneck_attention": False,
        "actor_critic.channels": [8, 8, 8, 8],
        "actor_critic.lstm_dim": 32,
        "training.epochs": 3,
        "training.final_epochs": None,
        "env.pool_first_frame": True,  # smoke and cpu keep the schedule and first frames they were measured with
        "training.total_env_steps": 500,
        "training.initial_collect_steps": 300,
        "training.initial_collect_max_steps": 500,
        "training.initial_min_reward_events": 1,
        "training.batch_size": 4,
        "training.denoiser_steps": 6,
        "training.reward_end_steps": 6,
        "training.actor_critic_steps": 3,
        "training.first_epoch_denoiser_steps": 10,
        "training.first_epoch_reward_end_steps": 10,
        "training.first_epoch_actor_critic_steps": 4,
        "training.imagination_horizon": 5,
        "training.reward_end_seq_len": 9,
        "training.eval_episodes": 2,
        "training.control_episodes": 2,
        "training.eval_num_envs": 2,
        "env.max_episode_frames": 8_000,
        "env.eval_max_episode_frames": 4_000,
        "perf.device": "cpu",
    },
    "cpu": {  # one agent run in ~15-20 min on one core of this 2-core CPU, and the static world-model studies
        # (0.49 M-parameter U-Net, sizes measured in ablations/ddpm_vs_edm.py). Per update at batch 16, measured in a
        # run (`python -m diamond.bench --profile cpu` gives 0.33 / 1.65 / 2.4 s on an idle core): denoiser 0.45 s,
        # reward/end 2.2 s, actor-critic 3 s (240 imagined frames at n = 1), hence 6,800 env steps, 30 epochs and
        # 590 / 98 / 194 updates. EDM n = 1: the stable setting of the committed CPU Figure 3. Atari 100k protocol
        # otherwise (64x64, frameskip 4, life loss, full test games, fewer evaluation episodes)
        "denoiser.channels": [16, 16, 32, 32],
        "denoiser.depths": [1, 1, 1, 1],
        "denoiser.cond_dim": 128,
        "denoiser.bottleneck_attention": False,
        "diffusion.num_steps": 1,
        "diffusion.train_chain": 1,
        "reward_end.channels": [8, 8, 16, 16],
        "reward_end.depths": [1, 1, 1, 1],
        "reward_end.cond_dim": 32,
        "reward_end.lstm_dim": 64,
        "reward_end.bottleneck_attention": False,
        # R_ψ's cure (docs/results/reward-model-cpu): without both, at ~98 updates it gives event and non-event
        # steps one probability (held-out reward AUROC 0.50 on MsPacman, 0.95 with them)
        "reward_end.frame_difference": 4.0,
        "reward_end.prior_offset": True,
        "actor_critic.channels": [8, 8, 16, 16],
        "actor_critic.lstm_dim": 64,
        "training.batch_size": 16,
        "training.epochs": 30,
        "training.final_epochs": None,
        "env.pool_first_frame": True,
        "training.total_env_steps": 6_800,
        "training.collect_steps_per_epoch": 200,
        "training.initial_collect_steps": 1_000,
        "training.initial_collect_max_steps": 3_000,
        "training.denoiser_steps": 10,
        "training.reward_end_steps": 2,
        "training.actor_critic_steps": 6,
        "training.first_epoch_denoiser_steps": 300,
        "training.first_epoch_reward_end_steps": 40,
        "training.first_epoch_actor_critic_steps": 20,
        "training.eval_episodes": 16,
        "training.eval_every": 10,
        "training.eval_every_episodes": 4,
        "training.diag_every": 5,
        "env.eval_max_episode_frames": 27_000,
        "denoiser_optim.lr": 1e-3,
        "reward_end_optim.lr": 1e-3,
        "actor_critic_optim.lr": 1e-3,
        "denoiser_optim.warmup_steps": 20,
        "reward_end_optim.warmup_steps": 20,
        "actor_critic_optim.warmup_steps": 10,
        "perf.device": "cpu",
    },
}


# --profile's help in every command
PROFILE_HELP = ("paper = Tables 2-3; small = paper networks, a short schedule (a GPU in under an hour); smoke = tiny "
                "networks, a CPU in about a minute; cpu = small networks, one CPU run in about 20 minutes")

# Per-game settings as the authors ran them, applied by build_config on top of the profile (explicit overrides
# win). Freeway: DIAMOND's RL pipeline uses the trick of IRIS's Appendix H (authors, eloialonso/diamond issue
# #34; the DIAMOND paper does not mention it): the collection policy samples at a low temperature, so an
# untrained agent's small preferences become persistent moves that can cross the road (without it, return 0).
GAME_OVERRIDES: dict[str, dict[str, Any]] = {
    "Freeway": {"training.collect_temperature": 0.01},
}
