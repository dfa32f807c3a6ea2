"""Algorithm 1 end to end on CPU: the run folder contract, kill-and-resume, finished runs, seeding."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from diamond.loop.config import build_config
from diamond.run.errors import RunIdentityError
from diamond.run.io import read_jsonl, read_yaml
from diamond.train import main, run

# An even smaller schedule than `smoke`, so several runs fit in the default test budget.
TINY = ["training.epochs=3", "training.total_env_steps=260", "training.initial_collect_steps=200",
        "training.initial_collect_max_steps=200", "training.collect_steps_per_epoch=30",
        "training.first_epoch_denoiser_steps=3", "training.first_epoch_reward_end_steps=3",
        "training.first_epoch_actor_critic_steps=2", "training.denoiser_steps=2", "training.reward_end_steps=2",
        "training.actor_critic_steps=1", "training.eval_episodes=1", "training.eval_num_envs=1",
        "env.eval_max_episode_frames=600", "training.imagination_horizon=3"]

RESULT_KEYS = {"game", "seed", "profile", "config_hash", "episode_returns", "mean_return", "score", "hns",
               "num_episodes", "env_steps", "epochs", "wall_time_s", "device", "nfe"}


class Interrupt(RuntimeError):
    pass


def test_smoke_profile_run_writes_the_run_folder(tmp_path: Path) -> None:
    """The actual `smoke` profile (no overrides) finishes on CPU and writes every file of the contract."""
    run_dir = tmp_path / "run"
    assert main(["--game", "Breakout", "--seed", "0", "--profile", "smoke", "--out", str(run_dir)]) == 0
    result = json.loads((run_dir / "result.json").read_text())
    assert RESULT_KEYS <= set(result)
    cfg = build_config("smoke")
    assert result["epochs"] == cfg.training.epochs and result["env_steps"] == cfg.training.total_env_steps
    assert result["num_episodes"] == cfg.training.eval_episodes == len(result["episode_returns"])
    assert result["mean_return"] == pytest.approx(sum(result["episode_returns"]) / len(result["episode_returns"]))
    assert read_yaml(run_dir / "config.yaml")["env"]["game"] == "Breakout"
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [m["epoch"] for m in metrics if not m.get("final")] == [1, 2, 3]
    assert all(k in metrics[0] for k in ("denoiser/loss", "reward_end/loss_reward", "actor_critic/loss_policy"))
    assert (run_dir / "checkpoints" / "last.pt").exists() and any((run_dir / "replay").iterdir())


def test_kill_and_resume_continues_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"

    def kill_after_first(epoch: int, trainer) -> None:
        if epoch == 1:
            raise Interrupt("simulated kill after epoch 1")

    with pytest.raises(Interrupt):
        run(run_dir, "Breakout", seed=1, profile="smoke", overrides=TINY, epoch_hook=kill_after_first)
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["replay_steps"] == 200
    assert ckpt["learner"]["steps"] == {"denoiser": 3, "reward_end": 3, "actor_critic": 2}
    assert not (run_dir / "result.json").exists()

    seen: list[tuple[int, int, dict]] = []
    result = run(run_dir, "Breakout", seed=1, profile="smoke", overrides=TINY,
                 epoch_hook=lambda e, t: seen.append((e, t.replay.num_steps, dict(t.learner.steps))))
    assert "resuming after epoch 1" in capsys.readouterr().out
    assert [s[0] for s in seen] == [2, 3]  # no repeated or lost epoch
    assert [s[1] for s in seen] == [230, 260]  # replay continues from 200 by 30 per epoch
    assert seen[-1][2] == {"denoiser": 3 + 2 * 2, "reward_end": 3 + 2 * 2, "actor_critic": 2 + 2 * 1}
    epochs = [m["epoch"] for m in read_jsonl(run_dir / "metrics.jsonl") if not m.get("final")]
    assert epochs == [1, 2, 3]
    assert result["env_steps"] == 260 and result["epochs"] == 3

    # A finished run does nothing and says so.
    mtime = (run_dir / "result.json").stat().st_mtime_ns
    again = run(run_dir, "Breakout", seed=1, profile="smoke", overrides=TINY,
                epoch_hook=lambda e, t: pytest.fail("a finished run must not train"))
    assert "already finished" in capsys.readouterr().out
    assert again == result and (run_dir / "result.json").stat().st_mtime_ns == mtime


def test_same_seed_same_run(tmp_path: Path) -> None:
    a = run(tmp_path / "a", "Pong", seed=3, profile="smoke", overrides=TINY)
    b = run(tmp_path / "b", "Pong", seed=3, profile="smoke", overrides=TINY)
    la = [{k: v for k, v in m.items() if "time" not in k} for m in read_jsonl(tmp_path / "a" / "metrics.jsonl")]
    lb = [{k: v for k, v in m.items() if "time" not in k} for m in read_jsonl(tmp_path / "b" / "metrics.jsonl")]
    assert la == lb
    assert a["episode_returns"] == b["episode_returns"] and a["config_hash"] == b["config_hash"]


def test_resume_with_other_config_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(Interrupt):
        run(run_dir, "Breakout", seed=0, profile="smoke", overrides=TINY,
            epoch_hook=lambda e, t: (_ for _ in ()).throw(Interrupt()))
    with pytest.raises(RunIdentityError, match=r"config differs in training\.gamma \(0\.985 on disk, 0\.9 requested\)"):
        run(run_dir, "Breakout", seed=0, profile="smoke", overrides=TINY + ["training.gamma=0.9"])


def test_cli_reports_config_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--game", "NotAGame", "--profile", "smoke", "--out", str(tmp_path / "x")]) == 2
    assert "NotAGame" in capsys.readouterr().err


# ---------------------------------------------------------------- a run folder belongs to one run (issue 12)

class Kill(BaseException):
    """A simulated SIGKILL: nothing in the trainer catches a BaseException that is not an Exception."""


class WriteFaults:
    """Counts every write of a run (each atomic commit and each metrics append) and kills the run at the k-th:
    before an atomic commit (its temp file is discarded), or halfway through a metrics line (a torn line)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import diamond.loop.trainer

        self.kill_at: int | None = None
        self.count, self.names = 0, []
        real_replace, real_append = os.replace, diamond.loop.trainer.append_jsonl

        def replace(src, dst, *args, **kwargs):
            self._tick(Path(dst).name)
            return real_replace(src, dst, *args, **kwargs)

        def append(path, record):
            if self._tick(f"{Path(path).name} (append)", raise_now=False):
                with open(path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(record)[:12])
                raise Kill()
            return real_append(path, record)

        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(diamond.loop.trainer, "append_jsonl", append)

    def _tick(self, name: str, raise_now: bool = True) -> bool:
        self.count += 1
        self.names.append(name)
        hit = self.count == self.kill_at
        if hit and raise_now:
            raise Kill()
        return hit

    def run(self, run_dir: Path, kill_at: int | None) -> dict | None:
        self.kill_at, self.count = kill_at, 0
        try:
            return run(run_dir, "Breakout", seed=1, profile="smoke", overrides=TINY)
        except Kill:
            return None
        finally:
            self.kill_at = None


def _comparable(run_dir: Path) -> tuple[dict, list[tuple[int, bool]]]:
    result = {k: v for k, v in json.loads((run_dir / "result.json").read_text()).items() if "time" not in k}
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return result, [(json.loads(line)["epoch"], bool(json.loads(line).get("final"))) for line in lines]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """One uninterrupted TINY run, and the names of its writes in order."""
    mp = pytest.MonkeyPatch()
    try:
        faults = WriteFaults(mp)
        run_dir = tmp_path_factory.mktemp("reference") / "run"
        faults.run(run_dir, None)
        return run_dir, list(faults.names)
    finally:
        mp.undo()


def kill_moments(names: list[str], n: int) -> list[int]:
    """n write indices (1-based) spread evenly over the whole run, first and last write included."""
    return sorted({round(1 + i * (len(names) - 1) / (n - 1)) for i in range(n)})


def check_kills(reference: tuple[Path, list[str]], kills: list[int], tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> int:
    ref_dir, names = reference
    want = _comparable(ref_dir)
    assert want[1] == [(1, False), (2, False), (3, False), (3, True)]
    faults = WriteFaults(monkeypatch)
    identical = 0
    for k in kills:
        run_dir = tmp_path / f"kill{k}"
        assert faults.run(run_dir, k) is None, f"write {k} ({names[k - 1]}) was not reached"
        faults.run(run_dir, None)
        got = _comparable(run_dir)
        assert got[1] == want[1], f"kill before write {k} ({names[k - 1]}): metrics epochs {got[1]}"
        identical += got == want
    return identical


def test_killed_between_any_two_writes_resumes_to_the_same_folder(reference, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Two kills in the default run: halfway through epoch 2's metrics line (Finding 3: the torn line and the line
    past the checkpoint are dropped, not duplicated or glued), and just before result.json."""
    names = reference[1]
    appends = [i + 1 for i, name in enumerate(names) if name == "metrics.jsonl (append)"]
    kills = [appends[1], len(names)]
    assert names[kills[1] - 1] == "result.json"
    assert check_kills(reference, kills, tmp_path, monkeypatch) == len(kills)


@pytest.mark.slow
def test_ten_kills_resume_to_the_same_folder(reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kills = kill_moments(reference[1], 10)
    assert len(kills) == 10
    identical = check_kills(reference, kills, tmp_path, monkeypatch)
    print(f"{identical}/10 kills resumed to an identical result")
    assert identical == 10


def test_a_finished_folder_refuses_another_run(reference, capsys: pytest.CaptureFixture[str]) -> None:
    """Finding 1: another game or seed on a finished folder was answered with the finished run's result."""
    run_dir = reference[0]
    assert main(["--game", "Pong", "--seed", "1", "--profile", "smoke", "--out", str(run_dir), *TINY]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"python -m diamond.train: error: {run_dir} holds another run (game Breakout seed 1 profile smoke): "
                   "game 'Breakout' on disk vs 'Pong' requested; repeat that run's own arguments to resume it, or "
                   "choose another --out")
    assert main(["--game", "Breakout", "--seed", "2", "--profile", "smoke", "--out", str(run_dir), *TINY]) == 1
    assert "seed 1 on disk vs 2 requested" in capsys.readouterr().err
    assert main(["--game", "Breakout", "--seed", "1", "--profile", "smoke", "--out", str(run_dir), *TINY,
                 "training.gamma=0.9"]) == 1
    assert "config differs in training.gamma (0.985 on disk, 0.9 requested)" in capsys.readouterr().err


def test_controls_draw_the_same_numbers_whatever_the_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs of one seed with other update counts leave the run's RNG in other states; the controls must not
    inherit it (they did: MsPacman seed 0's uniform control scored 248.1 at 1x and 4x the updates, 268.3 at 2x)."""
    from diamond.loop import trainer as trainer_module

    draws = []
    real = trainer_module.control_policies

    def record(stats, rng):
        draws.append(rng.bit_generator.state)  # the same state: the same draws for every control
        return real(stats, rng)

    monkeypatch.setattr(trainer_module, "control_policies", record)
    for i, extra in enumerate(([], ["training.denoiser_steps=4", "training.reward_end_steps=3"])):
        run(tmp_path / f"run{i}", "Breakout", seed=3, profile="smoke", overrides=[*TINY, *extra])
    assert len(draws) == 2 and draws[0] == draws[1]


def test_the_released_schedule_runs_its_length_and_resumes_with_it(tmp_path: Path) -> None:
    """training.final_epochs (the `paper` profile's, docs/fidelity.md rows 18-19): epoch 1 collects after the initial
    collection, every epoch collects until total_env_steps, then final_epochs more; the length, fixed by the
    initial collection, survives a kill. Here: 200 initial + 30, then 30 per epoch to 260, then 2 final epochs."""
    run_dir, released = tmp_path / "run", [*TINY, "training.final_epochs=2", "training.epochs=10"]  # 10: the cap

    def kill_after_first(epoch: int, trainer) -> None:
        if epoch == 1:
            assert trainer.num_epochs == 2 + 2 and trainer.replay.num_steps == 230
            raise Interrupt("simulated kill after epoch 1")

    with pytest.raises(Interrupt):
        run(run_dir, "Breakout", seed=1, profile="smoke", overrides=released, epoch_hook=kill_after_first)
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["num_epochs"] == 4
    seen: list[tuple[int, int]] = []
    result = run(run_dir, "Breakout", seed=1, profile="smoke", overrides=released,
                 epoch_hook=lambda e, t: seen.append((e, t.replay.num_steps)))
    assert seen == [(2, 260), (3, 260), (4, 260)] and result["epochs"] == 4 and result["env_steps"] == 260
    capped = run(tmp_path / "capped", "Breakout", seed=1, profile="smoke", overrides=[*TINY, "training.final_epochs=2"])
    assert capped["epochs"] == 3  # training.epochs caps the released count
