"""Figure 3 report fixes (issue 28 item 4): the short grid's caption names its real last column, curves of squared
errors use log y, no interval of a squared error reaches below 0, and policy τ is shown per run beside the pooled
one."""

import numpy as np
import pandas as pd
import pytest

from evaluation.wm_protocol import default_grid_times
from reports import ddpm_vs_edm
from reports.ddpm_vs_edm import ArmRuns, curve_figures, rollout_grid
from reports.ddpm_vs_edm_text import mean_curves
from reports.decision import arm_table
from slurm.launcher import RunSpec


def test_short_grid_ends_at_the_last_kept_time_not_the_horizon(tmp_path):
    times = default_grid_times(1000)
    frames = np.zeros((1, len(times), 3, 8, 8), np.uint8)
    np.savez(tmp_path / "frames.npz", times=np.array(times), starts=np.zeros((1, 2), int), real=frames,
             **{"n=1": frames})
    spec = RunSpec("wm-edm", tmp_path, "ablations.static_wm:run", {})
    results = {"wm-edm": {"rollouts": {"frames_file": "frames.npz"}, "num_steps_list": [1]}}
    _, same, last = rollout_grid([ArmRuns("EDM", (spec,))], results, tmp_path / "grid.png", max_time=120)
    assert same and last == 100  # the kept times are log-spaced: none between 100 and 200
    assert rollout_grid([ArmRuns("EDM", (spec,))], results, tmp_path / "grid.png")[2] == 1000


def test_intervals_of_squared_errors_stop_at_zero_and_psnr_is_left_alone():
    errors = pd.DataFrame([{"arm": "copy", "num_steps": 0, "nfe": 0, "step": 1, "mse": 1e-5, "mse_ci_low": -2e-5,
                            "mse_ci_high": 4e-5, "static_mse": 0.0, "static_mse_ci_low": -1e-6,
                            "static_mse_ci_high": 1e-6, "nn_mse": 0.01, "nn_mse_ci_low": 0.005,
                            "nn_mse_ci_high": 0.015, "psnr": 30.0}])
    curves = mean_curves(errors)
    assert curves.loc[0, "mse_ci_low"] == 0.0 and curves.loc[0, "static_mse_ci_low"] == 0.0
    assert curves.loc[0, "nn_mse_ci_low"] == 0.005 and curves.loc[0, "mse_ci_high"] == 4e-5


def test_error_and_drift_curves_use_log_y(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(ddpm_vs_edm.plots, "plot_error_vs_horizon", lambda tidy, path, **kw: calls.append(kw) or path)
    curves = pd.DataFrame([{"arm": arm, "num_steps": n, "step": t, "mse": v * t, "mse_ci_low": 0.0, "mse_ci_high": 1.0}
                           for arm, n, v in (("EDM", 1, 0.001), ("DDPM", 1, 0.4), ("copy last frame", 0, 0.01))
                           for t in (1, 2)])
    curve_figures(curves, "mse", "error", tmp_path)
    assert calls and all(kw.get("logy") and kw.get("logx") for kw in calls)


def test_policy_tau_is_shown_per_run_beside_the_pooled_one():
    def tau(value, low, high):
        return {"policy_tau": value, "policy_tau_ci_low": low, "policy_tau_ci_high": high}

    pooled = [{"arm": "EDM", "setting": "n=3", "runs": 2, **tau(-0.8, -1.0, -0.2),
               "policy_tau_per_run": [tau(-0.4, -0.949, 0.4), tau(-1.0, -1.0, -0.6)]}]
    table = arm_table(pooled, ["policy_tau"])
    assert table.loc[0, "policy Kendall τ"] == "-0.800 [-1.000, -0.200]"
    assert table.loc[0, "policy τ per run"] == "-0.400 [-0.949, 0.400]; -1.000 [-1.000, -0.600]"
    assert "policy τ per run" not in arm_table([{**pooled[0], "action_accuracy": 0.5, "action_accuracy_ci_low": 0.4,
                                                  "action_accuracy_ci_high": 0.6}], ["action_accuracy"])


@pytest.mark.parametrize("measure", ["mse", "nn_mse"])
def test_curve_figures_draw_on_log_axes_without_error(tmp_path, measure):
    rows = [{"arm": arm, "num_steps": 1, "step": t, measure: v, f"{measure}_ci_low": 0.0, f"{measure}_ci_high": 2 * v}
            for arm, v in (("EDM", 0.002), ("DDPM", 0.4)) for t in (1, 2, 5)]
    paths = curve_figures(pd.DataFrame(rows), measure, measure, tmp_path)
    assert all(p.is_file() for p in paths)
