"""python -m diamond.play: the keys make the game's ALE actions, the imagined and real games step together with
the imagination loop's action alignment, the server listens on loopback and leaves nothing behind, bad input is
one sentence. A real browser (headless Chromium) plays the page in tests/test_play_page.py."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch

from diamond.loop.agent import build_agent
from diamond.loop.config import build_config, config_hash, to_dict
from diamond.play import Player, bind, load_player, main, parse_args, url_of
from diamond.play.session import PlaySession, action_for_keys, frame_mse, keys_for_action
from diamond.run.checkpoint import save_checkpoint
from diamond.run.io import atomic_write_yaml

ALE_18 = ["NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT", "UPFIRE",
          "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE", "DOWNRIGHTFIRE", "DOWNLEFTFIRE"]
BREAKOUT = ["NOOP", "FIRE", "RIGHT", "LEFT"]
RIGHT, LEFT = 2, 3


def tiny_agent_run(folder: Path, game: str = "Breakout", num_actions: int = 4) -> Path:
    """A run folder (config.yaml, checkpoints/last.pt) of a smoke-size agent. A fresh denoiser's output conv is
    zero (it would ignore its inputs), so its weights are perturbed, seeded: the imagined frame depends on the
    action, as a trained model's does."""
    torch.manual_seed(0)
    cfg = build_config("smoke", **{"env.game": game})
    agent = build_agent(cfg, num_actions)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in agent.world_model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    atomic_write_yaml(folder / "config.yaml", to_dict(cfg))
    save_checkpoint(folder / "checkpoints" / "last.pt", {"agent": agent.state_dict()}, config_hash(cfg))
    return folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_agent_run(tmp_path_factory.mktemp("play") / "run")


@pytest.fixture(scope="module")
def player(run_dir: Path) -> Player:
    return load_player(parse_args(["--run", str(run_dir), "--fps", "0"]))


def test_every_ale_action_has_its_keys_and_missing_combinations_fall_back() -> None:
    for i, meaning in enumerate(ALE_18):  # the full action set: the keys shown for an action make that action
        assert action_for_keys(ALE_18, set(keys_for_action(meaning))) == i
    assert keys_for_action("DOWNLEFTFIRE") == ["down", "left", "fire"] and keys_for_action("NOOP") == []
    assert action_for_keys(BREAKOUT, {"up", "right"}) == RIGHT  # no UPRIGHT in Breakout: the key it has
    assert action_for_keys(BREAKOUT, {"left", "fire"}) == LEFT
    assert action_for_keys(BREAKOUT, {"left", "right"}) == 0  # opposite keys cancel
    assert action_for_keys(BREAKOUT, {"down"}) == 0


def test_panels_start_equal_replay_a_context_and_follow_the_action(player: Player) -> None:
    session = PlaySession(player.agent, player.cfg, player.device)
    try:
        first = session.restart(3)
        assert first["t"] == 0 and first["imagined"] == first["real"] and first["mse"] == 0.0
        right = [session.step(RIGHT) for _ in range(3)]
        assert [f["t"] for f in right] == [1, 2, 3]
        session.restart(3)
        again = [session.step(RIGHT) for _ in range(3)]
        assert [f["imagined"] for f in again] == [f["imagined"] for f in right]  # same context, actions: same game
        assert [f["real"] for f in again] == [f["real"] for f in right]
        session.restart(3)
        left = session.step(LEFT)
        assert left["imagined"] != right[0]["imagined"] and left["meaning"] == "LEFT" and left["by"] == "you"
        assert session.restart(4)["real"] != first["real"]  # another context starts elsewhere in the game
        policy = session.step(None)
        assert policy["by"] == "policy" and 0 <= policy["action"] < 4
    finally:
        session.close()


def test_imagined_step_has_imagines_action_alignment_and_the_mse_is_of_the_two_frames(player: Player) -> None:
    """The window D_θ sees: the new action last, beside the newest frame; both windows then slide together."""
    session = PlaySession(player.agent, player.cfg, player.device)
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    wm = player.agent.world_model
    original = wm.predict_next

    def spy(obs: torch.Tensor, act: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = original(obs, act, *args, **kwargs)
        seen.append((obs.clone(), act.clone(), out.clone()))
        return out

    wm.predict_next = spy
    try:
        session.restart(5)
        context_act = session.hist_act.clone()
        frames = [session.step(a) for a in (RIGHT, LEFT, 1)]
    finally:
        del wm.predict_next
        session.close()
    (o1, a1, x1), (o2, a2, x2), (_, a3, _) = seen
    assert a1[0, -1] == RIGHT and torch.equal(a1[0, :-1], context_act[0, :-1])
    assert a2[0, -2:].tolist() == [RIGHT, LEFT] and a3[0, -3:].tolist() == [RIGHT, LEFT, 1]
    assert torch.equal(o2[:, -1], x1) and torch.equal(o2[:, :-1], o1[:, 1:])
    imagined = ((x2[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    assert np.array_equal(_decode_png(frames[1]["imagined"]), imagined)
    real = _decode_png(frames[1]["real"])
    expected = float(np.mean((imagined / 255.0 - real / 255.0) ** 2))
    assert frames[1]["mse"] == pytest.approx(expected, rel=1e-12)
    assert frame_mse(imagined, imagined) == 0.0


def test_steps_and_sampler_reach_the_world_model_and_bad_values_are_refused(player: Player) -> None:
    session = PlaySession(player.agent, player.cfg, player.device)
    wm = player.agent.world_model
    calls: list[tuple[int, str]] = []
    original = wm.predict_next

    def spy(obs: torch.Tensor, act: torch.Tensor, num_steps: int, **kwargs: Any) -> torch.Tensor:
        calls.append((num_steps, wm.sampler))
        return original(obs, act, num_steps, **kwargs)

    assert session.samplers == list(wm.paradigm.supported_samplers) and session.sampler == player.cfg.diffusion.sampler
    wm.predict_next = spy
    try:
        session.restart(0)
        session.configure(5, "heun")
        frame = session.step(RIGHT)
        with pytest.raises(ValueError, match="denoising steps"):
            session.configure(0, "heun")
        with pytest.raises(ValueError, match="ddim"):  # a DDPM sampler under the EDM paradigm
            session.configure(3, "ddim")
    finally:
        del wm.predict_next
        session.close()
    assert calls == [(5, "heun")] and frame["num_steps"] == 5 and frame["sampler"] == "heun"
    assert wm.sampler == player.cfg.diffusion.sampler  # other pages still get the loaded sampler


def test_without_the_play_extra_the_command_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    rc, err = _error(["--run", "x"], capsys)
    assert rc == 1 and "uvicorn not installed" in err and ".[play]" in err


def _decode_png(data_url: str) -> np.ndarray:
    import base64

    import cv2

    raw = np.frombuffer(base64.b64decode(data_url.split(",", 1)[1]), np.uint8)
    return cv2.imdecode(raw, cv2.IMREAD_COLOR)[:, :, ::-1].transpose(2, 0, 1)


def test_a_released_format_agent_plays(tmp_path: Path) -> None:
    from tests.test_evaluate import TINY, released_checkpoint

    ckpt = released_checkpoint(tmp_path / "Breakout.pt")
    loaded = load_player(parse_args(["--checkpoint", str(ckpt), "--official", "--game", "Breakout", "--profile",
                                     "smoke", "--set", *TINY]))
    session = PlaySession(loaded.agent, loaded.cfg, loaded.device)
    try:
        session.restart(0)
        frame = session.step(RIGHT)
        assert frame["t"] == 1 and frame["meaning"] == "RIGHT"
    finally:
        session.close()


def _error(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err  # one sentence, no traceback
    return rc, err


@pytest.fixture
def busy_port() -> Iterator[str]:
    """A port this test holds: a refusal that names the port is the only one that depends on it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        yield str(taken.getsockname()[1])


def test_bad_input_is_one_sentence_and_a_non_zero_exit(run_dir: Path, tmp_path: Path, busy_port: str,
                                                       capsys: pytest.CaptureFixture) -> None:
    """A bad --run or --checkpoint is named before the port is taken: whatever listens on the machine's ports
    (8000, the default, included) changes no answer but the port's own."""
    rc, err = _error(["--run", str(tmp_path / "nope"), "--port", busy_port], capsys)
    assert rc != 0 and "no such run folder" in err
    (tmp_path / "empty").mkdir()
    rc, err = _error(["--run", str(tmp_path / "empty"), "--port", busy_port], capsys)
    assert rc != 0 and "config.yaml" in err
    rc, err = _error(["--run", str(run_dir), "--game", "Pong", "--port", busy_port], capsys)
    assert rc != 0 and "is a Breakout run, not Pong" in err
    ckpt = run_dir / "checkpoints" / "last.pt"  # a Breakout agent played as Qbert: refused by its run folder
    rc, err = _error(["--checkpoint", str(ckpt), "--game", "Qbert", "--profile", "smoke", "--port", busy_port], capsys)
    assert rc != 0 and "from a Breakout run" in err
    loose = tmp_path / "loose.pt"  # outside a run folder: Pong has 6 actions, the agent 4 (found once loaded)
    shutil.copy(ckpt, loose)
    rc, err = _error(["--checkpoint", str(loose), "--game", "Pong", "--profile", "smoke", "--port", "0"], capsys)
    assert rc != 0 and "4 actions but Pong has 6" in err
    rc, err = _error(["--run", str(run_dir), "--port", busy_port], capsys)
    assert rc != 0 and "the port is in use" in err and "--port" in err


@pytest.mark.parametrize("device", ["tpu", "cuda:x", ""])
def test_a_bad_device_is_a_usage_error(run_dir: Path, device: str, capsys: pytest.CaptureFixture) -> None:
    rc, err = _error(["--run", str(run_dir), "--port", "0", "--device", device], capsys)
    assert rc == 2 and f"--device {device!r}" in err and "cpu, cuda or cuda:N" in err


def test_a_network_address_is_warned_about_and_loopback_is_not(run_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture) -> None:
    import diamond.play as play

    monkeypatch.setattr(play, "serve", lambda app, sock: sock.close())  # bind, load, print; serve nothing
    assert main(["--run", str(run_dir), "--port", "0", "--host", "0.0.0.0"]) == 0
    err = capsys.readouterr().err
    assert "warning: --host 0.0.0.0" in err and "reachable from the network" in err, err
    assert main(["--run", str(run_dir), "--port", "0"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_the_page_names_the_run_not_its_absolute_path(player: Player, run_dir: Path) -> None:
    session = PlaySession(player.agent, player.cfg, player.device)
    try:
        hello = session.hello(player.source, player.fps)
    finally:
        session.close()
    assert hello["source"] == f"run {run_dir.name}" and str(run_dir.parent) not in hello["source"]


def end_always(monkeypatch: pytest.MonkeyPatch, player: Player) -> None:
    """R_ψ predicts an end at every step (a smoke model does from about step 6)."""
    reward_end = player.agent.reward_end
    original = reward_end.forward

    def ends(*args: Any, **kwargs: Any) -> Any:
        rewards, ends_, state = original(*args, **kwargs)
        certain = torch.stack([torch.full_like(ends_[..., 0], -9.0), torch.full_like(ends_[..., 1], 9.0)], -1)
        return rewards, certain, state

    monkeypatch.setattr(reward_end, "forward", ends)


def test_a_predicted_end_is_marked_at_its_first_step_until_a_restart(player: Player,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    session = PlaySession(player.agent, player.cfg, player.device)
    try:
        assert session.restart(0)["end_at"] is None
        end_always(monkeypatch, player)
        frames = [session.step(RIGHT) for _ in range(2)]
        assert [f["end"] for f in frames] == [True, True] and [f["end_at"] for f in frames] == [1, 1]
        assert session.restart(0)["end_at"] is None
    finally:
        session.close()


def test_the_server_listens_on_loopback_only_by_default() -> None:
    sock = bind(parse_args(["--run", "x"]).host, 0)
    try:
        assert sock.getsockname()[0] == "127.0.0.1" and url_of(sock).startswith("http://127.0.0.1:")
    finally:
        sock.close()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_server_leaves_nothing_behind(run_dir: Path, tmp_path: Path, stop: signal.Signals) -> None:
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "diamond.play", "--run", str(run_dir), "--port", "0"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()  # the address, printed once the model is loaded
        assert " at http://" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = line.split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:"), line
        page = urllib.request.urlopen(url, timeout=30).read().decode()
        assert "Play the world model" in page
        assert urllib.request.urlopen(url + "static/play.js", timeout=30).status == 200
        assert urllib.request.urlopen(url + "favicon.ico", timeout=30).status == 200
        proc.send_signal(stop)
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    with socket.socket() as again:  # nothing listens there any more (connections may linger in TIME_WAIT)
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
    assert list(tmp_path.iterdir()) == [] and sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before
