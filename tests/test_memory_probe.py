"""The memory probe (evaluation/memory.py) between its exact references, the floor a frame stack cannot pass,
and the suite ablation_memory's arms (the probe's context fits each mechanism as designed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ablations import memory as suite
from ablations.registry import SuiteOptions
from diamond import registry
from diamond.config import build_config
from evaluation.memory import (BLANK, EMULATOR, LAST_VISIBLE, draw_occlusions, memory_probe, occlude,
                               predict_occluded)
from tests.test_static_wm import synthetic_episodes

torch.set_num_threads(1)


class CopyNewestVisible(nn.Module):
    """Predicts the newest non-blank frame it has seen: in its window, else in its memory (with `remember`)."""

    def __init__(self, num_history: int, remember: bool) -> None:
        super().__init__()
        self.num_history, self.remember = num_history, remember
        self.w = nn.Parameter(torch.zeros(()))  # a parameter: the probe finds the device from it

    @staticmethod
    def _newest(frames: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
        out = fallback.clone()
        for i in range(frames.shape[1]):
            visible = (frames[:, i] != BLANK).flatten(1).any(1)
            out[visible] = frames[visible, i]
        return out

    def memory(self, obs, act, state=None):
        if not self.remember:
            return None
        start = torch.full_like(obs[:, 0], BLANK) if state is None else state
        return self._newest(obs, start) if obs.shape[1] else start

    def predict_next(self, obs_hist, act_hist, num_steps=None, generator=None, state=None):
        start = torch.full_like(obs_hist[:, 0], BLANK) if state is None else state
        return self._newest(obs_hist, start)


def test_occlude_blanks_exactly_the_k_frames_before_end() -> None:
    obs = torch.rand(3, 6, 3, 4, 4) + 0.5
    out = occlude(obs, torch.tensor([0, 2, 5]), end=5)
    hidden = (out == BLANK).flatten(2).all(2)
    assert hidden.tolist() == [[False] * 6, [False, False, False, True, True, False], [True] * 5 + [False]]
    assert torch.equal(out[~hidden], obs[~hidden])


def test_training_occlusions_follow_their_probability() -> None:
    rng = np.random.default_rng(0)
    assert (draw_occlusions(100, 12, 0.0, rng) == 0).all()
    k = draw_occlusions(2000, 12, 1.0, rng)
    assert k.min() == 1 and k.max() == 12
    assert 0.4 < (draw_occlusions(2000, 12, 0.5, rng) > 0).mean() < 0.6


def test_probe_references_and_a_memoryless_copier_hit_their_exact_values() -> None:
    """A model that copies the newest visible frame from its memory equals the LAST_VISIBLE reference at every
    k; without memory it does only while k < L, then predicts a blank frame. The emulator's error is 0."""
    eps = synthetic_episodes(lengths=(40, 40, 50))
    kw = dict(occlusions=(0, 2, 4, 6, 8), context=8, starts=6, seed=0)
    with_memory = memory_probe(CopyNewestVisible(4, remember=True), eps, **kw).set_index(["setting", "k"])["mse"]
    frame_only = memory_probe(CopyNewestVisible(4, remember=False), eps, **kw).set_index(["setting", "k"])["mse"]
    for k in (0, 2, 4, 6):
        assert with_memory[("model", k)] == pytest.approx(with_memory[(LAST_VISIBLE, k)], abs=1e-12)
    for k in (0, 2):
        assert frame_only[("model", k)] == pytest.approx(frame_only[(LAST_VISIBLE, k)], abs=1e-12)
    grey = frame_only[("model", 8)]  # every frame hidden: the blank frame's error
    assert frame_only[("model", 4)] == frame_only[("model", 6)] == grey > with_memory[("model", 6)]
    assert (with_memory.xs(EMULATOR, level="setting") == 0).all()
    assert (LAST_VISIBLE, 8) not in with_memory.index


def _perturbed(model: nn.Module) -> nn.Module:
    """A fresh denoiser outputs 0 whatever it sees (zero-initialised convs): give every layer weights."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.abs().sum() == 0:
            nn.init.normal_(m.weight, std=0.2)
    return model.eval()


@pytest.mark.parametrize("factory, blind_from", [("diamond", 4), ("recurrent", None)])
def test_frame_stack_is_blind_from_k_equal_L_and_the_memory_is_not(factory: str, blind_from: int | None) -> None:
    """The floor is exact: with k >= L hidden frames, a frame stack's prediction cannot depend on the frames before
    the occlusion (same actions, same noise); the recurrent model's still does."""
    cfg = build_config("smoke", [f"world_model.factory={factory}", "world_model.options={memory_frames: 4}"
                                 if factory == "recurrent" else "world_model.options={}", "diffusion.train_chain=1"])
    model = _perturbed(registry.build_world_model(cfg, 4))
    a, b = torch.rand(2, 8, 3, 64, 64) * 2 - 1, torch.rand(2, 8, 3, 64, 64) * 2 - 1
    act = torch.randint(0, 4, (2, 8))
    for k in (2, 4, 6):
        preds = [predict_occluded(model, occlude(x, k, 8), act, 1, torch.Generator().manual_seed(0)) for x in (a, b)]
        same = torch.equal(preds[0], preds[1])
        assert same == (blind_from is not None and k >= blind_from), (factory, k)


def test_suite_arms_fit_the_probe_context() -> None:
    """The recurrent arm's memory plus window is the probe's context; cross-attention sees more than the frame
    stack and less than the context; all three train the same U-Net on the same data and schedule."""
    opts = SuiteOptions(profile="smoke")
    (data,), models = suite.stages(opts)
    assert [m.group for m in models] == list(suite.ARMS)
    cfgs = {m.group: build_config("smoke", m.kwargs["overrides"]) for m in models}
    built = {k: registry.build_world_model(c, 4) for k, c in cfgs.items()}
    assert built["frame_stack"].num_history == 4 < built["cross_attention"].num_history < suite.PROBE_CONTEXT
    assert built["recurrent"].memory_frames + built["recurrent"].num_history == suite.PROBE_CONTEXT
    assert {tuple(c.denoiser.channels) for c in cfgs.values()} == {tuple(cfgs["frame_stack"].denoiser.channels)}
    assert len({(m.kwargs["train_steps"], m.kwargs["dataset_dir"]) for m in models}) == 1
    assert max(suite.OCCLUSIONS) == suite.PROBE_CONTEXT and suite.MAX_OCCLUSION < suite.PROBE_CONTEXT
