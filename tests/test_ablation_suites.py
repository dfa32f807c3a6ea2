"""Suites ablation_sampler, ablation_nfe, ablation_conditioning: their grids, the Table 6 protocol step
(ablations.arms), and each suite end to end at smoke scale through run_suite.py and the debug executor."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
import torch
from pypdf import PdfReader
from torch import nn

import run_suite
from ablations import arms, conditioning, nfe, sampler, static_wm
from ablations.registry import SuiteOptions, get_suite
from diamond.loop.config import build_config
from diamond.loop.data import Episode, ReplayBuffer
from diamond.models.diffusion.paradigms import build_paradigm
from diamond.run.io import atomic_write_json
from evaluation.exact_denoiser import GaussianData, sampler_moments
from evaluation.video import fid
from reports.common import REPS_ENV
from tests._fakes import TinyFeatures, TinyLPIPS

torch.set_num_threads(1)
SIZE = 16
AGENT_TINY = ["denoiser.channels=[8,8]", "denoiser.depths=[1,1]", "denoiser.cond_dim=16", "training.batch_size=2",
              "training.epochs=1", "training.total_env_steps=120", "training.initial_collect_steps=100",
              "training.initial_collect_max_steps=120", "training.first_epoch_denoiser_steps=2",
              "training.first_epoch_reward_end_steps=2", "training.first_epoch_actor_critic_steps=2",
              "training.eval_episodes=1", "training.eval_num_envs=1", "env.eval_max_episode_frames=400",
              "env.max_episode_frames=400", "reward_end.channels=[8,8]", "reward_end.depths=[1,1]",
              "actor_critic.channels=[8,8]", "actor_critic.depths=[1,1]", "training.imagination_horizon=2",
              "training.reward_end_seq_len=6"]
TINY_PROTOCOL = arms.ClipProtocol(clips=4, context=6, clip_len=6, keep=1, rollouts=1, horizon=4,
                                  feature_networks=False, bootstrap_reps=20)


def _args(tmp_path, suite: str, *extra: str) -> list[str]:
    return ["--suite", suite, "--profile", "smoke", "--executor", "debug", "--out", str(tmp_path / "runs"),
            "--report-dir", str(tmp_path / "reports"), *extra]


# ------------------------------------------------------------------------------------------------ grids


def test_sampler_grid_compares_at_equal_nfe_and_equal_steps(tmp_path):
    agents_and_data, models, evals = get_suite("ablation_sampler").stages(SuiteOptions(out=tmp_path))
    agents = [s for s in agents_and_data if s.entry == "diamond.train:run"]
    assert len(agents) == 4 * 5 * 3 and {s.kwargs["game"] for s in agents} == set(sampler.VISUAL_GAMES)
    assert {s.group for s in agents} == {"euler-n3", "heun-n2", "euler_ancestral-n10", "heun-n3"}
    assert [a.nfe for a in sampler.ARMS] == [3, 3, 10, 5] and sampler.GRID.reference.key == "euler-n3"
    assert agents[0].kwargs["overrides"][-2:] == ["diffusion.sampler=euler", "diffusion.num_steps=3"]
    assert [m.name for m in models] == ["wm-Breakout-expert"] + [f"dataset-{g}-agent" for g in sampler.VISUAL_GAMES]
    assert models[1].kwargs["agent_run_dir"] == str(tmp_path / "ablation_sampler" / "paper" / "euler-n3-Breakout-s0")
    assert evals[0].kwargs["test_fraction"] == 0.1 and evals[1].kwargs["test_fraction"] is None
    assert [s["key"] for s in evals[0].kwargs["settings"]] == [a.key for a in sampler.ARMS]
    assert evals[0].kwargs["protocol"]["clips"] == 1024 and evals[0].kwargs["protocol"]["clip_len"] == 16
    with pytest.raises(ValueError, match="drop the override"):
        sampler.GRID.stages(SuiteOptions(out=tmp_path, overrides=("diffusion.sampler=heun",)))


@pytest.mark.parametrize("profile", ["paper", "smoke"])
def test_sampler_suite_stochastic_arm_keeps_data_variance_with_exact_denoiser(profile):
    """With the exact denoiser of Gaussian data (std sigma_data) on the suite's own EDM grid, at the arm's own n,
    the stochastic arm's output variance stays within 3x of the data's (both ways), from the runs' initial noise
    and from the exact marginal; literal Euler–Maruyama, the arm it replaces, does not at n = 3."""
    arm = sampler.STOCHASTIC_ARM
    assert arm in sampler.ARMS and arm.sampler in ("heun_churn", "euler_ancestral")
    edm = build_paradigm("edm", **dataclasses.asdict(build_config(profile).diffusion.edm))
    data = GaussianData(std=edm.cfg.sigma_data)
    for init in ("paradigm", "marginal"):
        _, var = sampler_moments(edm, arm.sampler, arm.num_steps, data, init)
        assert 1 / 3 < var / data.std**2 < 3, (init, var / data.std**2)
    _, em = sampler_moments(edm, "euler_maruyama", 3, data, "marginal")
    assert em / data.std**2 > 3


def test_nfe_and_conditioning_grids(tmp_path):
    assert [a.num_steps for a in nfe.ARMS] == [1, 2, 3, 5, 10] and nfe.GRID.reference.num_steps == 3
    assert conditioning.fit_cond_dim(256, 6) == 258 and conditioning.fit_cond_dim(32, 6) == 36
    assert conditioning.fit_cond_dim(30, 5) == 30 and conditioning.fit_cond_dim(31, 5) == 40
    (data,), (*models, judges), measured = conditioning.stages(SuiteOptions(out=tmp_path, seeds=2))
    evals, decisions = measured[::2], measured[1::2]
    assert judges.entry == "ablations.static_judges:run" and "diffusion.num_history=6" in judges.kwargs["overrides"]
    assert [d.kwargs["model_dir"] for d in decisions] == [str(m.run_dir) for m in models]
    assert all(d.entry == "ablations.static_decision:run" and d.kwargs["judges_dir"] == str(judges.run_dir)
               for d in decisions)
    assert [m.name for m in models] == ["wm-frame_stack-s0", "wm-frame_stack-s1", "wm-cross_attention-s0",
                                        "wm-cross_attention-s1"]
    for m in models:
        assert {"diffusion.num_history=6", "training.burn_in=6", "denoiser.cond_dim=258",
                "training.batch_size=64"} <= set(m.kwargs["overrides"]) and m.kwargs["train_steps"] == 120_000
    assert models[2].gpu_hours > models[0].gpu_hours
    assert evals[0].kwargs["model_dir"] == str(models[0].run_dir) and evals[0].kwargs["protocol"]["context"] == 6
    smoke = conditioning.arm_overrides(SuiteOptions(profile="smoke", out=tmp_path), "cross_attention")
    assert "denoiser.history_kwargs={encoder_channels: [8, 8, 8, 8], encoder_cond_dim: 16}" in smoke
    with pytest.raises(ValueError, match="Breakout only"):
        conditioning.stages(SuiteOptions(out=tmp_path, games=("Pong",)))
    with pytest.raises(ValueError, match="drop the override"):
        conditioning.stages(SuiteOptions(out=tmp_path, overrides=("diffusion.num_history=4",)))


@pytest.mark.parametrize("suite, runs, hours", [("ablation_sampler", 73, "4181.0"), ("ablation_nfe", 88, "5225.0"),
                                                ("ablation_conditioning", 8, "10.0")])
def test_dry_run_lists_the_grid_and_writes_nothing(tmp_path, capsys, suite, runs, hours):
    assert run_suite.main(["--suite", suite, "--dry-run", "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert f"all stages: {runs} runs; {hours} GPU-hours projected" in out
    assert len(re.findall(r"^\S+\s+\S+.*\snew\s+[\d.]+$", out, flags=re.M)) == runs
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------------ Table 6 protocol


def render(columns: np.ndarray) -> np.ndarray:
    """uint8 frames [N, 3, S, S]: grey background with one bright column (a scene with edges to be sharp)."""
    frames = np.full((len(columns), 3, SIZE, SIZE), 40, np.uint8)
    frames[np.arange(len(columns)), :, :, np.asarray(columns) % SIZE] = 255
    return frames


def synthetic_episodes(lengths=(40, 30, 50), seed=0) -> list[Episode]:
    """The bright column moves by the action (0-3) each step: deterministic dynamics an oracle can predict."""
    rng = np.random.default_rng(seed)
    episodes = []
    for i, n in enumerate(lengths):
        act = rng.integers(0, 4, n)
        cols = 3 * i + np.concatenate([[0], np.cumsum(act)])
        end = np.zeros(n, bool)
        end[-1] = True
        episodes.append(Episode.from_arrays(render(cols), act.astype(np.int64), np.zeros(n, np.float32), end,
                                            np.zeros(n, bool)))
    return episodes


class OracleWM(nn.Module):
    """Knows the true dynamics: finds the bright column of the last frame and moves it by the last action."""

    def __init__(self) -> None:
        super().__init__()
        self.num_history, self.sampler, self.num_steps = 4, "euler", 1
        self.samplers = ("euler", "heun")  # declared (docs/plugins.md): the arms below switch between them
        self.dummy = nn.Parameter(torch.zeros(1))

    def predict_next(self, obs_hist, act_hist, num_steps=None, generator=None):
        col = obs_hist[:, -1].mean(dim=(1, 2)).argmax(dim=-1) + act_hist[:, -1]
        return torch.as_tensor(render(col.numpy())).float() / 127.5 - 1


def extractors(clip_len: int) -> dict[str, nn.Module]:
    return {"inception": TinyFeatures(3 * SIZE * SIZE, 6), "i3d": TinyFeatures(clip_len * 3 * SIZE * SIZE, 6),
            "lpips": TinyLPIPS()}


SETTINGS = [arms.SamplingArm("euler", 1).setting(), arms.SamplingArm("heun", 2).setting()]


def test_table6_protocol_identical_clips_score_zero():
    protocol = arms.ClipProtocol(clips=8, context=6, clip_len=5, keep=2, rollouts=0, bootstrap_reps=30)
    rows, arrays = arms.evaluate_clips(OracleWM(), synthetic_episodes(), SETTINGS, protocol, extractors(5))
    assert [r["key"] for r in rows] == ["euler-n1", "heun-n2"] and [r["nfe"] for r in rows] == [1, 3]
    for row in rows:
        assert row["mse"] == 0 and row["relative_sharpness"] == pytest.approx(1.0) and row["sample_rate_hz"] > 0
        for metric in ("fid", "fvd", "lpips"):
            assert abs(row[metric]) < 1e-6, metric
        assert np.abs(arrays[f"{row['key']}.fid_reps"]).max() < 1e-6 and len(arrays[f"{row['key']}.fvd_reps"]) == 30
    np.testing.assert_array_equal(arrays["euler-n1.frames"], arrays["real"])
    assert arrays["real"].shape == (2, 5, 3, SIZE, SIZE) and arrays["euler-n1.mse"].shape == (8,)


def write_dataset(directory) -> None:
    buf = ReplayBuffer(directory)
    for ep in synthetic_episodes():
        buf.add_episode(ep)
    buf.save()
    atomic_write_json(directory / "summary.json", {"game": "Breakout"})


def test_table6_protocol_on_a_tiny_trained_world_model(tmp_path):
    data = tmp_path / "data"
    write_dataset(data)
    tiny = ["denoiser.channels=[8,8]", "denoiser.depths=[1,1]", "denoiser.cond_dim=16", "training.batch_size=2"]
    static_wm.run(tmp_path / "wm", data, profile="smoke", overrides=tiny, train_steps=3, checkpoint_every=3,
                  protocol={"horizon": 3, "num_steps": [1], "rollouts": 1, "clips": 2, "feature_networks": False})
    model, cfg = arms.load_world_model(tmp_path / "wm")
    episodes = static_wm.split_episodes(ReplayBuffer.load(data), 0.1)[1]
    protocol = arms.ClipProtocol(clips=6, context=6, clip_len=4, keep=6, rollouts=0, bootstrap_reps=20, batch_size=4)
    nets = extractors(4)
    rows, arrays = arms.evaluate_clips(model, episodes, SETTINGS, protocol, nets)
    for row in rows:
        assert row["fid"] > 1e-3 and row["fvd"] > 1e-3 and row["lpips"] > 1e-4 and row["mse"] > 1e-4
        gen = arrays[f"{row['key']}.frames"]
        assert row["fid"] == pytest.approx(fid(arrays["real"], gen, nets["inception"]), rel=1e-9)
    result = arms.evaluate_world_model(tmp_path / "eval", tmp_path / "wm", data, SETTINGS,
                                       dataclasses.replace(TINY_PROTOCOL, clip_len=4).to_dict(), test_fraction=0.1)
    assert result["num_parameters"] == sum(p.numel() for p in model.parameters()) > 0
    assert set(result["unavailable"]) == {"inception", "i3d", "lpips"} and "fid" not in result["settings"][0]
    errors = pd.read_csv(tmp_path / "eval" / result["errors_file"])
    assert set(errors["setting"]) == {"euler-n1", "heun-n2", "copy last frame"}
    atomic_write_json(data / "summary.json", {"game": "Pong"})
    with pytest.raises(ValueError, match="models Breakout but"):
        arms.evaluate_world_model(tmp_path / "eval2", tmp_path / "wm", data, SETTINGS, TINY_PROTOCOL.to_dict())


# ---------------------------------------------------------------------------------- suites end to end


@pytest.fixture
def tiny_schedules(monkeypatch):
    monkeypatch.setenv(REPS_ENV, "40")
    smoke = sampler.SCHEDULES["smoke"]
    monkeypatch.setitem(sampler.SCHEDULES, "smoke", dataclasses.replace(
        smoke, expert_frames=600, agent_frames=120, train_steps=2, checkpoint_every=2, protocol=TINY_PROTOCOL))
    cond = conditioning.SCHEDULES["smoke"]
    monkeypatch.setitem(conditioning.SCHEDULES, "smoke", dataclasses.replace(
        cond, expert_frames=600, train_steps=2, checkpoint_every=2, protocol=TINY_PROTOCOL))


def _table(tmp_path, suite: str, name: str) -> pd.DataFrame:
    return pd.read_csv(tmp_path / "reports" / suite / "tables" / f"{name}.csv")


def test_sampler_suite_end_to_end(tmp_path, tiny_schedules, capsys):
    sets = [x for o in AGENT_TINY for x in ("--set", o)]
    assert run_suite.main(_args(tmp_path, "ablation_sampler", "--games", "Boxing", "--seeds", "2", *sets)) == 0
    labels = [a.label for a in sampler.ARMS]
    agent = _table(tmp_path, "ablation_sampler", "agent_arms")
    assert list(agent["arm"]) == labels and agent["runs"].tolist() == [2, 2, 2, 2]
    comparison = _table(tmp_path, "ablation_sampler", "agent_comparison")
    assert list(comparison["arm"]) == labels[1:]
    assert comparison["IQM difference"].str.match(r"^-?[\d.]+ \[-?[\d.]+, -?[\d.]+\]$").all()
    assert comparison["P(arm > reference)"].str.contains(r"\[").all()
    for name in ("wm_eval-Breakout-expert", "wm_eval-Boxing-agent"):
        wm = _table(tmp_path, "ablation_sampler", name)
        assert list(wm["arm"]) == labels and wm["MSE"].str.contains(r"\[").all() and (wm["frames/s"] > 0).all()
        assert list(_table(tmp_path, "ablation_sampler", name.replace("wm_", "wm_diff_"))["arm"]) == labels[1:]
    md = (tmp_path / "reports" / "ablation_sampler" / "report.md").read_text()
    assert "Agent: On IQM of human-normalized scores" in md
    assert "World model on Boxing (the reference agent's data)" in md
    assert "i3d: feature networks disabled for this run" in md
    exact = _table(tmp_path, "ablation_sampler", "exact_denoiser")
    assert set(exact["sampler"]) == {"Euler", "Heun", "Euler–Maruyama", "Heun + churn", "Euler-ancestral"}
    assert sorted(set(exact["n"])) == [1, 2, 3, 5, 10]
    assert re.search(r"\*\*From the runs' initial noise \(std 1\)\.\*\* Euler at n = 3 gives a sample variance of "
                     r"[\d.]+ % of the data's", md)
    assert "figures/exact_denoiser.png" in md
    assert len(PdfReader(tmp_path / "reports" / "ablation_sampler" / "report.pdf").pages) >= 3
    capsys.readouterr()
    assert run_suite.main(_args(tmp_path, "ablation_sampler", "--games", "Boxing", "--seeds", "2", *sets)) == 0
    assert "0 finished, 9 skipped" in capsys.readouterr().out  # resume: nothing is redone
    assert run_suite.main(_args(tmp_path, "ablation_sampler", "--games", "Boxing", "--seeds", "2", "--report-only",
                                *sets)) == 0


def test_nfe_suite_end_to_end(tmp_path, tiny_schedules):
    sets = [x for o in AGENT_TINY for x in ("--set", o)]
    assert run_suite.main(_args(tmp_path, "ablation_nfe", "--games", "Boxing", "--seeds", "1", *sets)) == 0
    labels = [a.label for a in nfe.ARMS]
    assert list(_table(tmp_path, "ablation_nfe", "agent_arms")["arm"]) == labels
    assert _table(tmp_path, "ablation_nfe", "agent_comparison")["IQM difference"].str.endswith("(no CI)").all()
    wm = _table(tmp_path, "ablation_nfe", "wm_eval-Boxing-agent")
    assert list(wm["arm"]) == labels and list(wm["NFE"]) == [1, 2, 3, 5, 10]
    md = (tmp_path / "reports" / "ablation_nfe" / "report.md").read_text()
    assert re.search(r"keep [\d.]+ \[[\d.]+, [\d.]+\] of the real frames' high-frequency energy at n = 1", md)
    assert "figures/tradeoff_eval-Boxing-agent.png" in md and "the paper's Figure 4" in md
    assert "## Samplers with an exact denoiser" in md and "Heun has a lower W2 than Euler" in md


def test_conditioning_suite_end_to_end(tmp_path, tiny_schedules):
    assert run_suite.main(_args(tmp_path, "ablation_conditioning", "--set", "training.batch_size=2")) == 0
    table6 = _table(tmp_path, "ablation_conditioning", "table6")
    assert list(table6["arm"]) == ["frame-stack s0", "cross-attention s0"]
    assert table6["parameters"].iloc[1] > table6["parameters"].iloc[0] and (table6["frames/s"] > 0).all()
    diff = _table(tmp_path, "ablation_conditioning", "differences_s0")
    assert list(diff["arm"]) == ["cross-attention s0"] and diff["Δ MSE"].str.contains(r"\[").all()
    md = (tmp_path / "reports" / "ablation_conditioning" / "report.md").read_text()
    assert "Seed 0: On MSE (lower is better)" in md and "DIAMOND cross-attention" in md
    decision = _table(tmp_path, "ablation_conditioning", "decision_metrics")  # stage 3 with the shared judges
    assert {"frame-stack s0, n=3", "cross-attention s0, n=3", "emulator (ceiling)"} <= set(decision["model"])
    assert "The reward/end judge, shared by every model: an event detector" in md and "best constant guess" in md
