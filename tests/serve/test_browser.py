"""``traintop serve`` in a real headless Chromium, on a real tiny trainer's live run.

The page loads from the printed URL (no cookie is ever set), the run's charts and alerts reach the
browser, a key pressed in the page pauses the trainer (control.jsonl → the trainer's ack → shown in
the page), a sample plays in a new tab, a missing or wrong token is refused, and another service on
another port of the host gets nothing of the token. Screenshots are saved under the test's tmp dir
(``serve-live.png``, ``serve-paused.png``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.serve.browser import RECORD_WEBSOCKET, Chromium, Page, chromium_path
from tests.serve.conftest import CDP_PORT, OTHER_PORT, REPO, plain, read_jsonl, wait_until
from tests.serve.test_other_port import OtherService
from tests.tui.fixtures import append_events, small_run

QUICK = ["--set", "cadence.eval_every=null", "--set", "cadence.save_every=null",
         "--set", "cadence.system_every=1.0", "--set", "cadence.print_every=1000"]
PORT = 8156


def _missing() -> str | None:
    if chromium_path() is None:
        return "no chromium here (scripts/setup.sh installs Debian's chromium when run as root)"
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (the [train] extra), so no real trainer can run"
    return None


pytestmark = pytest.mark.anyio


@pytest.fixture
def live_run(tmp_path: Path):
    """``traintop train xtts_tiny`` writing a live run under ``tmp_path/logs``."""
    logs = tmp_path / "logs"
    env = {**os.environ, "TRAINTOP_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "traintop.trainer.cli", "train", "xtts_tiny", "--logs", str(logs),
                             "--max-steps", "100000", *QUICK], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def run_dir() -> Path | None:
        if proc.poll() is not None:
            raise AssertionError(f"the trainer exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        runs = [p for p in logs.glob("*") if (p / "events.jsonl").is_file()] if logs.exists() else []
        return runs[0] if runs else None

    try:
        run = wait_until(run_dir, 300, "the trainer's run directory")
        yield proc, run
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def shown(page: Page) -> str:
    """Everything the app has drawn in the page so far, escape sequences removed."""
    return plain(await page.evaluate("window.__traintop ? window.__traintop.text : ''") or "")


async def wait_shown(page: Page, words: list[str], timeout: float, what: str) -> str:
    """Wait until every word has been drawn in the page."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = await shown(page)
        if all(w in text for w in words):
            return text
        await asyncio.sleep(0.3)
    missing = [w for w in words if w not in await shown(page)]
    raise AssertionError(f"timed out waiting for {what}: {missing} never drawn")


async def wait_async(fn, timeout: float, what: str):  # noqa: ANN001, ANN201
    """``wait_until`` that lets the event loop run between polls."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def steps(run: Path) -> int:
    return max((e.get("step", 0) for e in read_jsonl(run / "events.jsonl") if e.get("type") == "step"), default=0)


@pytest.mark.slow
@pytest.mark.skipif(_missing() is not None, reason=_missing() or "")
async def test_served_app_in_chromium_pauses_a_real_trainer(live_run, serve, tmp_path: Path) -> None:
    proc, run = live_run
    server = serve(run, PORT, "--host", "0.0.0.0")
    url = f"http://127.0.0.1:{PORT}/?token={server.token}"
    browser = Chromium(chromium_path(), tmp_path / "profile", CDP_PORT)
    try:
        page = await browser.first_page()
        assert await page.navigate(f"http://127.0.0.1:{PORT}/") == 401
        assert "needs its token" in await page.evaluate("document.body.innerText")
        assert await page.navigate(f"http://127.0.0.1:{PORT}/?token=not-the-token") == 403
        await page.call("Page.addScriptToEvaluateOnNewDocument", source=RECORD_WEBSOCKET)
        assert await page.navigate(url) == 200
        assert (await page.call("Network.getAllCookies"))["cookies"] == []  # the page's own URLs carry the secrets

        await wait_async(lambda: steps(run) >= 3, 300, "the trainer's first steps")
        await wait_shown(page, ["Charts", "Alerts", "loss_mel_ce", "loss_text_ce", run.name], 120,
                         "the run screen with its charts and alerts")
        await asyncio.sleep(2)  # a few more steps drawn
        await page.screenshot(tmp_path / "serve-live.png")

        await page.evaluate("document.querySelector('.xterm-helper-textarea').focus()")
        await page.press("p")
        pause = await wait_async(lambda: [c for c in read_jsonl(run / "control.jsonl") if c.get("cmd") == "pause"],
                                 30, "the pause command in control.jsonl")
        pause_id = pause[0]["id"]
        await wait_async(lambda: any(e.get("type") == "ack" and e.get("id") == pause_id and e.get("status") == "applied"
                                     for e in read_jsonl(run / "events.jsonl")), 60, "the trainer's ack")
        await wait_shown(page, ["pause: applied"], 30, "the ack in the page")
        paused_at = steps(run)
        await asyncio.sleep(3)
        assert steps(run) == paused_at, "the trainer kept stepping after the browser paused it"
        await page.screenshot(tmp_path / "serve-paused.png")

        await page.press("p")  # resume, then ask for a sample and play it from the samples pane
        await wait_async(lambda: steps(run) > paused_at, 60, "steps after resume")
        await page.press("a")
        await wait_async(lambda: any(e.get("type") == "sample" and e.get("wav") for e in
                                     read_jsonl(run / "events.jsonl")), 120, "a sample from the trainer")
        await page.press("5")
        await asyncio.sleep(1.5)  # the list fills on the next refresh
        await page.press("Enter")
        meta = await offered_wav(page)
        assert meta
        download = (await download_tabs(browser))[0]
        tab_url = download["url"]
        tab = await browser.attach(download)
        # the tab got the wav itself (its URL carries the tab's instance id, the download route's secret)
        assert "?instance=" in tab_url
        kind = await wait_async_value(tab, "document.contentType", lambda v: v and v != "text/html")
        assert kind == "audio/wav"
        assert proc.poll() is None
    finally:
        await browser.close()


async def offered_wav(page: Page) -> list[str]:
    """The app's ``deliver_file_start`` message (the wav offered to the browser)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        meta = await page.evaluate("window.__traintop.meta") or []
        found = [m for m in meta if "deliver_file_start" in m]
        if found:
            return found
        await asyncio.sleep(0.3)
    raise AssertionError(f"the wav was never offered to the browser; shown: {(await shown(page))[-500:]}")


async def wait_async_value(page: Page, expression: str, done, timeout: float = 30):  # noqa: ANN001, ANN201
    """The value of ``expression`` in ``page`` once ``done(value)`` holds."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = await page.evaluate(expression)
        if done(value):
            return value
        await asyncio.sleep(0.3)
    raise AssertionError(f"{expression} stayed {value!r}")


async def download_tabs(browser: Chromium) -> list[dict]:
    """The new tab the browser opened on the wav's download URL."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        tabs = [t for t in await browser.targets() if "/download/" in t["url"]]
        if tabs:
            return tabs
        await asyncio.sleep(0.3)
    raise AssertionError("no tab opened on the sample's download URL")


@pytest.mark.skipif(chromium_path() is None, reason="no chromium here (scripts/setup.sh installs Debian's chromium "
                                                    "when run as root)")
async def test_a_recorded_run_being_appended_shows_its_new_alert_on_loopback(serve, tmp_path: Path) -> None:
    run = small_run(tmp_path / "logs")
    server = serve(run, PORT - 1)  # loopback: the token is required here too
    other = OtherService(OTHER_PORT)
    browser = Chromium(chromium_path(), tmp_path / "profile", CDP_PORT)
    try:
        page = await browser.first_page()
        assert await page.navigate(f"http://127.0.0.1:{PORT - 1}/") == 401
        await page.call("Page.addScriptToEvaluateOnNewDocument", source=RECORD_WEBSOCKET)
        assert await page.navigate(server.url) == 200
        await wait_shown(page, ["loss_mel", "loss_text_ce", "Alerts"], 60, "the run screen")
        assert "NaN" not in await shown(page)
        # what the trainer writes when a loss goes NaN (traintop.trainer.run): the page must show it live
        append_events(run, ("alert", {"kind": "nonfinite", "term": "loss_mel",
                                      "message": "loss_mel is NaN at step 120; step skipped"}))
        await wait_shown(page, ["NaN at step 120", "CRITICAL"], 30, "the appended alert")
        await page.screenshot(tmp_path / "serve-alert.png")
        # the same browser on another port of the host: that service gets nothing of the token
        assert await page.navigate(f"http://127.0.0.1:{OTHER_PORT}/") == 200
        assert other.requests and all(server.token not in r and "cookie" not in r.lower() for r in other.requests)
    finally:
        await browser.close()
        other.close()
