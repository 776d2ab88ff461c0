"""``traintop serve RUN_A RUN_B`` in a real headless Chromium: the page's terminal shows the two runs'
comparison (the title, both runs in the legend, what differs, the term table; ``t`` aligns by wall
time), and the tab's app is ``traintop watch RUN_A RUN_B``. A screenshot is saved under the test's tmp dir
(``serve-compare.png``; pytest keeps it when the test fails).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serve.browser import RECORD_WEBSOCKET, Chromium, chromium_path
from tests.serve.conftest import REPO, Served, wait_until
from tests.serve.test_browser import shown, wait_async, wait_shown
from tests.tui.fixtures import FixedClock, small_run

# this session's ports are 8150-8159 (tests/serve/conftest.py): 8152-8157 are the other serve tests'
PORT = 8158
CDP_PORT = 8159
TOKEN = "compare-token-0123456789"

pytestmark = [pytest.mark.anyio,
              pytest.mark.skipif(chromium_path() is None, reason="no chromium here (scripts/setup.sh installs "
                                                                 "Debian's chromium when run as root)")]


class ServedComparison(Served):
    """``traintop serve RUN... --port PORT`` (``Served`` takes one path)."""

    def __init__(self, runs: list[Path], port: int, env: dict[str, str]) -> None:
        self.port = port
        self.proc = subprocess.Popen([sys.executable, "-m", "traintop.cli", "serve", *map(str, runs),
                                      "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env)
        self.before: list[str] = []
        self.output = ""
        try:
            while True:
                line = self.proc.stdout.readline()
                if not line or "in a browser at" in line:  # "traintop serve: RUN_A RUN_B in a browser at"
                    break
                self.before.append(line)
            self.url = self.proc.stdout.readline().strip()
            assert "in a browser at" in line and self.url.startswith("http"), "".join(self.before) + line + self.url
            self.printed = line
            wait_until(self._listening, 30, f"traintop serve to listen on {port}")
        except BaseException:
            self.stop()
            raise


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


async def test_two_runs_served_as_their_comparison(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    run_a = small_run(logs, "voice-a-20261121-120000", end=True)
    run_b = small_run(logs, "voice-b-20261121-130000", steps=200, end=True, clock=FixedClock(1_790_010_000.0))
    (run_a / "run.yaml").write_text("recipe: xtts_tiny\ntraining:\n  batch_size: 4\n")
    (run_b / "run.yaml").write_text("recipe: xtts_tiny\ntraining:\n  batch_size: 8\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRAINTOP_SERVE_TOKEN": TOKEN}
    server = ServedComparison([run_a, run_b], PORT, env)
    try:
        browser = Chromium(chromium_path(), tmp_path / "profile", CDP_PORT)
    except BaseException:
        server.stop()
        raise
    try:
        assert server.url == f"http://127.0.0.1:{PORT}/?token={TOKEN}"
        assert run_a.name in server.printed and run_b.name in server.printed  # "RUN_A RUN_B in a browser at"
        page = await browser.first_page()
        assert await page.navigate(f"http://127.0.0.1:{PORT}/") == 401  # the token is required
        await page.call("Page.addScriptToEvaluateOnNewDocument", source=RECORD_WEBSOCKET)
        assert await page.navigate(server.url) == 200
        text = await wait_shown(page, ["comparing 2 runs", run_a.name, run_b.name, "completed", "@same x",
                                       "lowest EMA now"], 90, "the comparison of the two runs")
        assert "by step" in text and "loss_mel" in text
        await wait_shown(page, ["run.yaml:training.batch_size 4 → 8 in B"], 30, "what differs between the runs")
        # the tab's app is `traintop watch RUN_A RUN_B`
        watch = await wait_async(lambda: [c for c in map(_cmdline, server.children()) if "watch" in c], 30,
                                 "the tab's traintop watch process")
        assert watch[0][watch[0].index("watch") + 1:][:2] == [str(run_a.resolve()), str(run_b.resolve())]

        await page.evaluate("document.querySelector('.xterm-helper-textarea').focus()")
        await page.press("t")  # a key reaches the comparison: wall-time alignment
        await wait_shown(page, ["wall time from each start"], 30, "wall-time alignment after t")
        await page.screenshot(tmp_path / "serve-compare.png")
        assert (tmp_path / "serve-compare.png").stat().st_size > 1000
        assert "cannot compare" not in await shown(page)
    finally:
        await browser.close()
        server.stop()
