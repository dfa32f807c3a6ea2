"""Imagination pairs frame i with the action taken at frame i, exactly as training does (data.py).

A scripted `step` records which frames and actions each world-model call sees; frames are constant images
whose value names them, so a misaligned window shows up as the wrong names."""

import torch
from torch import Tensor, nn

from diamond.models.world_model import imagine

A, L, H, B = 5, 4, 6, 2


def frame(name: int) -> Tensor:
    """A constant 8x8 image whose value encodes an integer name (exact in float32)."""
    return torch.full((3, 8, 8), name / 1000.0)


def name_of(x: Tensor) -> int:
    return int(round(float(x.flatten()[0]) * 1000))


class ScriptedActor(nn.Module):
    """Chooses action (frame name) mod A, deterministically; value = frame name (for the horizon check)."""

    def forward(self, obs: Tensor, state=None):
        names = torch.tensor([name_of(o) for o in obs])
        logits = torch.full((obs.shape[0], A), -1e9)
        logits[torch.arange(obs.shape[0]), names % A] = 0.0
        h = torch.zeros(obs.shape[0], 1) if state is None else state[0] + 1
        return logits, names.float(), (h, h)


class Recorder:
    """Stand-in for world_model_step: next frame name = 100 + call index * 10 + batch index."""

    def __init__(self, end_at: int | None = None) -> None:
        self.calls: list[tuple[list[list[int]], list[list[int]]]] = []
        self.end_at = end_at

    def __call__(self, hist_obs: Tensor, hist_act: Tensor, re_state):
        k = len(self.calls)
        self.calls.append(([[name_of(f) for f in row] for row in hist_obs], hist_act.tolist()))
        nxt = torch.stack([frame(100 + 10 * k + b) for b in range(hist_obs.shape[0])])
        rl = torch.tensor([[-1e9, 0.0, -1e9]]).expand(hist_obs.shape[0], 3)  # reward 0
        end = 1.0 if k == self.end_at else 0.0
        el = torch.tensor([[0.0, -1e9] if not end else [-1e9, 0.0]]).expand(hist_obs.shape[0], 2)
        return nxt, rl, el, re_state


class NoReward(nn.Module):
    def forward(self, obs, act, next_obs, state=None):
        b, t = act.shape
        return torch.zeros(b, t, 3), torch.zeros(b, t, 2), (torch.zeros(b, 1), torch.zeros(b, 1))


def _context() -> tuple[Tensor, Tensor]:
    obs = torch.stack([torch.stack([frame(10 * b + i + 1) for i in range(L)]) for b in range(B)])
    act = torch.tensor([[(10 * b + i + 1) % A for i in range(L)] for b in range(B)])
    return obs, act


def test_each_call_sees_frames_with_the_actions_taken_at_them() -> None:
    obs, act = _context()
    rec = Recorder()
    traj = imagine(ScriptedActor(), None, NoReward(), obs, act, H, step=rec)
    for b in range(B):
        frames = [10 * b + i + 1 for i in range(L)]  # the episode as a real env would have stored it
        actions = act[b].tolist()[: L - 1]
        for k in range(H):
            actions.append(frames[-1] % A)  # the policy acts on the newest frame
            seen_frames, seen_actions = rec.calls[k][0][b], rec.calls[k][1][b]
            assert seen_frames == frames[k : k + L], f"call {k}, env {b}"
            assert seen_actions == actions[k : k + L], f"call {k}, env {b}: real next action leaked or misaligned"
            frames.append(100 + 10 * k + b)
        assert [name_of(f) for f in traj.obs[b]] == frames[L - 1 :]
        assert traj.actions[b].tolist() == actions[L - 1 :]
    assert traj.valid.eq(1).all() and traj.values[:, -1].tolist() == [100 + 10 * (H - 1) + b for b in range(B)]


def test_after_a_termination_the_trajectory_is_masked_not_restarted() -> None:
    obs, act = _context()
    rec = Recorder(end_at=2)
    traj = imagine(ScriptedActor(), None, NoReward(), obs, act, H, step=rec)
    assert traj.ends[:, 2].eq(1).all() and traj.ends.sum() == B
    assert traj.valid[:, :3].eq(1).all() and traj.valid[:, 3:].eq(0).all()
    # the step after the end still slides the same windows (its outputs are masked, never trained on)
    assert [row[-1] for row in rec.calls[3][0]] == [100 + 20 + b for b in range(B)]


def test_with_refill_a_terminated_env_restarts_from_a_new_real_context() -> None:
    obs, act = _context()
    rec, asked = Recorder(end_at=2), []
    new_obs = torch.stack([frame(900 + i) for i in range(L)])[None]
    new_act = torch.tensor([[1, 2, 3, 4]])

    def refill(n: int) -> tuple[Tensor, Tensor]:
        asked.append(n)
        return new_obs.expand(n, -1, -1, -1, -1), new_act.expand(n, -1)

    traj = imagine(ScriptedActor(), None, NoReward(), obs, act, H, step=rec, refill=refill)
    assert asked == [B] and traj.valid.eq(1).all()
    for b in range(B):  # the call after the end sees the new context, with its own actions and the policy's
        assert rec.calls[3][0][b] == [900 + i for i in range(L)]
        assert rec.calls[3][1][b] == [1, 2, 3, 903 % A]
        assert name_of(traj.obs[b, 3]) == 903


def test_no_refill_after_the_last_step() -> None:
    obs, act = _context()
    traj = imagine(ScriptedActor(), None, NoReward(), obs, act, H, step=Recorder(end_at=H - 1),
                   refill=lambda n: (_ for _ in ()).throw(AssertionError("refilled after the horizon")))
    assert traj.ends[:, -1].eq(1).all()
