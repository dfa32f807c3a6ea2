"""Suite ablation_ddpm_vs_edm: its grid, its summary logic, and the whole pipeline at smoke scale."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch
from pypdf import PdfReader

from ablations import ddpm_vs_edm
from ablations.registry import SuiteOptions, get_suite
from evaluation.wm_protocol import COPY_SETTING
from reports.ddpm_vs_edm import summary_text
from slurm.launcher import launch

torch.set_num_threads(1)
TINY = ("denoiser.channels=[8,8]", "denoiser.depths=[1,1]", "denoiser.cond_dim=16", "training.batch_size=2")


def test_grid_is_dataset_then_both_paradigms_on_it(tmp_path):
    opts = SuiteOptions(profile="paper", out=tmp_path, seeds=2)
    (dataset,), models = get_suite("ablation_ddpm_vs_edm").stages(opts)
    assert dataset.kwargs["num_frames"] == 100_000 and dataset.entry == "ablations.static_data:run"
    assert [m.name for m in models] == ["wm-edm-Breakout-s0", "wm-edm-Breakout-s1", "wm-ddpm-Breakout-s0",
                                        "wm-ddpm-Breakout-s1"]
    for m in models:
        assert m.kwargs["dataset_dir"] == str(dataset.run_dir / "dataset")
        assert m.kwargs["protocol"]["horizon"] == 1000 and m.kwargs["protocol"]["num_steps"] == [1, 2, 3, 5, 10]
        assert m.kwargs["train_steps"] == models[0].kwargs["train_steps"] and m.gpu_hours > 0
    assert models[2].kwargs["overrides"][-2:] == ["diffusion.paradigm=ddpm", "diffusion.sampler=ddpm_ancestral"]
    assert models[0].kwargs["overrides"][-2:] == ["diffusion.paradigm=edm", "diffusion.sampler=euler"]


def test_grid_rejects_other_games_and_overrides_of_what_it_varies(tmp_path):
    suite = get_suite("ablation_ddpm_vs_edm")
    with pytest.raises(ValueError, match="Breakout only"):
        suite.stages(SuiteOptions(profile="smoke", out=tmp_path, games=("Pong",)))
    with pytest.raises(ValueError, match="drop the override"):
        suite.stages(SuiteOptions(profile="smoke", out=tmp_path, overrides=("diffusion.sampler=heun",)))


def _table(ddpm: list[float], edm: list[float], copy: float | None = None) -> pd.DataFrame:
    rows = [{"paradigm": p, "n": n, "NFE": n, "MSE t=10": 0.001, "MSE t=100": v}
            for p, values in (("DDPM", ddpm), ("EDM", edm)) for n, v in zip((1, 3), values)]
    if copy is not None:
        rows.append({"paradigm": COPY_SETTING, "n": 0, "NFE": 0, "MSE t=10": copy, "MSE t=100": copy})
    return pd.DataFrame(rows)


def test_summary_names_where_ddpm_drifts_more():
    text = summary_text(_table(ddpm=[0.09, 0.03], edm=[0.01, 0.01]), horizon=100)
    assert "higher than EDM's for n ∈ {1, 3} (×3 to ×9)" in text and "at every n" in text
    assert "DDPM's largest final error is at n = 1 (the fewest steps)" in text
    mixed = summary_text(_table(ddpm=[0.09, 0.005], edm=[0.01, 0.01], copy=0.002), horizon=100)
    assert "only at n ∈ {1}" in mixed and "lower or equal for n ∈ {3}" in mixed
    assert "MSE 0.002 at t = 10; EDM n=1, EDM n=3, DDPM n=1, DDPM n=3 beat it" in mixed
    untrained = summary_text(_table(ddpm=[0.09, 0.03], edm=[0.01, 0.01], copy=0.0005), horizon=100)
    assert "no model beats it" in untrained
    assert "Only EDM finished" in summary_text(_table([1, 1], [1, 1]).query("paradigm == 'EDM'"), horizon=100)


def test_suite_end_to_end_at_smoke_scale(tmp_path, monkeypatch):
    tiny = dataclasses.replace(ddpm_vs_edm.PROFILE_SETTINGS["smoke"], num_frames=600, random_games=1,
                               train_steps=4, checkpoint_every=2, horizon=12, num_steps=(1, 3), rollouts=2, clips=2)
    monkeypatch.setitem(ddpm_vs_edm.PROFILE_SETTINGS, "smoke", tiny)
    opts = SuiteOptions(profile="smoke", out=tmp_path / "runs", report_root=tmp_path / "reports", overrides=TINY)
    suite = get_suite("ablation_ddpm_vs_edm")
    for stage in suite.stages(opts):
        outcome = launch(stage, "debug", log_dir=tmp_path / "logs", progress=False)
        assert outcome.ok, outcome.summary()
    md, pdf = suite.report(opts)
    tables = opts.report_dir("ablation_ddpm_vs_edm") / "tables"
    error_at = pd.read_csv(tables / "error_at_t.csv")
    expected = {("DDPM", 1), ("DDPM", 3), ("EDM", 1), ("EDM", 3)}
    assert set(zip(error_at["paradigm"], error_at["n"])) == expected | {(COPY_SETTING, 0)}
    assert list(error_at.columns[3:]) == ["MSE t=10", "MSE t=12", "PSNR t=10", "PSNR t=12"]
    assert (error_at["MSE t=12"] > 0).all()
    clips = pd.read_csv(tables / "clip_metrics.csv")
    assert set(zip(clips["paradigm"], clips["n"])) == expected and clips["FID"].isna().all()
    text = md.read_text()
    assert "Profile **smoke**" in text and "DDPM's MSE against the real frames" in text
    for figure in ("rollout_grid.png", "error_vs_horizon_per_n.png", "error_vs_horizon_per_paradigm.png"):
        assert f"figures/{figure}" in text
    reader = PdfReader(pdf)
    assert sum(len(page.images) for page in reader.pages) == 3
    pdf_text = " ".join(page.extract_text() for page in reader.pages)
    assert "DDPM" in pdf_text and "EDM" in pdf_text and "Figure 3" in pdf_text
