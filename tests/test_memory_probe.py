"""The delayed-cue game and its memory probe (evaluation/memory.py) held to exact answers: the ceiling and the
floor apart, the information-kept fraction 1 for the ceiling, 0 for the floor and the values scripted memories
must give; the floor a frame stack cannot pass; and the suite ablation_memory's arms and data (issue 30)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ablations import memory as suite
from ablations.registry import SuiteOptions
from diamond.loop.config import build_config
from diamond.loop.data import to_float, to_uint8
from diamond.loop.memory_game import DelayedCueEnv, collect_delayed_cue_dataset
from diamond.loop.toy_env import CUE_COLOURS
from diamond.models import registry
from evaluation.memory import (
    CEILING,
    FLOOR,
    MODEL,
    context_use,
    cue_probe,
    kept_fraction,
    mean_error,
    predict_occluded,
    probe_windows,
    ratio_ci,
)

torch.set_num_threads(1)
C = 8  # cue frames = probe context in these tests
KS = (0, 1, 3, 4, 6, 8)


class ScriptedMemory(nn.Module):
    """Knows the game's rules and reads the cue from the newest frame of its window that shows one, else from its
    memory (with `remember`); answers exactly while the cue is in its newest frame, with `alpha` of the cue's
    colour beside the mean colour once the cue is only in older frames, and with the mean colour without it."""

    def __init__(self, env: DelayedCueEnv, window: int, remember: bool = False, alpha: float = 1.0) -> None:
        super().__init__()
        self.env, self.num_history, self.remember, self.alpha = env, window, remember, alpha
        self.w = nn.Parameter(torch.zeros(()))  # a parameter: the probe finds the device from it

    def _cues(self, frames: torch.Tensor, start: list[int | None]) -> list[int | None]:
        cues = list(start)
        for i in range(frames.shape[1]):
            for row, frame in enumerate(to_uint8(frames[:, i]).numpy()):
                cue = self.env.read_cue(frame)
                cues[row] = cue if cue is not None else cues[row]
        return cues

    def memory(self, obs, act, state=None):
        if not self.remember:
            return None
        start = [None] * len(obs) if state is None else [None if c < 0 else int(c) for c in state]
        return torch.tensor([-1 if c is None else c for c in self._cues(obs, start)])

    def predict_next(self, obs_hist, act_hist, num_steps=None, generator=None, state=None):
        known = self._cues(obs_hist, [None] * len(obs_hist) if state is None else
                           [None if c < 0 else int(c) for c in state])
        newest = [self.env.read_cue(f) for f in to_uint8(obs_hist[:, -1]).numpy()]
        mean = self.env.mean_colour
        colours = [mean if c is None else np.asarray(CUE_COLOURS[c]) if n is not None else
                   self.alpha * np.asarray(CUE_COLOURS[c]) + (1 - self.alpha) * mean for c, n in zip(known, newest)]
        return to_float(torch.as_tensor(np.stack([self.env.answer(c) for c in colours])))


def _probe(model: nn.Module, env: DelayedCueEnv, starts: int = 12):
    return cue_probe(model, env, occlusions=KS, starts=starts, seed=0)


def _values(frame) -> dict[int, float]:
    return dict(zip(frame["k"], frame["value"]))


def test_the_answer_needs_the_cue_and_a_context_shows_it_in_its_first_C_minus_k_frames() -> None:
    env = DelayedCueEnv(num_actions=3, size=32, cue_frames=C)
    a, b = env.episode(0, 3), env.episode(1, 3)
    assert a.shape == (C + 3 + 1, 3, 32, 32)
    region = (slice(None), *env.answer_region)
    assert tuple(a[-1][region].reshape(3, -1)[:, 0]) == CUE_COLOURS[0] and a[:-1][(slice(None), *region)].max() == 0
    differ = (a != b).any(axis=(1, 2, 3))
    assert differ.tolist() == [True] * C + [False] * 3 + [True], "cue frames and the answer only"
    for k in (0, 3, C):
        context, answer = probe_windows(env, np.array([2]), k)
        shown = [env.read_cue(f) for f in context[0]]
        assert shown == [2] * (C - k) + [None] * k and np.array_equal(answer[0], env.episode(2, k)[-1])
    env.reset(options={"cue": 1, "delay": 0})
    assert env.step(1)[1:3] == (0.0, False)
    for _ in range(C - 2):
        env.step(0)
    assert env.step(1)[1:3] == (1.0, True), "the action on the last frame before the answer pays when it is the cue"


def test_dataset_holds_every_probed_delay(tmp_path) -> None:
    """Every k of the suite's probe, the fully cue-free context (k = C) included, is in the training data."""
    summary = collect_delayed_cue_dataset(tmp_path, num_frames=2500, seed=0, size=16, cue_frames=C)
    assert min(summary["delay_counts"]) > 0 and len(summary["delay_counts"]) == C + 1
    assert collect_delayed_cue_dataset(tmp_path, num_frames=2500, seed=0, size=16, cue_frames=C) == summary
    with pytest.raises(ValueError, match="other settings"):
        collect_delayed_cue_dataset(tmp_path, num_frames=2500, seed=1, size=16, cue_frames=C)


def test_ceiling_and_floor_are_apart_and_keep_all_and_nothing() -> None:
    """Ceiling (the env) error 0 and fraction 1 at every k; floor (newest frame only) at the blind error and
    fraction 0 from k = 1: its CI lies above the ceiling's. The blind error of three primary colours is 2/9."""
    env = DelayedCueEnv(num_actions=3, size=32, cue_frames=C)
    table = _probe(ScriptedMemory(env, window=1), env)
    ceiling, floor = mean_error(table, CEILING), mean_error(table, FLOOR)
    assert (ceiling["value"] == 0).all() and (ceiling["ci_high"] == 0).all()
    assert floor["value"].tolist() == pytest.approx([0.0] + [2 / 9] * (len(KS) - 1))
    assert (floor["ci_low"][1:] > ceiling["ci_high"][1:]).all()
    assert all(v == pytest.approx(1.0) for v in _values(kept_fraction(table, CEILING)).values())
    assert _values(kept_fraction(table, FLOOR)) == pytest.approx({0: 1.0, **{k: 0.0 for k in KS[1:]}})
    assert _values(kept_fraction(table, MODEL)) == _values(kept_fraction(table, FLOOR)), "window 1: the floor"


@pytest.mark.parametrize("window, remember, alpha, expected", [
    (4, False, 1.0, {0: 1, 1: 1, 3: 1, 4: 0, 6: 0, 8: 0}),  # a frame stack: the cue leaves its window at k = 4
    (3, True, 1.0, {0: 1, 1: 1, 3: 1, 4: 1, 6: 1, 8: 0}),  # window + memory over the whole context: blind at C
    (C, False, 0.4, {0: 1, 1: 0.64, 3: 0.64, 4: 0.64, 6: 0.64, 8: 0}),  # 1 - (1 - alpha)^2 of the blind error kept
])
def test_kept_fraction_and_context_use_take_exact_values(window, remember, alpha, expected) -> None:
    env = DelayedCueEnv(num_actions=3, size=32, cue_frames=C)
    table = _probe(ScriptedMemory(env, window, remember, alpha), env)
    assert _values(kept_fraction(table, MODEL)) == pytest.approx(expected)
    use = _values(context_use(table, MODEL))
    assert use[0] == pytest.approx(1.0) and use[C] == pytest.approx(0.0), "the newest frame's cue; no cue at all"
    if alpha == 1.0:
        assert use == pytest.approx({k: float(v) for k, v in expected.items()})


def test_ratio_ci_pools_seeds_and_starts() -> None:
    num, den = np.array([[1.0, 3.0], [5.0, 7.0]]), np.full((2, 2), 2.0)
    value, low, high = ratio_ci(num, den, boot=500)
    assert value == pytest.approx(2.0) and 0.5 <= low < 2.0 < high <= 3.5
    assert np.isnan(ratio_ci(num, -den)[0]), "no better than blind at k = 0: no fraction"
    assert ratio_ci(np.ones((1, 4)), np.ones((1, 4))) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("factory, blind_from", [("diamond", 4), ("recurrent", None)])
def test_frame_stack_is_blind_from_k_equal_L_and_the_memory_is_not(factory: str, blind_from: int | None) -> None:
    """With the cue out of its L-frame window, a frame stack's answer cannot depend on it (same actions, same noise);
    the recurrent model's still does."""
    cfg = build_config("smoke", [f"world_model.factory={factory}", "world_model.options={memory_frames: 4}"
                                 if factory == "recurrent" else "world_model.options={}", "diffusion.train_chain=1"])
    model = registry.build_world_model(cfg, 3)
    torch.manual_seed(1)
    for m in model.modules():  # a fresh denoiser outputs 0 whatever it sees (zero-initialised convs)
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.abs().sum() == 0:
            nn.init.normal_(m.weight, std=0.2)
    model.eval()
    env = DelayedCueEnv(num_actions=3, size=64, cue_frames=C)
    act = torch.randint(0, 3, (2, C))
    for k in (2, 4, 6):
        preds = [predict_occluded(model, to_float(torch.as_tensor(probe_windows(env, np.array([c, c]), k)[0])), act,
                                  1, torch.Generator().manual_seed(0)) for c in (0, 1)]
        assert torch.equal(preds[0], preds[1]) == (blind_from is not None and k >= blind_from), (factory, k)


def test_suite_arms_fit_the_probe_context() -> None:
    """Four arms on one dataset and schedule, three seeds by default: the 16-frame stack and the recurrent model's
    memory plus window span the probe's context, the 4-frame stack and cross-attention less; the dataset's delays
    reach the largest probed k (a context with no cue)."""
    (data,), models = suite.stages(SuiteOptions(profile="smoke"))
    assert [m.group for m in models] == [k for k in suite.ARMS for _ in range(3)]
    cfgs = {m.group: build_config("smoke", m.kwargs["overrides"]) for m in models}
    built = {k: registry.build_world_model(c, suite.NUM_CUES) for k, c in cfgs.items()}
    assert built["frame_stack"].num_history == 4 < built["cross_attention"].num_history < suite.PROBE_CONTEXT
    assert built["frame_stack_16"].num_history == suite.PROBE_CONTEXT
    assert built["recurrent"].memory_frames + built["recurrent"].num_history == suite.PROBE_CONTEXT
    assert {tuple(c.denoiser.channels) for c in cfgs.values()} == {tuple(cfgs["frame_stack"].denoiser.channels)}
    assert len({(m.kwargs["train_steps"], m.kwargs["dataset_dir"]) for m in models}) == 1
    assert max(suite.OCCLUSIONS) == suite.PROBE_CONTEXT and data.entry == "ablations.memory:build_dataset"
