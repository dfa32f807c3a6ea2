"""python -m diamond.play: the keys make the game's ALE actions, the imagined and real games step together with
the imagination loop's action alignment, the server listens on loopback and leaves nothing behind, bad input is
one sentence, and a real browser (headless Chromium) plays the page."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch

from diamond.agent import build_agent
from diamond.checkpoint import save_checkpoint
from diamond.config import build_config, config_hash, to_dict
from diamond.io import atomic_write_yaml
from diamond.play import Player, bind, load_player, main, make_app, make_server, parse_args, url_of
from diamond.play_session import PlaySession, action_for_keys, frame_mse, keys_for_action

ALE_18 = ["NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT", "UPFIRE",
          "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE", "DOWNRIGHTFIRE", "DOWNLEFTFIRE"]
BREAKOUT = ["NOOP", "FIRE", "RIGHT", "LEFT"]
RIGHT, LEFT = 2, 3
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1200,1000"]


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


def test_bad_input_is_one_sentence_and_a_non_zero_exit(run_dir: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    rc, err = _error(["--run", str(tmp_path / "nope")], capsys)
    assert rc != 0 and "no such run folder" in err
    (tmp_path / "empty").mkdir()
    rc, err = _error(["--run", str(tmp_path / "empty")], capsys)
    assert rc != 0 and "config.yaml" in err
    rc, err = _error(["--run", str(run_dir), "--game", "Pong"], capsys)
    assert rc != 0 and "is a Breakout run, not Pong" in err
    ckpt = run_dir / "checkpoints" / "last.pt"  # a Breakout agent played as Qbert: refused by its run folder
    rc, err = _error(["--checkpoint", str(ckpt), "--game", "Qbert", "--profile", "smoke"], capsys)
    assert rc != 0 and "from a Breakout run" in err
    loose = tmp_path / "loose.pt"  # outside a run folder: Pong has 6 actions, the agent 4
    shutil.copy(ckpt, loose)
    rc, err = _error(["--checkpoint", str(loose), "--game", "Pong", "--profile", "smoke"], capsys)
    assert rc != 0 and "4 actions but Pong has 6" in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        rc, err = _error(["--run", str(run_dir), "--port", str(taken.getsockname()[1])], capsys)
    assert rc != 0 and "the port is in use" in err and "--port" in err


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


# ------------------------------------------------------------------------------------------------ the browser


def browser_or_skip() -> Any:
    """A headless Chromium driven by Selenium through Debian's chromedriver; skipped, saying why, without one."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    if chromium is None or driver is None or webdriver is None:
        missing = ", ".join(n for n, v in (("chromium", chromium), ("chromedriver", driver), ("selenium", webdriver))
                            if v is None)
        reason = (f"browser test skipped: {missing} not installed (apt-get install chromium chromium-driver; "
                  "pip install selenium)")
        warnings.warn(reason)
        pytest.skip(reason)
    import tempfile

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="play-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    browser = webdriver.Chrome(options=options, service=Service(driver))
    browser.profile_dir = profile
    return browser


@pytest.fixture
def page(player: Player) -> Iterator[tuple[Any, str]]:
    """The player's app served from a thread, and a browser on its page."""
    sock = bind("127.0.0.1", 0)
    server = make_server(make_app(player))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    browser = None
    try:
        browser = browser_or_skip()
        yield browser, url_of(sock)
    finally:
        if browser is not None:
            browser.quit()
            shutil.rmtree(browser.profile_dir, ignore_errors=True)
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def _text(browser: Any, id_: str) -> str:
    return browser.find_element("id", id_).text


def _wait(condition: Any, what: str, timeout: float = 120.0) -> None:  # generous: a busy 2-core CI
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_browser_plays_the_page(page: tuple[Any, str], tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    browser, url = page
    browser.get(url)
    _wait(lambda: _text(browser, "game") == "Breakout", "the hello message")
    keymap = [r.text for r in browser.find_elements("css selector", "#keymap li")]
    assert keymap == ["NOOP: no key", "FIRE: Space", "RIGHT: →/D", "LEFT: ←/A"]
    _wait(lambda: int(_text(browser, "imagined-step")) > 2, "the game to run by itself")

    def press(key: str) -> None:
        ActionChains(browser).send_keys(key).perform()

    def read_page() -> tuple[str, str, str, str, str]:
        """Both frames, both step counters and the context, read at one instant."""
        return tuple(browser.execute_script(
            "const t = (id) => document.getElementById(id);"
            "return [t('imagined').src, t('real').src, t('imagined-step').textContent, t('real-step').textContent,"
            " t('shown-context').textContent];"))

    def restart(context: int) -> None:
        field = browser.find_element("id", "context")
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(str(context), Keys.ENTER)  # Enter restarts from the context typed
        browser.execute_script("document.activeElement.blur()")
        _wait(lambda: read_page()[2:] == ("0", "0", str(context)), f"a restart from context {context}")

    def step_with(key: str) -> tuple[str, str]:
        t = int(_text(browser, "imagined-step"))
        press(key)
        _wait(lambda: int(_text(browser, "imagined-step")) == t + 1, "one step")
        imagined, real, t_imagined, t_real, _ = read_page()
        assert t_imagined == t_real == str(t + 1)  # the two panels advance together
        return imagined, real

    press("p")
    _wait(lambda: "paused" in _text(browser, "status"), "pause")
    restart(7)
    start, start_real, *_ = read_page()
    assert start == start_real  # both panels start from the same real frame
    panels = [step_with(Keys.ARROW_RIGHT) for _ in range(3)]
    assert _text(browser, "imagined-step") == _text(browser, "real-step") == "3"
    imagined, real = zip(*panels)  # each step changed both panels
    assert len({start, *imagined}) == 4 and len({start, *real}) == 4
    assert _text(browser, "action") == "RIGHT" and _text(browser, "by") == "you"
    restart(7)
    left = step_with(Keys.ARROW_LEFT)
    assert left[0] != imagined[0]  # the imagined frame follows the action ...
    restart(7)
    assert step_with(Keys.ARROW_RIGHT)[0] == imagined[0]  # ... and only the action: the same key, the same frame
    press("g")  # the policy plays
    press("p")
    _wait(lambda: int(_text(browser, "imagined-step")) >= 5, "the running game")
    press("p")
    _wait(lambda: "paused" in _text(browser, "status"), "pause")
    page = read_page()  # both counters at one instant: a frame in flight at the pause may still land
    assert page[2] == page[3] and _text(browser, "by") == "policy"
    assert float(_text(browser, "fps")) > 0
    steps = browser.find_element("id", "num-steps")
    steps.clear()
    steps.send_keys("2", Keys.TAB)
    Select(browser.find_element("id", "sampler")).select_by_value("heun")
    browser.execute_script("document.activeElement.blur()")
    step_with("n")
    assert _text(browser, "sampling") == "2 heun denoising steps", _text(browser, "status")
    shot = tmp_path / "play.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
