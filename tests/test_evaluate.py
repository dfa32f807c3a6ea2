"""python -m diamond.evaluate: a released-format agent (made from the official fixtures) converts to ours with
the same action logits, plays the test protocol, and writes a result.json the reports read; bad input is
one sentence on stderr and a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diamond.evaluate import load_agent, main
from diamond.loop.config import build_config
from diamond.run.io import read_json

FIX = Path(__file__).parent / "fixtures" / "official"
BREAKOUT_ACTIONS = 4
TINY = ["denoiser.channels=[16,16,16,16]", "denoiser.depths=[1,1,1,1]", "denoiser.cond_dim=32",
        "denoiser.bottleneck_attention=true", "reward_end.channels=[8,8,8,8]", "reward_end.depths=[1,1,1,1]",
        "reward_end.cond_dim=16", "reward_end.lstm_dim=16", "reward_end.bottleneck_attention=true",
        "actor_critic.channels=[8,8,8,8]", "actor_critic.lstm_dim=16", "env.size=32",
        "env.eval_max_episode_frames=2000", "training.eval_num_envs=1"]
ACTION_KEYS = ("denoiser.inner_model.act_emb.0.weight", "rew_end_model.act_emb.weight",
               "actor_critic.actor_linear.weight", "actor_critic.actor_linear.bias")


def released_checkpoint(path: Path, num_actions: int = BREAKOUT_ACTIONS, drop: str | None = None) -> Path:
    """The fixture's released weights (5 actions) cut to `num_actions`, saved in the released format."""
    state = torch.load(FIX / "weights.pt", weights_only=True)
    state = {k: v[:num_actions] if k in ACTION_KEYS else v for k, v in state.items() if k != drop}
    torch.save(state, path)
    return path


def test_converted_released_agent_gives_the_released_action_logits(tmp_path: Path) -> None:
    cfg = build_config("smoke", TINY, **{"env.game": "Breakout"})
    agent = load_agent(released_checkpoint(tmp_path / "Breakout.pt"), cfg, BREAKOUT_ACTIONS, official=True)
    d = torch.load(FIX / "actor_critic.pt", weights_only=True)
    state, logits, values = None, [], []
    with torch.no_grad():
        for t in range(d["obs"].shape[1]):
            lg, v, state = agent.actor_critic(d["obs"][:, t], state)
            logits.append(lg), values.append(v)
    torch.testing.assert_close(torch.stack(logits, 1), d["logits"][..., :BREAKOUT_ACTIONS], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.stack(values, 1), d["values"], rtol=1e-5, atol=1e-6)


def test_evaluate_writes_a_result_the_reports_read(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from reports.common import collect_results
    from slurm.launcher import RunSpec

    ckpt = released_checkpoint(tmp_path / "Breakout.pt")
    out = tmp_path / "runs" / "Breakout-s0"
    argv = ["--checkpoint", str(ckpt), "--official", "--game", "Breakout", "--episodes", "1", "--profile", "smoke",
            "--out", str(out), "--set", *TINY]
    assert main(argv) == 0
    result = read_json(out / "result.json")
    assert result["game"] == "Breakout" and result["num_episodes"] == 1 and result["checkpoint_format"] == "official"
    assert result["score"] == result["mean_return"] == result["episode_returns"][0]
    assert (out / "config.yaml").is_file()
    table, missing = collect_results([RunSpec(name="Breakout-s0", run_dir=out, entry="diamond.train:main", kwargs={}, group="Breakout")])
    assert not missing and table.loc[0, "score"] == result["score"] and table.loc[0, "game"] == "Breakout"


@pytest.mark.parametrize("case,needle", [
    ("wrong_game", "has 4 actions but Pong has 6"),
    ("missing_key", "missing 1 weights"),
    ("not_a_checkpoint", "not a PyTorch checkpoint"),
    ("no_file", "no such checkpoint file"),
    ("ours_without_flag", "pass --official"),
])
def test_bad_input_is_one_sentence_and_a_nonzero_exit(tmp_path: Path, capsys: pytest.CaptureFixture, case: str,
                                                      needle: str) -> None:
    game, official = "Breakout", ["--official"]
    if case == "wrong_game":
        ckpt, game = released_checkpoint(tmp_path / "a.pt"), "Pong"
    elif case == "missing_key":
        ckpt = released_checkpoint(tmp_path / "a.pt", drop="actor_critic.lstm.weight_hh")
    elif case == "not_a_checkpoint":
        ckpt = tmp_path / "a.pt"
        ckpt.write_text("not a checkpoint\n")
    elif case == "no_file":
        ckpt = tmp_path / "absent.pt"
    else:
        ckpt, official = released_checkpoint(tmp_path / "a.pt"), []
    argv = ["--checkpoint", str(ckpt), *official, "--game", game, "--episodes", "1", "--profile", "smoke",
            "--out", str(tmp_path / "out"), "--set", *TINY]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m diamond.evaluate: error: ") and needle in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out" / "result.json").exists()


def test_evaluate_reads_a_trainer_checkpoint(tmp_path: Path) -> None:
    from diamond.loop.agent import build_agent

    cfg = build_config("smoke", TINY, **{"env.game": "Breakout"})
    torch.save({"agent": build_agent(cfg, BREAKOUT_ACTIONS).state_dict(), "epoch": 3}, tmp_path / "last.pt")
    out = tmp_path / "eval"
    assert main(["--checkpoint", str(tmp_path / "last.pt"), "--game", "Breakout", "--episodes", "1",
                 "--profile", "smoke", "--out", str(out), "--set", *TINY]) == 0
    assert read_json(out / "result.json")["checkpoint_format"] == "diamond"


def test_evaluate_never_overwrites_a_result_it_did_not_make(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--out obeys diamond.train's run-folder rules: another run's folder, a finished or unfinished training run,
    and a locked folder are refused in one sentence with their files untouched; the same evaluation twice is done."""
    from diamond.loop.config import config_hash
    from diamond.run.io import atomic_write_json
    from diamond.run.rundir import hold_lock

    ckpt = released_checkpoint(tmp_path / "Breakout.pt")
    cfg = build_config("smoke", TINY, seed=0, **{"env.game": "Breakout"})

    def evaluate(out: Path, episodes: int = 1) -> int:
        return main(["--checkpoint", str(ckpt), "--official", "--game", "Breakout", "--episodes", str(episodes),
                     "--profile", "smoke", "--out", str(out), "--set", *TINY])

    def refused(out: Path, needle: str, code: int = 1) -> None:
        before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
        assert evaluate(out) == code
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err and "Traceback" not in err, err
        after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
        assert after == before, "a refused folder is left exactly as it was"

    pong = tmp_path / "pong"  # a finished Pong run, as diamond.train leaves it
    atomic_write_json(pong / "run.json", {"game": "Pong", "seed": 0, "profile": "smoke", "config_hash": "abc"})
    atomic_write_json(pong / "result.json", {"game": "Pong", "seed": 0, "profile": "smoke", "score": 3.0})
    (pong / "config.yaml").write_text("env: {game: Pong}\n")
    refused(pong, "holds another run (game Pong seed 0 profile smoke): game 'Pong' on disk vs 'Breakout' requested")

    trained = tmp_path / "trained"  # this very run, trained and finished: its result is not evaluate's to replace
    atomic_write_json(trained / "result.json", {"game": "Breakout", "seed": 0, "profile": "smoke",
                                                "config_hash": config_hash(cfg), "score": 1.0})
    refused(trained, "already holds the result of a finished training run; diamond.evaluate never overwrites")

    training = tmp_path / "training"  # this run, still training
    (training / "checkpoints").mkdir(parents=True)
    (training / "checkpoints" / "last.pt").write_bytes(b"weights")
    refused(training, "holds a training run (checkpoints/, metrics.jsonl)")

    out = tmp_path / "eval"
    assert evaluate(out) == 0
    capsys.readouterr()
    result = (out / "result.json").read_bytes()
    assert evaluate(out) == 0 and "this evaluation is already done (result.json); nothing to do" in capsys.readouterr().out
    assert (out / "result.json").read_bytes() == result
    refused_more = evaluate(out, episodes=2)
    assert refused_more == 1 and "already holds the result of an evaluation of" in capsys.readouterr().err
    with hold_lock(out):
        refused(out, "is in use by pid", code=75)
