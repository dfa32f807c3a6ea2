"""Suite ablation_ddpm_vs_edm: its grid, its summary logic, and the whole pipeline at smoke scale."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from pypdf import PdfReader
from torch import nn

from ablations import ddpm_vs_edm, static_wm
from ablations.registry import SuiteOptions, get_suite
from diamond.loop.config import to_dict
from diamond.models.diffusion.paradigms import build_paradigm, quantize_8bit
from diamond.models.world_model import WorldModel
from evaluation.wm_protocol import COPY_SETTING, REAL_SETTING
from reports.ddpm_vs_edm import expert_return
from reports.ddpm_vs_edm_text import finding, mean_curves, summary_text
from slurm.launcher import launch

torch.set_num_threads(1)
TINY = ("denoiser.channels=[8,8]", "denoiser.depths=[1,1]", "denoiser.cond_dim=16", "training.batch_size=2")


def test_grid_is_dataset_then_every_arm_on_it(tmp_path):
    opts = SuiteOptions(profile="paper", out=tmp_path, seeds=2)
    (dataset,), (*models, judges), measured = get_suite("ablation_ddpm_vs_edm").stages(opts)
    causes, decisions, objects = (measured[i * len(models) : (i + 1) * len(models)] for i in range(3))
    assert judges.entry == "ablations.static_judges:run" and judges.kwargs["dataset_dir"] == str(dataset.run_dir / "dataset")
    assert dataset.kwargs["num_frames"] == 100_000 and dataset.entry == "ablations.static_data:run"
    assert [m.name for m in models] == [f"wm-{a}-Breakout-s{s}" for a in ("edm", "ddpm", "edm-offset", "edm-chain2")
                                        for s in (0, 1)]
    for m in models:
        assert m.kwargs["dataset_dir"] == str(dataset.run_dir / "dataset")
        assert m.kwargs["protocol"]["horizon"] == 1000 and m.kwargs["protocol"]["num_steps"] == [1, 2, 3, 5, 10]
        assert m.kwargs["train_steps"] == models[0].kwargs["train_steps"] and m.gpu_hours > 0
    assert models[2].kwargs["overrides"][-5:-2] == ["diffusion.paradigm=ddpm", "diffusion.sampler=ddpm_ancestral",
                                                    "diffusion.train_chain=1"]
    assert models[0].kwargs["overrides"][-5:-2] == ["diffusion.paradigm=edm", "diffusion.sampler=euler",
                                                    "diffusion.train_chain=1"]
    assert models[6].kwargs["overrides"][-3] == "diffusion.train_chain=2"
    for model, cause in zip(models, causes):  # stage 3 reads each trained model, never retrains one
        assert cause.name == model.name.replace("wm-", "cause-") and cause.entry == "ablations.static_cause:run"
        assert cause.kwargs["model_dir"] == str(model.run_dir) and cause.kwargs["overrides"] == model.kwargs["overrides"]
        assert cause.kwargs["horizon"] == 1000 and cause.kwargs["seed"] == model.kwargs["seed"]
    for model, decision in zip(models, decisions, strict=True):  # every model judged by the same judges
        assert decision.entry == "ablations.static_decision:run" and decision.kwargs["judges_dir"] == str(judges.run_dir)
        assert decision.kwargs["model_dir"] == str(model.run_dir) and decision.kwargs["seed"] == model.kwargs["seed"]
        assert decision.kwargs["overrides"] == model.kwargs["overrides"]
        assert decision.kwargs["decision"] == judges.kwargs["decision"] and decision.kwargs["num_steps"] == [1, 2, 3, 5, 10]
    for model, obj in zip(models, objects, strict=True):  # object metrics of every model, no judges needed
        assert obj.entry == "ablations.static_objects:run" and obj.name == model.name.replace("wm-", "objects-")
        assert obj.kwargs["model_dir"] == str(model.run_dir) and obj.kwargs["overrides"] == model.kwargs["overrides"]


def test_cpu_profile_trains_two_seeds_of_every_arm_and_rolls_n_1_and_3_to_t_1000(tmp_path):
    (_,), (*models, judges), measured = get_suite("ablation_ddpm_vs_edm").stages(SuiteOptions(profile="cpu", out=tmp_path))
    causes, decisions, objects = (measured[i * len(models) : (i + 1) * len(models)] for i in range(3))
    assert [m.name for m in models] == [f"wm-{a}-Breakout-s{s}" for a in ("edm", "ddpm", "edm-offset") for s in (0, 1)]
    protocol = static_wm.ProtocolSettings.from_dict(models[0].kwargs["protocol"])
    assert protocol.horizon == 1000 and protocol.long_steps == (1, 3) and protocol.horizons() == {2: 120, 5: 120, 10: 120}
    assert [c.kwargs["short_horizon"] for c in causes] == [120] * 6
    assert [d.kwargs["num_steps"] for d in decisions] == [[1, 3]] * 6
    assert [o.kwargs["num_steps"] for o in objects] == [[1, 3]] * 6 and objects[0].kwargs["objects"]["horizon"] == 1000
    assert judges.kwargs["decision"]["policy_horizon"] == 150  # ε = 0 and 0.1 tie in shorter real rollouts
    labels = [v["label"] for v in causes[0].kwargs["variants"]]
    assert labels == ["n=3, σ_min=0.05", "n=3, σ_min=0.3", "n=3, start N(0, σ_max²)", "n=10, start N(0, σ_max²)"]
    (_,), (*smoke, _), _ = get_suite("ablation_ddpm_vs_edm").stages(SuiteOptions(profile="smoke", out=tmp_path, seeds=3))
    assert [m.name for m in smoke].count("wm-edm-offset-Breakout-s0") == 1 and len(smoke) == 3 + 3 + 1 + 1


def _flat(cfg) -> dict:
    out, todo = {}, [("", to_dict(cfg))]
    while todo:
        prefix, node = todo.pop()
        for k, v in node.items():
            (todo.append((f"{prefix}{k}.", v)) if isinstance(v, dict) else out.__setitem__(f"{prefix}{k}", v))
    return out


@pytest.mark.parametrize("profile", ["paper", "small", "cpu", "smoke"])
def test_figure3_arms_resolve_to_configs_that_differ_in_the_paradigm_only(tmp_path, profile):
    """What a run of each arm resolves to (static_wm.run_config, i.e. its config.yaml): EDM and DDPM differ in
    the paradigm (and its own sampler: Euler is not a DDPM sampler), both with one prediction per segment as
    in Algorithm 1 and both without offset noise (the paper's Figure 3 setting), although the profile's own
    default is the released agent's 0.3; the offset arm differs from EDM in the offset noise only, the chained
    arm in the chained predictions only."""
    opts = SuiteOptions(profile=profile, out=tmp_path, overrides=("training.batch_size=8",))
    (_,), (*models, _), _ = get_suite("ablation_ddpm_vs_edm").stages(opts)
    configs = {m.group: _flat(static_wm.run_config(m.kwargs["profile"], m.kwargs["overrides"], m.kwargs["seed"],
                                                   ddpm_vs_edm.GAME)) for m in models if m.kwargs["seed"] == 0}
    base = _flat(static_wm.run_config(profile, [], 0, ddpm_vs_edm.GAME))
    assert base["diffusion.edm.sigma_offset_noise"] == 0.3 and base["diffusion.ddpm.offset_noise"] == 0.3
    edm, ddpm, offset = configs["edm"], configs["ddpm"], configs["edm-offset"]
    paradigm_keys = {"diffusion.paradigm", "diffusion.sampler"}
    offset_keys = {"diffusion.edm.sigma_offset_noise", "diffusion.ddpm.offset_noise"}
    assert {k for k in edm if edm[k] != ddpm[k]} == paradigm_keys
    assert (edm["diffusion.paradigm"], ddpm["diffusion.paradigm"]) == ("edm", "ddpm")
    assert all(c[k] == 0.0 for c in (edm, ddpm) for k in offset_keys)
    assert {k for k in edm if edm[k] != offset[k]} == offset_keys and offset["diffusion.edm.sigma_offset_noise"] == 0.3
    assert edm["diffusion.train_chain"] == ddpm["diffusion.train_chain"] == 1
    if "edm-chain2" in configs:
        chained = configs["edm-chain2"]
        assert {k for k in edm if edm[k] != chained[k]} == {"diffusion.train_chain"}
        assert chained["diffusion.train_chain"] == 2
    assert edm["training.batch_size"] == 8  # user overrides reach every arm alike
    assert edm["denoiser_optim.warmup_steps"] <= max(1, ddpm_vs_edm.settings_for(profile).train_steps // 10)


class HalfwayNet(nn.Module):
    """ε for which D(x~) = (x~ + x0*) / 2, x0* = 1.2 · last frame + 0.0123: D depends on x (so per-step rounding
    carries into the next step) and leaves both [-1, 1] and the 8-bit grid (so clipping and quantising differ)."""

    def __init__(self, alphas_cumprod: torch.Tensor) -> None:
        super().__init__()
        self.alphas_cumprod = alphas_cumprod

    def forward(self, x_in, c_noise, obs_hist, act_hist):
        ab = self.alphas_cumprod[torch.round(c_noise * 1000 - 1).long()].float().view(-1, 1, 1, 1)
        return 0.5 * (x_in - ab.sqrt() * (1.2 * obs_hist[:, -1] + 0.0123)) / (1 - ab).sqrt()


def on_8bit_grid(x: torch.Tensor) -> bool:
    levels = (x + 1) * 127.5
    return bool(torch.allclose(levels, levels.round(), atol=1e-4))


@pytest.mark.parametrize("n", [1, 3])
def test_ddpm_sampling_clips_x0_each_step_and_quantises_the_final_frame_only(n):
    """The released ddpm branch: diffusers' DDPMScheduler step with clip_sample (x0 clipped to [-1, 1]), the
    frame quantised to 8 bits once, at the end. Replayed by hand from the ancestral posterior step."""
    paradigm = build_paradigm("ddpm")
    net = HalfwayNet(paradigm.alphas_cumprod)
    wm = WorldModel(net, paradigm, "ddpm_ancestral", num_steps=n, num_history=2)
    obs, act = torch.rand(3, 2, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1, torch.zeros(3, 2).long()
    got = wm.predict_next(obs, act, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    sigmas = paradigm.sigmas(n).tolist()
    x = (1 + sigmas[0] ** 2) ** 0.5 * torch.randn(3, 3, 8, 8, generator=gen)
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        t = paradigm.sigma_to_timestep(torch.full((3,), s))
        raw = x - s * net(x * paradigm.alphas_cumprod[t].sqrt().float().view(-1, 1, 1, 1), (t + 1) / 1000, obs, act)
        assert not on_8bit_grid(raw.clamp(-1, 1)) and (raw.abs() > 1).any()
        x0 = raw.clamp(-1, 1)
        if s_next == 0:
            x = x0
            break
        ratio = (s_next / s) ** 2
        x = x0 + ratio * (x - x0) + s_next * (1 - ratio) ** 0.5 * torch.randn(x.shape, generator=gen)
    torch.testing.assert_close(got, quantize_8bit(x))
    assert on_8bit_grid(got)
    if n > 1:  # the earlier path (x0 quantised at every step) gives other frames
        paradigm.cfg.quantize_each_step = True
        assert not torch.equal(wm.predict_next(obs, act, generator=torch.Generator().manual_seed(0)), got)


def test_ddpm_quantize_each_step_keeps_the_earlier_behaviour():
    x = torch.linspace(-1.3, 1.3, 96).view(2, 3, 4, 4)  # D ≈ x at the lowest noise level: some values outside [-1, 1]
    for each_step in (False, True):
        paradigm = build_paradigm("ddpm", quantize_each_step=each_step)
        sigma = paradigm.sigmas(3)[-2:-1].expand(2)
        out = paradigm.denoise(lambda x_in, c_noise, cond: 0.6 * x_in - 0.9, x, sigma, None)
        assert out.abs().max() == 1 and on_8bit_grid(out) == each_step


def test_grid_rejects_other_games_and_overrides_of_what_it_varies(tmp_path):
    suite = get_suite("ablation_ddpm_vs_edm")
    with pytest.raises(ValueError, match="Breakout only"):
        suite.stages(SuiteOptions(profile="smoke", out=tmp_path, games=("Pong",)))
    with pytest.raises(ValueError, match="drop the override"):
        suite.stages(SuiteOptions(profile="smoke", out=tmp_path, overrides=("diffusion.sampler=heun",)))
    with pytest.raises(ValueError, match="sets .*diffusion.edm.sigma_offset_noise.* itself"):
        suite.stages(SuiteOptions(profile="smoke", out=tmp_path, overrides=("diffusion.edm.sigma_offset_noise=0.3",)))


def _curves(drift: dict[tuple[str, int], float], half_ci: float = 0.001, mse: float = 0.01) -> pd.DataFrame:
    """Mean curves at steps 1 and 100: drift (nn_mse) at t = 100 as given, with CIs of +- half_ci."""
    rows = []
    for (arm, n), value in drift.items():
        for step, v in ((1, value / 2), (100, value)):
            rows.append({"arm": arm, "num_steps": n, "nfe": n, "step": step, "mse": mse * step, "psnr": 20.0,
                         "nn_mse": v, "nn_mse_ci_low": v - half_ci, "nn_mse_ci_high": v + half_ci})
    return pd.DataFrame(rows)


PAPER_LIKE = {("EDM", 1): 0.004, ("EDM", 10): 0.004, ("DDPM", 1): 0.03, ("DDPM", 10): 0.005,
              (REAL_SETTING, 0): 0.003}


def test_finding_appears_only_when_all_three_checks_hold():
    text, held = finding(_curves(PAPER_LIKE), ("EDM", "DDPM"), horizon=100)
    assert held and "The paper's finding appears" in text
    assert "(a) at n = 1 DDPM drifts more than EDM (0.03 [0.029, 0.031] vs 0.004 [0.003, 0.005]): yes" in text
    assert "Real frames score 0.003 [0.002, 0.004]" in text
    edm_drifts = {**PAPER_LIKE, ("EDM", 1): 0.02}  # (c) fails: EDM at n = 1 drifts more than at n = 10
    text, held = finding(_curves(edm_drifts), ("EDM", "DDPM"), horizon=100)
    assert not held and "(c) EDM at n = 1 drifts no more than at n = 10 (0.02 [0.019, 0.021] vs 0.004" in text
    edm_sharp_drifts = {**PAPER_LIKE, ("EDM", 10): 0.02}  # all checks hold, but EDM drifts at n = 10
    text, held = finding(_curves(edm_sharp_drifts), ("EDM", "DDPM"), horizon=100)
    assert held and "Unlike the paper's Figure 3, EDM itself drifts more at n ∈ {10} than at n = 1." in text
    overlapping = finding(_curves(PAPER_LIKE, half_ci=0.02), ("EDM", "DDPM"), horizon=100)
    assert overlapping[1] is False  # the CIs overlap: no check of (a) or (b) is significant
    assert finding(_curves({("EDM", 1): 0.1}), ("EDM", "DDPM"), horizon=100)[1] is None


def test_seed_spread_enters_the_test_two_seeds_that_disagree_are_not_more():
    """mean_curves: the interval of an arm over seeds is the union of the seeds' CIs over rollouts, so 'more' needs
    every seed of one arm above every seed of the other; one seed of DDPM at EDM's level voids check (a)."""
    def rows(arm, n, seed, value):
        return [{"arm": arm, "seed": seed, "num_steps": n, "nfe": n, "step": t, "mse": 0.01, "psnr": 20.0,
                 "nn_mse": value, "nn_mse_ci_low": value - 0.001, "nn_mse_ci_high": value + 0.001} for t in (1, 100)]
    base = [r for seed in (0, 1) for arm, n, v in (("EDM", 1, 0.004), ("EDM", 10, 0.004), ("DDPM", 10, 0.005))
            for r in rows(arm, n, seed, v)]
    agree = mean_curves(pd.DataFrame(base + rows("DDPM", 1, 0, 0.03) + rows("DDPM", 1, 1, 0.02)))
    ddpm1 = agree[(agree["arm"] == "DDPM") & (agree["num_steps"] == 1) & (agree["step"] == 100)].iloc[0]
    assert (ddpm1["nn_mse"], ddpm1["nn_mse_ci_low"], ddpm1["nn_mse_ci_high"]) == pytest.approx((0.025, 0.019, 0.031))
    assert finding(agree, ("EDM", "DDPM"), horizon=100)[1] is True
    disagree = mean_curves(pd.DataFrame(base + rows("DDPM", 1, 0, 0.03) + rows("DDPM", 1, 1, 0.0045)))
    text, held = finding(disagree, ("EDM", "DDPM"), horizon=100)
    assert held is False and "(a) at n = 1 DDPM drifts more than EDM" in text and "every seed" in text


def test_summary_reads_copy_baseline_growth_and_chain_effect():
    curves = _curves({**PAPER_LIKE, ("EDM chained", 1): 0.006, ("EDM chained", 10): 0.005,
                      (COPY_SETTING, 0): 0.003}, mse=0.01)
    curves.loc[curves["arm"] == COPY_SETTING, "mse"] = 0.005  # the models' 0.01 at t = 1 lose to copying
    curves["static_mse"] = np.where(curves["arm"] == "DDPM", curves["num_steps"] * 0.001, 0.0)
    paragraphs = summary_text(curves, ["EDM", "DDPM", "EDM chained"], ("EDM", "DDPM"), ("EDM", "EDM chained"), 100)
    assert len(paragraphs) == 4 and paragraphs[2].startswith("Test of the paper's finding")
    text = " ".join(paragraphs)
    assert "0 of 6 (arm, n) settings beat copying the last real frame (MSE 0.005); their error is ×2 the copy's" in text
    assert "No model has learned the dynamics yet" in text
    assert "EDM: from t = 1 to t = 100 the error against the real continuation grows ×100 over n ∈ {1, 10}" in text
    assert "Chained training (EDM chained vs EDM, same paradigm), drift at t = 100: n = 1: 0.006" in text
    assert "grows ×1 to ×1" not in text
    assert ("At t = 100 the distance to the nearest real frame, as a multiple of the real frames' (0.003), is: "
            "EDM n = 1: ×1.33, n = 10: ×1.33; DDPM n = 1: ×10, n = 10: ×1.67;") in text
    assert "never-changing pixels (walls, borders) is EDM 0; DDPM 0.001–0.01; EDM chained 0 over n (real frames: 0)" \
        in text


def test_expert_return_says_why_it_is_missing():
    assert "no complete game" in expert_return({"expert_mean_return": None})
    assert expert_return({"expert_mean_return": 412.13, "num_full_games": 15}) == "412.1 (15 full games)"


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # CIs of an all-infinite PSNR
def test_suite_end_to_end_at_smoke_scale(tmp_path, monkeypatch):
    tiny = dataclasses.replace(ddpm_vs_edm.PROFILE_SETTINGS["smoke"], num_frames=600, random_games=1,
                               train_steps=4, warmup_steps=1, checkpoint_every=2, horizon=12, num_steps=(1, 2, 3),
                               rollouts=2, clips=2, long_steps=(1,), short_horizon=10)
    monkeypatch.setitem(ddpm_vs_edm.PROFILE_SETTINGS, "smoke", tiny)
    opts = SuiteOptions(profile="smoke", out=tmp_path / "runs", report_root=tmp_path / "reports", overrides=TINY,
                        seeds=1)
    suite = get_suite("ablation_ddpm_vs_edm")
    for stage in suite.stages(opts):
        outcome = launch(stage, "debug", log_dir=tmp_path / "logs", progress=False)
        assert outcome.ok, outcome.summary()
    md, pdf = suite.report(opts)
    tables = opts.report_dir("ablation_ddpm_vs_edm") / "tables"
    error_at = pd.read_csv(tables / "error_at_t.csv")
    arms = {"diamond DDPM", "diamond EDM", "diamond EDM offset 0.3", "diamond EDM chained"}
    expected = {(a, n) for a in arms for n in (1, 2, 3)}
    assert set(zip(error_at["arm"], error_at["n"])) == expected | {(COPY_SETTING, 0)}
    assert list(error_at.columns[3:]) == ["t=1", "t=10", "t=12"]
    short_n = error_at[error_at["n"] > 1]
    assert (short_n["t=12"] == "–").all() and (short_n["t=10"] != "–").all()  # n = 2, 3 stop at the short horizon
    drift = pd.read_csv(tables / "drift_nn_mse.csv")
    assert set(zip(drift["arm"], drift["n"])) == expected | {(COPY_SETTING, 0), (REAL_SETTING, 0)}
    short = pd.read_csv(tables / "short_horizon.csv")
    assert set(short["arm"]) == arms | {COPY_SETTING}
    clips = pd.read_csv(tables / "clip_metrics.csv")
    assert set(zip(clips["arm"], clips["n"])) == expected and clips["FID"].isna().all()
    settings = pd.read_csv(tables / "settings.csv").set_index("setting")
    chain = settings.loc["chained predictions per segment"]
    assert chain.astype(str).to_dict() == {"diamond EDM": "1", "diamond DDPM": "1", "diamond EDM offset 0.3": "1",
                                           "diamond EDM chained": "2"}
    offsets = settings.loc["EDM offset noise σ_offset"].astype(float).to_dict()
    assert offsets == {"diamond EDM": 0.0, "diamond DDPM": 0.0, "diamond EDM offset 0.3": 0.3,
                       "diamond EDM chained": 0.0}
    assert str(settings.loc["warm-up steps", "diamond EDM"]) == "1"
    last = pd.read_csv(tables / "last_step.csv").set_index("arm")  # the cause section: EDM arms only
    assert set(last.index) == {"diamond EDM", "diamond EDM offset 0.3", "diamond EDM chained"}
    assert last.loc["diamond EDM", "c_skip"] == pytest.approx(1.0, abs=1e-4)
    assert last.loc["diamond EDM offset 0.3", "c_skip"] == pytest.approx(0.25 / (0.25 + 0.09 + 4e-6), rel=1e-6)
    variants = pd.read_csv(tables / "sampler_variants.csv")  # n = 10 is not in this study: its variant is not shown
    assert set(variants["arm"]) == {"diamond EDM", "diamond EDM offset 0.3", "diamond EDM chained"}
    assert set(variants["n"]) == {3}
    assert set(variants["variant"]) == {"n=3, σ_min=0.05", "n=3, σ_min=0.3", "n=3, start N(0, σ_max²)"}
    objects = pd.read_csv(tables / "object_metrics.csv").set_index("model")  # stage 3: the object metrics
    assert {f"{a} s0, n=1" for a in arms} | {"emulator (ceiling)", "repeat last frame", "empty playfield"} == \
        set(objects.index)
    assert objects.loc["emulator (ceiling)", "object persistence"].startswith("1.000")
    curve = pd.read_csv(tables / "sigma_curve.csv")
    assert set(curve["arm"]) == arms and (curve["mse"] >= 0).all()
    text = md.read_text()
    assert "Profile **smoke**" in text and "Test of the paper's finding" in text and "drift at t = 10" in text
    assert "Why EDM drifts at n ≥ 2" in text and "at σ_min = 0.002 the preconditioning sees" in text
    for figure in ("rollout_grid_1.png", "rollout_grid_2.png", "error_vs_horizon_per_n_1.png",
                   "error_vs_horizon_per_arm.png", "drift_per_n_1.png", "drift_per_arm.png", "sigma_curve_mse.png",
                   "sigma_curve_shift.png"):
        assert f"figures/{figure}" in text
    reader = PdfReader(pdf)
    assert sum(len(page.images) for page in reader.pages) == 8
    pdf_text = " ".join(page.extract_text() for page in reader.pages)
    assert "diamond DDPM" in pdf_text and "diamond EDM" in pdf_text and "Figure 3" in pdf_text
