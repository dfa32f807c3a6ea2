"""World model: every paradigm × conditioning trains and samples; predict_next returns env-range frames."""

import pytest
import torch

from diamond.loop.config import build_config
from diamond.models.world_model import build_world_model

COMBOS = [("edm", "euler", "frame_stack"), ("edm", "heun", "cross_attention"),
          ("ddpm", "ddpm_ancestral", "frame_stack"), ("ddpm", "ddim", "cross_attention")]


def _cfg(paradigm: str, sampler: str, history: str, steps: int = 2):
    return build_config("smoke", [f"diffusion.paradigm={paradigm}", f"diffusion.sampler={sampler}",
                                  f"diffusion.history={history}", f"diffusion.num_steps={steps}"])


@pytest.mark.parametrize("paradigm,sampler,history", COMBOS)
def test_loss_and_sampling_every_combination(paradigm: str, sampler: str, history: str) -> None:
    torch.manual_seed(0)
    cfg = _cfg(paradigm, sampler, history)
    wm = build_world_model(cfg, num_actions=4)
    L, chain = cfg.diffusion.num_history, cfg.diffusion.train_chain
    obs = torch.rand(3, L + chain, 3, 32, 32) * 2 - 1
    act = torch.randint(0, 4, (3, L + chain))
    mask = torch.ones(3, L + chain, dtype=torch.bool)
    mask[0, :2] = False  # a segment reaching before its episode start
    obs = obs * mask[:, :, None, None, None]
    loss = wm.loss(obs, act, mask)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in wm.parameters())
    nxt = wm.predict_next(obs[:, :L], act[:, :L])
    assert nxt.shape == (3, 3, 32, 32) and nxt.min() >= -1 and nxt.max() <= 1
    # 8-bit quantised outputs, exactly representable as env pixels
    pixels = (nxt + 1) / 2 * 255
    torch.testing.assert_close(pixels, pixels.round(), atol=1e-3, rtol=0)
    expected_nfe = 3 if sampler == "heun" else 2
    assert wm.nfe == expected_nfe


def test_loss_rejects_wrong_segment_length() -> None:
    wm = build_world_model(_cfg("edm", "euler", "frame_stack"), num_actions=4)
    with pytest.raises(ValueError, match="L \\+ train_chain"):
        wm.loss(torch.zeros(2, 3, 3, 32, 32), torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.bool))


def test_sampling_is_seeded_and_rollout_shapes() -> None:
    torch.manual_seed(0)
    wm = build_world_model(_cfg("edm", "euler_maruyama", "frame_stack"), num_actions=4)
    for p in wm.parameters():  # leave zero-init so outputs depend on the noise
        p.data.add_(0.01 * torch.randn_like(p))
    obs = torch.rand(2, 4, 3, 32, 32) * 2 - 1
    act = torch.randint(0, 4, (2, 4))
    a = wm.predict_next(obs, act, generator=torch.Generator().manual_seed(1))
    b = wm.predict_next(obs, act, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    roll = wm.rollout(obs, torch.randint(0, 4, (2, 4 - 1 + 5)), generator=torch.Generator().manual_seed(0))
    assert roll.shape == (2, 5, 3, 32, 32)


def test_sampler_options_of_the_config_reach_the_world_model() -> None:
    """eta = 0 makes Euler-ancestral deterministic Euler: the world model must pass the config's eta on."""
    obs_act = None
    outs = {}
    for sampler, extra in (("euler", []), ("euler_ancestral", ["diffusion.edm.eta=0"]),
                           ("euler_ancestral", ["diffusion.edm.eta=1"])):
        cfg = build_config("smoke", [f"diffusion.sampler={sampler}", "diffusion.num_steps=3", *extra])
        torch.manual_seed(0)
        wm = build_world_model(cfg, num_actions=4)
        if obs_act is None:
            L = cfg.diffusion.num_history
            obs_act = (torch.rand(2, L, 3, 16, 16) * 2 - 1, torch.randint(0, 4, (2, L)))
        outs[(sampler, tuple(extra))] = wm.predict_next(*obs_act, generator=torch.Generator().manual_seed(1))
    euler = outs[("euler", ())]
    torch.testing.assert_close(outs[("euler_ancestral", ("diffusion.edm.eta=0",))], euler)
    assert not torch.allclose(outs[("euler_ancestral", ("diffusion.edm.eta=1",))], euler)
