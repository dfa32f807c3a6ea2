"""Key mapping from the authors' released agent checkpoints (eloialonso/diamond, `Agent.state_dict()`:
prefixes `denoiser.`, `rew_end_model.`, `actor_critic.`) to this project's `Agent` state dict.

Released key (after its prefix)                          -> ours
denoiser:  inner_model.noise_emb.weight                  -> world_model.net.noise_emb.freqs
           inner_model.act_emb.0.*                       -> world_model.net.act_emb.*
           inner_model.cond_proj.*                       -> world_model.net.cond_mlp.*
           inner_model.conv_in.*                         -> world_model.net.conv_in.* (input channels reordered:
                                                            released [L past frames, noisy frame], ours [noisy, past])
           inner_model.unet.{d,u}_blocks.I.resblocks.J.* -> world_model.net.unet.{d,u}_blocks.I.blocks.J.*
           inner_model.unet.mid_blocks.resblocks.J.*     -> world_model.net.unet.mid.blocks.J.*
           inner_model.unet.{down,up}samples.I.*         -> world_model.net.unet.{downs,ups}.I.*
           inner_model.norm_out.norm.*                   -> world_model.net.norm_out.*
           inner_model.conv_out.*                        -> world_model.net.conv_out.*
rew_end:   encoder.conv_in.*                             -> reward_end.conv_in.*
           encoder.blocks.I.resblocks.J.* (I < levels)   -> reward_end.blocks.I.blocks.J.*
           encoder.blocks.LEVELS.resblocks.J.*           -> reward_end.mid.blocks.J.*
           encoder.downsamples.I.*                       -> reward_end.downs.I.*
           act_emb.*, lstm.*, head.*                     -> reward_end.act_emb.*, .lstm.*, .head.*
actor:     encoder.encoder.K.*                           -> actor_critic.trunk.K.*
           (SmallResBlock f.0.norm.* / skip_projection.* -> f.0.* / skip.*)
           lstm.*, actor_linear.*, critic_linear.*       -> actor_critic.lstm.*, .policy.*, .value.*
inside every residual block: attn.norm.norm.* -> attn.norm.*, attn.qkv_proj.* -> attn.qkv.*,
attn.out_proj.* -> attn.out.*; every other name is unchanged.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from diamond.run.errors import KnownError

PARTS = ("denoiser", "rew_end_model", "actor_critic")
IMG_CHANNELS = 3


class OfficialCheckpointError(KnownError):
    """A released-format checkpoint that cannot be converted (a missing part or key): a bad file, exit 1."""


_BLOCK_RULES = [(r"\.resblocks\.", ".blocks."), (r"\.attn\.norm\.norm\.", ".attn.norm."),
                (r"\.attn\.qkv_proj\.", ".attn.qkv."), (r"\.attn\.out_proj\.", ".attn.out.")]
_DENOISER_RULES = [(r"^inner_model\.noise_emb\.weight$", "noise_emb.freqs"), (r"^inner_model\.act_emb\.0\.", "act_emb."),
                   (r"^inner_model\.cond_proj\.", "cond_mlp."), (r"^inner_model\.norm_out\.norm\.", "norm_out."),
                   (r"\.mid_blocks\.", ".mid."), (r"\.downsamples\.", ".downs."), (r"\.upsamples\.", ".ups."),
                   (r"^inner_model\.", "")]
_ACTOR_RULES = [(r"^encoder\.encoder\.", "trunk."), (r"\.f\.0\.norm\.", ".f.0."), (r"\.skip_projection\.", ".skip."),
                (r"^actor_linear\.", "policy."), (r"^critic_linear\.", "value.")]


def _apply(key: str, rules: list[tuple[str, str]]) -> str:
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def split_parts(state: dict[str, Tensor], source: str) -> dict[str, dict[str, Tensor]]:
    """The three released sub-state-dicts, keyed without their prefix; a missing part is a KnownError."""
    parts = {p: {k[len(p) + 1:]: v for k, v in state.items() if k.startswith(p + ".")} for p in PARTS}
    missing = [p for p, sd in parts.items() if not sd]
    if missing:
        raise OfficialCheckpointError(f"{source}: no `{missing[0]}.` keys; not a released DIAMOND agent checkpoint.")
    return parts


def convert_denoiser(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Released Denoiser state dict -> our WorldModel.net state dict."""
    out = {_apply(_apply(k, _DENOISER_RULES), _BLOCK_RULES): v for k, v in sd.items()}
    w = out["conv_in.weight"]  # released input: [L frames (3L channels), noisy frame (3)]; ours: [noisy, frames]
    out["conv_in.weight"] = torch.cat([w[:, -IMG_CHANNELS:], w[:, :-IMG_CHANNELS]], dim=1)
    return out


def convert_reward_end(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Released RewEndModel state dict -> our RewardEndNet state dict (the last encoder stage is our `mid`)."""
    levels = max(int(m.group(1)) for k in sd if (m := re.match(r"encoder\.blocks\.(\d+)\.", k)))
    out = {}
    for k, v in sd.items():
        k = re.sub(rf"^encoder\.blocks\.{levels}\.", "mid.", k)
        k = re.sub(r"^encoder\.downsamples\.", "downs.", k)
        out[_apply(re.sub(r"^encoder\.", "", k), _BLOCK_RULES)] = v
    return out


def convert_actor_critic(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Released ActorCritic state dict -> our ActorCriticNet state dict."""
    return {_apply(k, _ACTOR_RULES): v for k, v in sd.items()}


def convert_agent(state: dict[str, Tensor], source: str = "checkpoint") -> dict[str, Tensor]:
    """A released agent checkpoint -> a state dict for our `Agent` (world_model., reward_end., actor_critic.)."""
    parts = split_parts(state, source)
    out = {f"world_model.net.{k}": v for k, v in convert_denoiser(parts["denoiser"]).items()}
    out.update({f"reward_end.{k}": v for k, v in convert_reward_end(parts["rew_end_model"]).items()})
    out.update({f"actor_critic.{k}": v for k, v in convert_actor_critic(parts["actor_critic"]).items()})
    return out


def released_num_actions(state: dict[str, Tensor]) -> int:
    """Number of actions a released agent was trained with (rows of its policy head)."""
    key = "actor_critic.actor_linear.weight"
    if key not in state:
        raise OfficialCheckpointError(f"released checkpoint has no `{key}`; not a DIAMOND agent checkpoint.")
    return int(state[key].shape[0])
