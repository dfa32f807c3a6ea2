"""The page of python -m diamond.play in a real browser (headless Chromium through Selenium; skipped, saying why,
without one): it plays, pauses, steps, restarts and replays a context, marks R_ψ's predicted end, and shows a frame
rate only while frames arrive."""

from __future__ import annotations

import shutil
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest

from diamond.play import Player, bind, make_app, make_server, url_of
from tests.test_play import end_always, player, run_dir  # noqa: F401 (fixtures, shared)

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1200,1000"]



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
def page(player: Player) -> Iterator[tuple[Any, str, Any]]:
    """The player's app served from a thread, a browser on its page, and a call that stops the server."""
    sock = bind("127.0.0.1", 0)
    server = make_server(make_app(player))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    browser = None

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=20)

    try:
        browser = browser_or_skip()
        yield browser, url_of(sock), stop
    finally:
        if browser is not None:
            browser.quit()
            shutil.rmtree(browser.profile_dir, ignore_errors=True)
        stop()
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


def _fps(browser: Any) -> float:
    """The page's frames/s readout; 0 when it shows none (–)."""
    text = _text(browser, "fps")
    return 0.0 if text == "–" else float(text)


def test_a_browser_plays_the_page(page: tuple[Any, str, Any], tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    browser, url, _ = page
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
    _wait(lambda: int(_text(browser, "imagined-step")) >= 5 and _fps(browser) > 0, "the running game's frame rate")
    press("p")
    _wait(lambda: "paused" in _text(browser, "status"), "pause")
    page = read_page()  # both counters at one instant: a frame in flight at the pause may still land
    assert page[2] == page[3] and _text(browser, "by") == "policy"
    assert _text(browser, "fps") == "–", "a paused game has no frame rate"
    steps = browser.find_element("id", "num-steps")
    steps.clear()
    steps.send_keys("2", Keys.TAB)
    Select(browser.find_element("id", "sampler")).select_by_value("heun")
    browser.execute_script("document.activeElement.blur()")
    step_with("n")
    assert _text(browser, "sampling") == "2 heun denoising steps", _text(browser, "status")
    assert _text(browser, "fps") == "–", "a step while paused is no frame rate"
    steps.clear()
    steps.send_keys("1", Keys.TAB)
    browser.execute_script("document.activeElement.blur()")
    step_with("n")
    assert _text(browser, "sampling") == "1 heun denoising step", _text(browser, "status")
    shot = tmp_path / "play.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_page_marks_a_predicted_end_and_drops_the_frame_rate_of_a_stopped_server(
        player: Player, monkeypatch: pytest.MonkeyPatch, page: tuple[Any, str, Any]) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    browser, url, stop = page
    browser.get(url)
    _wait(lambda: _text(browser, "game") == "Breakout", "the hello message")
    ActionChains(browser).send_keys("p").perform()
    _wait(lambda: "paused" in _text(browser, "status"), "pause")
    ActionChains(browser).send_keys("r").perform()  # a new context: no end predicted yet
    marker = browser.find_element("id", "end-marker")
    _wait(lambda: _text(browser, "imagined-step") == "0" and not marker.is_displayed(), "a restart without the marker")
    end_always(monkeypatch, player)
    ActionChains(browser).send_keys("n").perform()
    _wait(marker.is_displayed, "the end marker")
    assert "predicts the episode ends here" in marker.text and _text(browser, "end-at") == "1"
    ActionChains(browser).send_keys("p").perform()  # the game plays on; the marker stays at the first end
    _wait(lambda: int(_text(browser, "imagined-step")) > 3 and _fps(browser) > 0, "the game to play on past the end")
    assert _text(browser, "end-at") == "1" and marker.is_displayed()
    stop()
    _wait(lambda: "disconnected" in _text(browser, "status"), "the page to see the server stop")
    assert _text(browser, "fps") == "–", "a stopped server has no frame rate"
