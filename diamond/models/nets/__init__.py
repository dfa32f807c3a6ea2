"""Networks of DIAMOND: denoiser F_theta, reward/end model R_psi, actor-critic (pi, V)_phi."""

from diamond.models.nets.actor_critic import ActorCriticNet
from diamond.models.nets.blocks import count_parameters
from diamond.models.nets.history import (
                                  HISTORY_CONDITIONINGS,
                                  CrossAttention,
                                  FrameStack,
                                  HistoryConditioning,
                                  make_history_conditioning,
)
from diamond.models.nets.reward_end import NUM_END_CLASSES, REWARD_CLASSES, RewardEndNet
from diamond.models.nets.unet import DenoiserNet, UNet, build_denoiser_net

__all__ = [
    "ActorCriticNet", "CrossAttention", "DenoiserNet", "FrameStack", "HISTORY_CONDITIONINGS",
    "HistoryConditioning", "NUM_END_CLASSES", "REWARD_CLASSES", "RewardEndNet", "UNet",
    "build_denoiser_net", "count_parameters", "make_history_conditioning",
]
