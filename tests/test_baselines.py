"""Published baselines: transcribed paper tables and released per-run scores reproduce the paper."""

import hashlib
import json
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from diamond.run.io import CorruptFileError
from evaluation import aggregate, atari, baselines

TABLE1 = ["Random", "Human", "SimPLe", "TWM", "IRIS", "DreamerV3", "STORM", "DIAMOND"]
TABLE5 = ["Human", "MuZero", "EfficientZero", "CURL", "SPR", "SR-SPR", "BBF", "DIAMOND"]


def _data(name):
    return resources.files("evaluation").joinpath("data", name)


def _mean_hns(table):
    hns = atari.add_hns(table)
    return hns.groupby("algorithm", sort=False)["hns"].mean()


def _printed(number, metric):
    rows = baselines.printed_aggregates(number)
    return rows[rows["metric"] == metric].set_index("algorithm")["value"]


def test_tables_are_tidy_and_complete():
    for table, algorithms in ((baselines.table1(), TABLE1), (baselines.table5(), TABLE5)):
        assert list(table.columns) == ["game", "algorithm", "score"]
        assert list(pd.unique(table["algorithm"])) == algorithms
        assert len(table) == 26 * len(algorithms) and table["score"].notna().all()
    t1 = baselines.table1().set_index(["algorithm", "game"])["score"]
    t5 = baselines.table5().set_index(["algorithm", "game"])["score"]
    assert t1["DIAMOND"].equals(t5["DIAMOND"]) and t1["Human"].equals(t5["Human"])
    assert t1[("DIAMOND", "Breakout")] == 132.5 and t5[("SR-SPR", "UpNDown")] == 112450.3


def test_table1_means_match_printed_row_except_dreamerv3():
    recomputed, printed = _mean_hns(baselines.table1()), _printed(1, "mean")
    for algorithm in ["Random", "Human", "SimPLe", "TWM", "IRIS", "STORM", "DIAMOND"]:
        assert round(recomputed[algorithm], 3) == printed[algorithm], algorithm
    assert round(recomputed["DIAMOND"], 3) == 1.459 and round(recomputed["TWM"], 3) == 0.956
    # Documented discrepancy, not hidden: Table 1 prints a mean HNS of 1.097 for DreamerV3, but its own
    # DreamerV3 column gives 1.130 (checked digit by digit against the paper text). The printed figure
    # does not follow from the printed per-game scores; reports show both.
    assert round(recomputed["DreamerV3"], 3) == 1.130
    assert printed["DreamerV3"] == 1.097
    assert abs(recomputed["DreamerV3"] - printed["DreamerV3"]) > 0.03


def test_table5_means_match_printed_row():
    recomputed, printed = _mean_hns(baselines.table5()), _printed(5, "mean")
    for algorithm in TABLE5:
        assert round(recomputed[algorithm], 3) == printed[algorithm], algorithm
    assert round(recomputed["BBF"], 3) == 2.247 and round(recomputed["EfficientZero"], 3) == 1.943


@pytest.mark.parametrize("number", [1, 5])
def test_superhuman_counts_match_printed_row(number):
    table = baselines.table1() if number == 1 else baselines.table5()
    counts, printed = aggregate.num_superhuman(table), _printed(number, "superhuman")
    for algorithm, value in printed.items():
        if algorithm == "Human":
            assert np.isnan(value)  # the paper prints N/A for the human reference itself
            continue
        assert counts[algorithm] == value, algorithm


def test_a_score_equal_to_human_counts_as_superhuman():
    # IRIS scores exactly the human 14.6 on Pong; Table 1's 10 for IRIS includes it (strict '>' gives 9).
    t1 = baselines.table1().set_index(["algorithm", "game"])["score"]
    assert t1[("IRIS", "Pong")] == t1[("Human", "Pong")] == 14.6
    iris = baselines.table1().query("algorithm == 'IRIS'")
    strict = int((iris.set_index("game")["score"] > pd.Series(atari.HUMAN_SCORES)).sum())
    assert strict == 9 and aggregate.num_superhuman(iris)["IRIS"] == 10


def test_iqm_of_means_only_baselines_matches_table5_and_has_no_ci():
    metrics = aggregate.aggregate_metrics(baselines.table5(), reps=10)
    iqm = metrics[metrics["metric"] == "iqm"].set_index("algorithm")
    printed = _printed(5, "iqm")
    # For these four the paper's IQM is over the 26 per-game means (no per-run data).
    for algorithm in ["MuZero", "EfficientZero", "SR-SPR", "BBF"]:
        assert round(iqm.loc[algorithm, "value"], 3) == printed[algorithm], algorithm
    assert not metrics["ci_available"].any() and metrics[["ci_low", "ci_high"]].isna().all().all()
    assert (metrics["n_runs"] == 1).all() and metrics["note"].str.contains("point estimate").all()


def test_published_runs_shape_and_provenance_counts():
    runs = baselines.published_runs()
    assert list(runs.columns) == ["algorithm", "game", "seed", "score"]
    assert list(pd.unique(runs["algorithm"])) == list(baselines.PUBLISHED)
    per_game = runs.groupby(["algorithm", "game"]).size()
    for name in baselines.PUBLISHED:
        expected = baselines.PROVENANCE["published"][name]["runs_per_game"]
        assert (per_game[name] == expected).all() and len(per_game[name]) == 26
    assert set(baselines.PER_RUN) == {"DIAMOND", "IRIS", "SimPLe", "STORM", "SPR", "DrQ(eps)", "CURL"}
    assert runs.query("algorithm == 'DIAMOND' and game == 'Alien'")["score"].tolist() == [703.1, 683.6, 910.1,
                                                                                         826.8, 597.0]


def test_curl_hns_records_are_inverted_to_returns():
    records = json.loads(_data("CURL_10_evals.json").read_text())
    curl = atari.add_hns(baselines.published_runs(["CURL"])).set_index(["game", "seed"])["hns"]
    for r in records[:: 97]:
        assert curl[(r["game"], int(r["seed"]))] == pytest.approx(r["HNS"], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name, mean, median, iqm", [
    ("DIAMOND", 1.459, 0.373, 0.641),  # the paper's Figure 2 point estimates
    ("IRIS", 1.046, 0.289, 0.501),
    ("SimPLe", 0.332, 0.134, 0.130),
    ("SPR", 0.616, 0.396, 0.337),
    ("CURL", 0.261, 0.092, 0.113),  # Table 5 prints mean 0.261, IQM 0.113
    ("DrQ(eps)", 0.465, 0.313, 0.280),
])
def test_per_run_files_reproduce_published_aggregates(name, mean, median, iqm):
    metrics = aggregate.aggregate_metrics(baselines.published_runs([name]), reps=20)
    values = metrics.set_index("metric")["value"].round(3)
    assert (values["mean"], values["median"], values["iqm"]) == (mean, median, iqm)
    assert metrics["ci_available"].all()


def test_storm_release_does_not_reproduce_its_table_numbers():
    # Documented, not hidden: STORM's released per-run file gives mean 1.222 / IQM 0.561 / 9 superhuman,
    # while Table 1 prints 1.266 / 0.636 / 10. The whole gap is Freeway: 0.0 on all 5 released seeds
    # against 33.5 printed (33.5 / 29.6 / 26 = 0.044 of mean HNS). See data/PROVENANCE.md.
    runs = baselines.published_runs(["STORM"])
    values = aggregate.aggregate_metrics(runs, reps=20).set_index("metric")["value"]
    assert round(values["mean"], 3) == 1.222 and round(values["iqm"], 3) == 0.561
    assert aggregate.num_superhuman(runs)["STORM"] == 9
    assert (runs.query("game == 'Freeway'")["score"] == 0.0).all()
    assert round(values["mean"] + 33.5 / 29.6 / 26, 3) == _printed(1, "mean")["STORM"] == 1.266


def test_released_reference_scores_equal_table1_columns():
    assert baselines.reference_scores("Human") == dict(atari.HUMAN_SCORES)
    assert baselines.reference_scores("Random") == dict(atari.RANDOM_SCORES)
    t5 = baselines.table5().set_index(["algorithm", "game"])["score"]
    for name in ("EfficientZero", "MuZero"):
        released = baselines.published_runs([name]).set_index("game")["score"]
        assert released.to_dict() == t5[name].to_dict()


def test_provenance_records_every_file_with_matching_hash():
    prov = baselines.PROVENANCE
    entries = list(prov["published"].values()) + list(prov["reference_scores"].values())
    for entry in entries:
        assert entry["repo"].count("/") == 1 and len(entry["commit"]) == 40
        assert hashlib.sha256(_data(entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
    for name, entry in prov["tables"].items():
        assert hashlib.sha256(_data(name).read_bytes()).hexdigest() == entry["sha256"]
    md = _data("PROVENANCE.md").read_text()
    for entry in entries:
        assert f"`{entry['file']}`" in md and entry["commit"] in md and entry["repo"] in md
    every = set(TABLE1) | set(TABLE5) | set(baselines.PUBLISHED)
    assert every <= set(baselines.SOURCES)


def test_tampered_or_unknown_files_raise_clear_errors(monkeypatch):
    monkeypatch.setitem(baselines.PROVENANCE["published"]["DIAMOND"], "sha256", "0" * 64)
    with pytest.raises(CorruptFileError, match=r"DIAMOND\.json: sha256 differs"):
        baselines.published_runs(["DIAMOND"])
    with pytest.raises(ValueError, match=r"No published scores for \['DreamerV3'\]"):
        baselines.published_runs(["DreamerV3"])
    with pytest.raises(ValueError, match="Unknown paper table 3"):
        baselines.printed_aggregates(3)
