"""The decision metrics as runs: the judges (R_ψ + inverse dynamics) trained once per dataset and resumable, and
the measurement stage that scores a trained model with them, refusing judges trained for other settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ablations import static_data, static_decision, static_judges, static_wm
from diamond.loop.config import build_config
from diamond.loop.data import Episode, ReplayBuffer
from diamond.run.io import CorruptFileError
from evaluation.decision_models import build_judge_reward_end, load_judges, train_reward_end

torch.set_num_threads(1)
TINY = ["denoiser.channels=[8,8]", "denoiser.depths=[1,1]", "denoiser.cond_dim=16", "training.batch_size=2"]
SETTINGS = {"probes": 2, "cf_horizon": 2, "policy_horizon": 4, "idm_steps": 2, "idm_heldout": 32,
            "reward_end_steps": 3, "bootstrap": 20}


def _episodes(seed: int, count: int = 3, t: int = 12) -> ReplayBuffer:
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer()
    for _ in range(count):
        end = np.zeros(t, bool)
        end[-1] = True
        buffer.add_episode(Episode.from_arrays(rng.integers(0, 255, (t + 1, 3, 64, 64), dtype=np.uint8),
                                               rng.integers(0, 4, t).astype(np.int64),
                                               rng.choice([0.0, 1.0], t).astype(np.float32), end, np.zeros(t, bool)))
    return buffer


def test_reward_end_training_resumes_to_the_same_weights():
    cfg = build_config("smoke", ["training.batch_size=2"])
    train = _episodes(0)
    whole = train_reward_end(cfg, train, 4, steps=4, seed=3)
    saved: list[dict] = []
    train_reward_end(cfg, train, 4, steps=2, seed=3, save=saved.append, save_every=2)
    resumed = train_reward_end(cfg, train, 4, steps=4, seed=3, resume=saved[-1])
    assert saved[-1]["step"] == 2
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    fresh = build_judge_reward_end(cfg, 4, None, False).state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in whole.state_dict().items())  # it did train


def test_the_judge_starts_at_the_base_rate_and_can_be_blind_to_actions():
    """With its network's logits at zero, the judge's probabilities are the given frequencies; a blind judge gives
    the same output whatever the actions, a sighted one does not."""
    cfg = build_config("smoke", ["training.batch_size=2"])
    freqs = ([0.01, 0.9, 0.09], [0.99, 0.01])
    judge = build_judge_reward_end(cfg, 4, freqs, blind=True)
    torch.nn.init.zeros_(judge.net.head[2].weight)
    obs = torch.rand(2, 3, 3, 64, 64) * 2 - 1
    rew, end, _ = judge(obs, torch.zeros(2, 3, dtype=torch.long), obs)
    torch.testing.assert_close(rew.softmax(-1), torch.tensor(freqs[0]).expand(2, 3, 3))
    torch.testing.assert_close(end.softmax(-1), torch.tensor(freqs[1]).expand(2, 3, 2))
    torch.manual_seed(0)
    for blind in (True, False):
        judge = build_judge_reward_end(cfg, 4, freqs, blind=blind)
        with torch.no_grad():  # the residual branches start at zero, where the action has no effect yet
            for w in judge.parameters():
                w.add_(0.1 * torch.randn_like(w))
        a, _, _ = judge(obs, torch.zeros(2, 3, dtype=torch.long), obs)
        b, _, _ = judge(obs, torch.full((2, 3), 3, dtype=torch.long), obs)
        assert torch.equal(a, b) == blind


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny expert dataset, one trained model and the judges, as the suites' stages leave them."""
    root = tmp_path_factory.mktemp("decision")
    static_data.run(root / "dataset", game="Breakout", num_frames=600, seed=0, random_games=1)
    data = str(static_data.dataset_dir(root / "dataset"))
    static_wm.run(root / "wm", data, profile="smoke", overrides=TINY, train_steps=2, checkpoint_every=2, test_every=2,
                  protocol={"horizon": 4, "num_steps": [1], "rollouts": 1, "clips": 2, "clip_len": 2, "feature_networks": False})
    judges = static_judges.run(root / "judges", data, profile="smoke", overrides=TINY, decision=SETTINGS)
    return root, judges


def test_judges_run_measures_its_judges_and_the_measurement_uses_them(finished):
    root, judges = finished
    assert judges["classes"] == [[0, 1], [2], [3]] and 0.0 <= judges["idm_heldout_balanced_accuracy"] <= 1.0
    held = judges["reward_end_heldout"]
    assert held["transitions"] > 0 and held["reward_ce"] > 0 and held["reward_ce_constant"] >= 0
    assert not (root / "judges" / static_judges.REWARD_END_PROGRESS).exists()  # removed once the judges are saved
    result = static_decision.run(root / "decision", root / "wm", root / "judges", profile="smoke", overrides=TINY,
                                 seed=0, num_steps=[1], decision=SETTINGS)
    d = result["decision"]
    assert [r["setting"] for r in d["rows"]] == ["emulator (ceiling)", "copy last frame", "emulator, actions withheld",
                                                 "n=1"]
    assert d["idm_heldout_balanced_accuracy"] == judges["idm_heldout_balanced_accuracy"]
    assert d["reward_end_heldout"] == held and result["train_steps"] == 2
    assert static_decision.run(root / "decision", root / "wm", root / "judges", profile="smoke", overrides=TINY,
                               seed=0, num_steps=[1], decision=SETTINGS) == result  # finished: read back


def test_measurement_refuses_judges_trained_for_other_settings(finished):
    root, _ = finished
    with pytest.raises(ValueError, match="other decision settings"):
        static_decision.run(root / "other", root / "wm", root / "judges", profile="smoke", overrides=TINY, seed=0,
                            num_steps=[1], decision={**SETTINGS, "reward_end_steps": 4})


def test_a_damaged_judges_file_is_one_clear_error(finished, tmp_path):
    root, _ = finished
    cfg = static_wm.run_config("smoke", TINY, 0, "Breakout")
    bad = tmp_path / "judges.pt"
    bad.write_bytes((root / "judges" / static_decision.JUDGES_FILE).read_bytes()[:200])
    with pytest.raises(CorruptFileError, match="judges.pt"):
        load_judges(bad, cfg, 4)
    with pytest.raises(CorruptFileError, match="different config"):
        load_judges(root / "judges" / static_decision.JUDGES_FILE, build_config("smoke", TINY, seed=1), 4)


def test_an_arms_runs_pool_probe_by_probe(finished):
    """Pooling one run gives its own row; pooling two averages each probe's numbers first (the oracle: the metric
    of the averaged numbers), and runs on other probes are refused."""
    from evaluation.decision_eval import pooled_rows

    root, _ = finished
    d = static_decision.run(root / "decision", root / "wm", root / "judges", profile="smoke", overrides=TINY, seed=0,
                            num_steps=[1], decision=SETTINGS)["decision"]
    own = next(r for r in d["rows"] if r["setting"] == "n=1")
    assert pooled_rows([d], "n=1") == pytest.approx(own)
    other = {**d, "per_probe": {**d["per_probe"], "n=1": {**d["per_probe"]["n=1"],
                                                          "action": [1.0] * d["num_probes"]}}}
    pooled = pooled_rows([d, other], "n=1")
    assert pooled["action_accuracy"] == pytest.approx((own["action_accuracy"] + 1.0) / 2)
    assert pooled["cf_gain"] == pytest.approx(own["cf_gain"])  # the other numbers are the same in both runs
    with pytest.raises(ValueError, match="different probes"):
        pooled_rows([d, {**other, "probe_digest": "elsewhere"}], "n=1")


@pytest.mark.parametrize("kind", ["detector", "r_psi"])
def test_judges_file_round_trips_either_reward_judge(tmp_path, monkeypatch, kind):
    """save_judges / load_judges give back the same networks (outputs equal), whichever reward judge was trained."""
    from evaluation.decision import ActionMerge
    from evaluation.decision_models import EventDetector, InverseDynamics, save_judges

    cfg = build_config("smoke", ["training.batch_size=2"])
    torch.manual_seed(0)
    judge = (EventDetector(([0.0, 0.9, 0.1], [0.99, 0.01])) if kind == "detector"
             else build_judge_reward_end(cfg, 4, ([0.0, 0.9, 0.1], [0.99, 0.01]), blind=True))
    merge = ActionMerge(((0, 1), (2,), (3,)), np.eye(4))
    save_judges(tmp_path / "judges.pt", InverseDynamics(3), judge, merge, "h")
    monkeypatch.setattr("evaluation.decision_models.config_hash", lambda _: "h")
    _, loaded, classes = load_judges(tmp_path / "judges.pt", cfg, 4)
    obs = torch.rand(1, 2, 3, 64, 64) * 2 - 1
    act = torch.zeros(1, 2, dtype=torch.long)
    assert classes == [[0, 1], [2], [3]] and type(loaded) is type(judge)
    for a, b in zip(judge.eval()(obs, act, obs)[:2], loaded(obs, act, obs)[:2]):
        torch.testing.assert_close(a, b)
