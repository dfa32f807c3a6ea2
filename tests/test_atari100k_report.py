"""Atari 100k report from fake run folders: tables beside Table 1, aggregates, banners, PDF contents."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from pypdf import PdfReader  # noqa: E402

from ablations import atari100k  # noqa: E402
from ablations.registry import SuiteOptions  # noqa: E402
from diamond.loop.config import build_config, config_hash, to_dict  # noqa: E402
from diamond.run.io import append_jsonl, atomic_write_json, atomic_write_yaml  # noqa: E402
from evaluation import baselines  # noqa: E402
from evaluation.atari import HUMAN_SCORES, RANDOM_SCORES  # noqa: E402
from reports import common  # noqa: E402
from reports.atari100k import OURS, PAPER, BootstrapReps, build_report  # noqa: E402

GAMES = ("Breakout", "Pong", "Boxing")
SEEDS = 2
REPS = BootstrapReps(aggregate=40, profile=40, poi=10)


def fake_grid(root: Path, profile: str = "smoke", overrides: tuple[str, ...] = (),
              games: tuple[str, ...] | None = GAMES, seeds: int = SEEDS) -> tuple[SuiteOptions, list]:
    """Write config.yaml + result.json for games x seeds (default 3 x 2), scores at random HNS in [0, 2]."""
    opts = SuiteOptions(profile=profile, out=root / "runs", games=games, seeds=seeds, report_root=root / "reports",
                        overrides=overrides)
    specs = atari100k.stages(opts)[0]
    rng = np.random.default_rng(0)
    for spec in specs:
        game, seed = spec.kwargs["game"], spec.kwargs["seed"]
        cfg = build_config(profile, list(overrides), seed=seed, **{"env.game": game})
        hns = float(rng.uniform(0.0, 2.0))
        score = RANDOM_SCORES[game] + hns * (HUMAN_SCORES[game] - RANDOM_SCORES[game])
        atomic_write_yaml(spec.run_dir / "config.yaml", to_dict(cfg))
        atomic_write_json(spec.run_dir / "result.json", {
            "game": game, "seed": seed, "profile": profile, "config_hash": config_hash(cfg),
            "episode_returns": [score, score], "mean_return": score, "score": score, "hns": hns, "num_episodes": 2,
            "env_steps": 600, "epochs": 3, "wall_time_s": 50.0 + 10 * seed, "device": "cpu", "nfe": 3})
    return opts, specs


def build(opts: SuiteOptions, specs: list) -> tuple[Path, Path]:
    """The report as the suite builds it: its context and constants handed in."""
    return build_report(opts.report_context(atari100k.NAME), specs, default_seeds=atari100k.DEFAULT_SEEDS, reps=REPS)


def read_runs(md: Path) -> pd.DataFrame:
    runs = pd.read_csv(md.parent / "tables" / "runs.csv")
    return runs.assign(game=runs["run"].str.rsplit("-s", n=1).str[0])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[SuiteOptions, Path, Path]:
    opts, _ = fake_grid(tmp_path_factory.mktemp("a100k"))
    md, pdf = build(opts, atari100k.stages(opts)[0])
    return opts, md, pdf


def test_per_game_table_has_published_and_our_columns(built) -> None:
    opts, md, _ = built
    table = pd.read_csv(md.parent / "tables" / "per_game.csv").set_index("game")
    assert list(table.index) == ["Boxing", "Breakout", "Pong"], "games in Table 1 order"
    for column in ("Random", "Human", "SimPLe", "TWM", "IRIS", "DreamerV3", "STORM", PAPER, OURS, "seeds"):
        assert column in table.columns, column
    t1 = baselines.table1().set_index(["algorithm", "game"])["score"]
    assert table.loc["Breakout", PAPER] == t1[("DIAMOND", "Breakout")] == 132.5
    runs = read_runs(md)
    pong = runs[runs["game"] == "Pong"]["score"]
    assert table.loc["Pong", OURS] == f"{pong.mean():.1f} ± {pong.std(ddof=1):.1f}"
    assert (table["seeds"] == SEEDS).all()
    header = next(line for line in md.read_text().splitlines() if line.startswith("| game | Random |"))
    assert header.endswith(f"| STORM | {PAPER} | {OURS} | seeds |")


def test_aggregates_match_independent_computation(built) -> None:
    _, md, _ = built
    runs = read_runs(md)
    agg = pd.read_csv(md.parent / "tables" / "aggregates_long.csv")
    ours = agg[(agg["algorithm"] == OURS)].set_index("metric")
    assert ours.loc["mean", "value"] == pytest.approx(runs["hns"].mean())
    assert ours.loc["median", "value"] == pytest.approx(runs.groupby("game")["hns"].mean().median())
    assert bool(ours.loc["mean", "ci_available"]) and ours.loc["mean", "ci_low"] <= ours.loc["mean", "value"]
    paper = agg[(agg["algorithm"] == PAPER)].set_index("metric")
    released = baselines.published_runs(["DIAMOND"])
    released = released[released["game"].isin(GAMES)]
    expected = np.mean([(s - RANDOM_SCORES[g]) / (HUMAN_SCORES[g] - RANDOM_SCORES[g])
                        for g, s in zip(released["game"], released["score"])])
    assert paper.loc["mean", "value"] == pytest.approx(expected), "published runs restricted to our 3 games"
    assert set(agg["n_games"]) == {3}
    means_only = agg[agg["algorithm"].isin(["TWM", "DreamerV3"])]
    assert len(means_only) == 8 and not means_only["ci_available"].any()
    table = pd.read_csv(md.parent / "tables" / "aggregates.csv").set_index("agent")
    superhuman = int((runs.groupby("game")["hns"].mean() >= 1).sum())
    assert table.loc[OURS, "#superhuman"] == f"{superhuman} / 3"
    text = md.read_text()
    assert f"P({OURS} > {PAPER})" in text and "same 3 games" in text


def test_banners_and_settings(built) -> None:
    opts, md, _ = built
    text = md.read_text()
    banners = [line for line in text.splitlines() if line.startswith("> **Warning:**")]
    assert len(banners) == 2, banners
    assert "Profile **smoke**" in banners[0] and "not comparable" in banners[0]
    assert "3 of the 26 games" in banners[1] and "2 of the 5 seeds" in banners[1]
    settings = pd.read_csv(md.parent / "tables" / "settings.csv").set_index("setting")["value"]
    assert settings["profile"] == "smoke" and settings["sampler"] == "euler"
    assert settings["run time summed over runs (not the suite's wall time)"] == "5.5 min"  # 3 games x (50 + 60) s
    assert settings["wall time per run (mean, min, max)"] == "55 s, 50 s, 60 s"
    assert "no `--set` overrides" in text


def test_pdf_pages_and_figures(built) -> None:
    _, md, pdf = built
    reader = PdfReader(str(pdf))
    images = sum(len(page.images) for page in reader.pages)
    assert images == 3, "interval estimates, performance profiles, one per-game bar chart"
    assert sorted(p.name for p in (md.parent / "figures").iterdir()) == [
        "aggregates.png", "per_game_1.png", "performance_profiles.png"]
    assert 4 <= len(reader.pages) <= 9
    first = reader.pages[0].extract_text()
    assert "Warning" in first and "smoke" in first
    assert "![" in md.read_text() and md.read_text().count("![") == 3


def test_incomplete_grid_overrides_and_paper_profile(tmp_path: Path) -> None:
    opts, specs = fake_grid(tmp_path, profile="paper", overrides=("training.batch_size=16",))
    (specs[-1].run_dir / "result.json").unlink()
    md, pdf = build(opts, specs)
    text = md.read_text()
    assert "Profile **" not in text, "no profile banner at the paper profile"
    assert f"Only 5 of 6 runs of the grid have finished; missing: {specs[-1].name}" in text
    overrides = pd.read_csv(md.parent / "tables" / "overrides.csv", dtype=str)
    assert overrides.to_dict("records") == [{"key": "training.batch_size", "default": "32", "runs": "16"}]
    assert "unequal numbers of finished seeds" in text and "1 lowest seeds" in text
    assert "needs at least 2 runs per game" in text, "one game has a single seed: no probability of improvement"


def test_corrupt_result_is_listed_as_failed(tmp_path: Path) -> None:
    opts, specs = fake_grid(tmp_path, profile="paper")
    (specs[0].run_dir / "result.json").write_text("{not json")
    md, _ = build(opts, specs)
    text = " ".join(md.read_text().split())
    assert f"{specs[0].name} (failed: unreadable {specs[0].run_dir / 'result.json'})" in text


def test_full_benchmark_one_seed(tmp_path: Path) -> None:
    opts, specs = fake_grid(tmp_path, profile="paper", games=None, seeds=1)
    md, pdf = build(opts, specs)
    text = md.read_text()
    banners = [line for line in text.splitlines() if line.startswith("> **Warning:**")]
    assert len(banners) == 1 and "1 of the 5 seeds per game" in banners[0] and "games (" not in banners[0]
    assert sum(len(page.images) for page in PdfReader(str(pdf)).pages) == 4, "26 games: two per-game bar charts"
    assert len(pd.read_csv(md.parent / "tables" / "per_game.csv")) == 26
    agg = pd.read_csv(md.parent / "tables" / "aggregates_long.csv")
    assert not agg.loc[agg["algorithm"] == OURS, "ci_available"].any(), "one seed: point estimates only"
    paper = agg[(agg["algorithm"] == PAPER)].set_index("metric")["value"]
    assert paper["mean"] == pytest.approx(1.459, abs=5e-4) and paper["iqm"] == pytest.approx(0.641, abs=5e-4)
    assert "STORM on Freeway (released mean 0.0, Table 1 prints 33.5)" in text


def test_no_finished_run_is_a_clear_error(tmp_path: Path) -> None:
    opts = SuiteOptions(profile="smoke", out=tmp_path / "runs", games=("Pong",), seeds=1, report_root=tmp_path)
    with pytest.raises(ValueError, match="no finished run"):
        build(opts, atari100k.stages(opts)[0])


def test_common_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert common.profile_banner("paper") is None and "small" in common.profile_banner("small")
    assert common.subset_banner(list(atari100k.GAMES), atari100k.GAMES, 5, 5) is None
    monkeypatch.setenv(common.REPS_ENV, "7")
    assert BootstrapReps.from_env() == BootstrapReps(7, 7, 7)
    monkeypatch.setenv(common.REPS_ENV, "zero")
    with pytest.raises(ValueError, match="DIAMOND_REPORT_REPS"):
        common.bootstrap_reps(100)
    monkeypatch.delenv(common.REPS_ENV)
    assert common.bootstrap_reps(100) == 100
    a = {"env": {"game": "Pong"}, "seed": 0, "training": {"epochs": 3}, "perf": {"device": "cpu"}}
    b = {"env": {"game": "Boxing"}, "seed": 1, "training": {"epochs": 3}, "perf": {"device": "cuda"}}
    assert common.grid_config_hash(a) == common.grid_config_hash(b)
    assert common.grid_config_hash(a) != common.grid_config_hash({**a, "training": {"epochs": 4}})
    table = common.settings_table([a, {**a, "training": {"epochs": 4}}], {"epochs": "training.epochs"})
    assert table["value"].tolist() == ["3 | 4 (differs between runs)"]
    assert common.format_ci(1.23456, 1.0, 1.5) == "1.235 [1.000, 1.500]"
    assert common.format_ci(1.0, float("nan"), float("nan")) == "1.000 (no CI)"


def test_controls_grid_reports_the_twins_as_a_control_and_every_episode(tmp_path: Path) -> None:
    """With --controls, the reward-blind twins are not agent runs: they fill the report's reward-blind column (and
    tables/episodes.csv), Table 1 counts only the agents, and a game is 'learnt' only above all four controls.
    Runs without diagnostics say why instead of showing a table of dashes."""
    opts = SuiteOptions(profile="smoke", out=tmp_path / "runs", games=("Boxing", "Pong"), seeds=2,
                        report_root=tmp_path / "reports", controls=True)
    specs = atari100k.stages(opts)[0]
    assert [s.name for s in specs[:2]] == ["Boxing-s0", "Boxing-s0-reward-blind"] and len(specs) == 8
    for spec in specs:
        game, seed, blind = spec.kwargs["game"], spec.kwargs["seed"], spec.name.endswith("reward-blind")
        cfg = build_config("smoke", spec.kwargs["overrides"], seed=seed, **{"env.game": game})
        agent = [50.0 + seed, 52.0, 51.0] if game == "Boxing" and not blind else [1.0 + seed, 0.0, 2.0]
        atomic_write_yaml(spec.run_dir / "config.yaml", to_dict(cfg))
        append_jsonl(spec.run_dir / "metrics.jsonl", {"epoch": 1, "env_steps": 300, "eval/return": 1.0})
        atomic_write_json(spec.run_dir / "result.json", {
            "game": game, "seed": seed, "profile": "smoke", "config_hash": config_hash(cfg),
            "episode_returns": agent, "mean_return": float(np.mean(agent)), "score": float(np.mean(agent)),
            "hns": 0.0, "num_episodes": 3, "env_steps": 600, "epochs": 3, "wall_time_s": 50.0, "device": "cpu",
            "nfe": 1, "random_returns": [0.0, 1.0, 2.0], "shuffled_imagined_rewards": blind,
            "controls": {"uniform": [0.0, 1.0, 2.0], "matched": [1.0, 2.0, 1.0], "sticky": [2.0, 1.0, 0.0]}})
    md, _ = build(opts, specs)
    table = pd.read_csv(md.parent / "tables" / "agent_vs_controls.csv").set_index("game")
    assert table.loc["Boxing", "learnt"] == "yes" and table.loc["Pong", "learnt"] == "no"
    assert table.loc["Boxing", "reward-blind"].startswith("1.2 [")  # the twins: seed means 1 and 4/3
    episodes = pd.read_csv(md.parent / "tables" / "episodes.csv")
    assert episodes.groupby("policy").size().to_dict() == {
        "agent": 12, "matched": 12, "reward-blind": 12, "sticky": 12, "uniform": 12}
    assert (pd.read_csv(md.parent / "tables" / "per_game.csv")["seeds"] == 2).all()  # agents only
    per_seed = pd.read_csv(md.parent / "tables" / "per_seed.csv").set_index(["game", "seed"])
    assert per_seed.loc[("Boxing", 1), "agent"] == pytest.approx(154 / 3)  # 51, 52, 51
    assert per_seed.loc[("Boxing", 1), "reward-blind"] == pytest.approx(4 / 3)
    text = md.read_text()
    assert "above every control's on 1 of 2 games (Boxing)" in text
    assert "training.diag_every" in text and not (md.parent / "tables" / "diagnostics.csv").exists()
