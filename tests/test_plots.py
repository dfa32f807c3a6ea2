"""Every plot writes a real, non-blank PNG from fixture data and rejects bad input clearly."""

import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg

from evaluation import aggregate, baselines, plots


def read_png(path, min_h=100, min_w=100):
    """Read the PNG back; it must be an RGB(A) image of reasonable size that is not one flat colour."""
    assert path.suffix == ".png" and path.stat().st_size > 1000
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4), img.shape
    assert img.shape[0] >= min_h and img.shape[1] >= min_w, img.shape
    assert img[..., :3].var() > 1e-4
    return img


@pytest.fixture(scope="module")
def runs():
    ours = baselines.published_runs(["DIAMOND"]).assign(algorithm="ours")
    return pd.concat([ours, baselines.published_runs(["IRIS", "MuZero"])], ignore_index=True)


def fixture_aggregates():
    rows = []
    for algorithm, (mean, iqm, ci) in {"ours": (1.4, 0.6, True), "IRIS": (1.0, 0.5, True),
                                       "TWM": (0.96, 0.46, False)}.items():
        for metric, value in (("mean", mean), ("iqm", iqm)):
            low, high = (value - 0.1, value + 0.1) if ci else (np.nan, np.nan)
            rows.append({"algorithm": algorithm, "metric": metric, "value": value, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def test_interval_estimates(tmp_path):
    out = plots.plot_interval_estimates(fixture_aggregates(), tmp_path / "figs" / "intervals.png")
    assert out == tmp_path / "figs" / "intervals.png"
    img = read_png(out)
    assert img.shape[1] > img.shape[0]  # two metric panels side by side


def test_interval_estimates_from_real_aggregates(tmp_path, runs):
    agg = aggregate.aggregate_metrics(runs, reps=30)
    read_png(plots.plot_interval_estimates(agg, tmp_path / "agg.png", metrics=["median", "iqm", "mean"]))


def test_performance_profiles(tmp_path, runs):
    prof = aggregate.performance_profiles(runs, taus=np.linspace(0, 8, 33), reps=30)
    img = read_png(plots.plot_performance_profiles(prof, tmp_path / "profiles.png"))
    assert img.shape[0] > 300 and img.shape[1] > 500


def test_per_game_bars(tmp_path, runs):
    both = pd.concat([runs, baselines.table1().query("algorithm == 'TWM'")], ignore_index=True)
    img = read_png(plots.plot_per_game(both, tmp_path / "per_game.png", algorithms=["ours", "IRIS", "TWM"]))
    assert img.shape[1] > 1.5 * img.shape[0]  # 26 games laid out horizontally


def test_error_vs_horizon(tmp_path):
    steps = np.arange(0, 1001, 100)
    rows = [{"setting": setting, "step": t, "metric": metric, "value": scale * k * np.log1p(t),
             "ci_low": 0.9 * scale * k * np.log1p(t), "ci_high": 1.1 * scale * k * np.log1p(t)}
            for k, setting in enumerate(["EDM n=1", "DDPM n=10"], start=1) for t in steps
            for metric, scale in (("LPIPS", 0.05), ("MSE", 1.0))]
    img = read_png(plots.plot_error_vs_horizon(pd.DataFrame(rows), tmp_path / "horizon.png"))
    assert img.shape[1] > 1.5 * img.shape[0]  # one panel per metric
    no_ci = pd.DataFrame(rows).drop(columns=["ci_low", "ci_high", "metric"])
    read_png(plots.plot_error_vs_horizon(no_ci, tmp_path / "horizon_plain.png", logx=True))


def test_rollout_grid_shows_the_frames(tmp_path):
    red = np.zeros((6, 3, 32, 32), dtype=np.uint8)
    red[:, 0] = 255  # channels-first, pure red
    noise = np.random.default_rng(0).integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)  # channels-last
    img = read_png(plots.plot_rollout_grid({"EDM n=1": red, "DDPM n=10": noise}, [0, 2, 5],
                                           tmp_path / "grid.png", title="rollouts"))
    rgb = img[..., :3]
    pure_red = (rgb[..., 0] > 0.95) & (rgb[..., 1] < 0.05) & (rgb[..., 2] < 0.05)
    assert pure_red.sum() > 3 * 32 * 32  # the three red frames are drawn at least at native size


def test_bad_inputs_raise_clear_errors(tmp_path):
    frames = np.zeros((4, 3, 8, 8), dtype=np.uint8)
    with pytest.raises(ValueError, match="must end in .png"):
        plots.plot_interval_estimates(fixture_aggregates(), tmp_path / "x.pdf")
    with pytest.raises(ValueError, match="must be a uint8 array"):
        plots.plot_rollout_grid({"a": frames.astype(np.float32)}, [0], tmp_path / "g.png")
    with pytest.raises(ValueError, match=r"Time index\(es\) \[4\] out of range for rollout 'a' of 4 frames"):
        plots.plot_rollout_grid({"a": frames}, [0, 4], tmp_path / "g.png")
    with pytest.raises(ValueError, match="expected 3 channels"):
        plots.plot_rollout_grid({"a": np.zeros((4, 2, 8, 8), dtype=np.uint8)}, [0], tmp_path / "g.png")
    with pytest.raises(ValueError, match=r"needs column\(s\) \['value'\]"):
        plots.plot_error_vs_horizon(pd.DataFrame({"setting": ["a"], "step": [0]}), tmp_path / "h.png")
    with pytest.raises(ValueError, match=r"Algorithm\(s\) \['BBF'\] not in the table"):
        plots.plot_interval_estimates(fixture_aggregates(), tmp_path / "i.png", algorithms=["BBF"])
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize("zero_ci", [True, False])
def test_interval_markers_at_zero_are_not_clipped(zero_ci):
    """Scores of 0 (e.g. an untrained agent) with CIs starting at 0, or point estimates only: every marker and
    bar must lie strictly inside the panel, not on its edge."""
    rows = [{"algorithm": "zero", "metric": "iqm", "value": 0.0, "ci_low": 0.0 if zero_ci else np.nan,
             "ci_high": 0.0 if zero_ci else np.nan},
            {"algorithm": "ours", "metric": "iqm", "value": 0.2, "ci_low": 0.0, "ci_high": 0.4}]
    fig = plots.interval_figure(pd.DataFrame(rows), metrics=["iqm"])
    low, high = fig.axes[0].get_xlim()
    assert low < -0.01 and high > 0.41, (low, high)
    only_zero = plots.interval_figure(pd.DataFrame(rows[:1]), metrics=["iqm"])
    low, high = only_zero.axes[0].get_xlim()
    assert low < -0.01 and high > 0.01, (low, high)
