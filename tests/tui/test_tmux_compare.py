"""``traintop watch LIVE ENDED`` in a real tmux pane: a live ``xtts_tiny`` trainer compared with an
ended run. Both runs in the legend (the live one running, its step moving; the ended one completed),
their letters drawn in the chart, the term table's rows, a term only one run has says so, ``]`` moves
to the next term and ``t`` aligns by wall time. The trainer is stopped at the end, never left running.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.tui.fixtures import small_run

REPO = Path(__file__).resolve().parents[2]
# as tests/serve/test_browser.py: no eval, no checkpoint, a system event a second, no console output
QUICK = ["--set", "cadence.eval_every=null", "--set", "cadence.save_every=null",
         "--set", "cadence.system_every=1.0", "--set", "cadence.print_every=1000"]

pytestmark = [
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                       reason="torch is not installed (the [train] extra), so no real trainer can run"),
]

TITLE_TERM = re.compile(r"·\s+(\S+) \((\d+)/(\d+)\)")  # "·  loss_mel (1/4)  ·  by step"


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


def _screen(session: str) -> str:
    return _tmux("capture-pane", "-p", "-t", session)


def _wait(session: str, wanted: Callable[[str], bool], what: str, timeout: float = 120) -> str:
    """The pane's text once ``wanted(text)`` holds (polled; a busy machine gets a generous ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = _screen(session)
        if wanted(screen):
            return screen
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; the screen shows:\n{_screen(session)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _title(screen: str) -> str:
    """The screen's first line (empty while nothing is drawn)."""
    return (screen.splitlines() or [""])[0]


def _rows(screen: str) -> str:
    """The term table's two rows (one per run), below its header."""
    lines = screen.splitlines()
    header = next((i for i, line in enumerate(lines) if "@same x" in line), None)
    return "" if header is None else "\n".join(lines[header + 1:header + 3])


@pytest.fixture
def live_trainer(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    """``traintop train xtts_tiny`` writing a live run under ``tmp_path/logs``; stopped (and checked
    gone) at the end."""
    logs = tmp_path / "logs"
    err = (tmp_path / "trainer.err").open("w")
    env = {**os.environ, "TRAINTOP_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "traintop.trainer.cli", "train", "xtts_tiny", "--logs", str(logs),
                             "--max-steps", "100000", *QUICK], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=err)

    def stepping() -> Path | None:
        if proc.poll() is not None:
            raise AssertionError(f"the trainer exited with {proc.returncode}: "
                                 f"{(tmp_path / 'trainer.err').read_text()[-2000:]}")
        for run in logs.glob("xtts_tiny-*") if logs.exists() else []:
            events = run / "events.jsonl"
            if events.is_file() and b'"type":"step"' in events.read_bytes():
                return run
        return None

    try:
        deadline = time.monotonic() + 300
        run = None
        while run is None:
            if time.monotonic() > deadline:
                raise AssertionError("the trainer wrote no step in 300 s")
            run = stepping()
            time.sleep(0.3)
        yield proc, run
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err.close()
    assert not _alive(proc.pid), "the trainer was left running"


@pytest.mark.slow
def test_a_live_xtts_tiny_run_beside_an_ended_one(live_trainer, tmp_path: Path) -> None:
    proc, live = live_trainer
    ended = small_run(tmp_path / "logs", end=True)  # loss_mel and loss_text_ce; the trainer logs loss_mel_ce
    session = f"issue-compare-{uuid.uuid4().hex[:8]}"
    env_path = os.environ.get("PYTHONPATH", "")
    # a tmux server keeps the environment it started with: COLUMNS / LINES from there would override the pane size
    cmd = (f"unset COLUMNS LINES; cd {tmp_path} && PYTHONPATH={REPO}:{env_path} "
           f"{sys.executable} -m traintop watch logs/{live.name} logs/{ended.name}; sleep 30")  # stderr: Textual's
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "32", cmd], check=True)
    live_row = re.compile(rf"\bA\s+{re.escape(live.name)}\s+running\s+([\d,]+)")
    try:
        def opened(s: str) -> bool:
            lines = s.splitlines()
            return len(lines) > 2 and "comparing 2 runs" in lines[0] and live_row.search(lines[1]) is not None \
                and "@same x" in s

        screen = _wait(session, opened, "the comparison with the live run's step in its legend")
        lines = screen.splitlines()
        legend = lines[1]
        assert re.search(rf"\bB\s+{re.escape(ended.name)}\s+completed\s+120\b", legend), legend
        first = int(live_row.search(legend).group(1).replace(",", ""))
        # the live run's step moves (the screen redraws plain steps every few seconds)
        later = _wait(session, lambda s: (m := live_row.search(s)) is not None
                      and int(m.group(1).replace(",", "")) > first and all(k in _rows(s) for k in "◀◆"),
                      "the live run's step to move (and the two runs' EMAs compared)")
        assert proc.poll() is None

        lines = later.splitlines()
        term, index, count = TITLE_TERM.search(lines[0]).groups()
        assert "by step" in lines[0] and int(count) >= 4  # loss_text_ce, loss_mel_ce, loss_mel, total
        header = next(i for i, line in enumerate(lines) if "@same x" in line)
        assert "best ema (step)" in lines[header] and "change" in lines[header] and "zone" in lines[header]
        assert lines[header - 1].lstrip().startswith(f"{term} ") and "same x =" in lines[header - 1]
        row_a, row_b = lines[header + 1], lines[header + 2]  # one row per run, each led by its letter
        assert row_a.split()[0] == "A" and row_b.split()[0] == "B", (row_a, row_b)
        assert re.search(r"\(\d[\d,]*\)", row_a) and re.search(r"\(\d[\d,]*\)", row_b)  # best EMA (its step)
        assert "lowest EMA now" in lines[header + 3]
        assert "◀" in row_a + row_b and "◆" in row_a + row_b  # the first term both runs have: who is lowest
        # the chart of the selected term: one line per run, each ending in its letter
        chart = [line.split("┤", 1)[-1].split("│", 1)[-1] for line in lines[header + 4:]
                 if "│" in line or "┤" in line]
        assert any("A" in c for c in chart) and any("B" in c for c in chart), "\n".join(chart)
        alerts = lines[-2]
        assert "no active alerts in any run" in alerts or re.search(r"^\s*[AB] ", alerts), alerts

        # ] until a term only one of the runs has: the title counts on, the table says "only in"
        seen = {term}
        only_in = None
        for _ in range(int(count) - 1):
            before = int(index)
            _tmux("send-keys", "-t", session, "]")
            screen = _wait(session, lambda s, b=before: (m := TITLE_TERM.search(_title(s))) is not None
                           and int(m.group(2)) == b % int(count) + 1, "the next term after ]")
            term, index, _ = TITLE_TERM.search(_title(screen)).groups()
            assert term not in seen
            seen.add(term)
            table = next(line for line in screen.splitlines() if line.lstrip().startswith(f"{term} ")
                         and "same x =" in line)
            if "only in" in table:
                only_in = (term, table, screen)
                break
        assert only_in is not None, f"no term said 'only in' among {sorted(seen)}"
        term, table, screen = only_in
        holder = table.split("only in", 1)[1].split()[0]
        assert holder in ("A", "B") and term in ("loss_mel_ce", "loss_mel")
        assert holder == ("A" if term == "loss_mel_ce" else "B")
        assert "no such term in this run" in screen  # the other run's row

        _tmux("send-keys", "-t", session, "t")
        screen = _wait(session, lambda s: "wall time" in _title(s), "'wall time' in the title after t")
        assert f"{term} (" in _title(screen)  # the same term, now by wall time
    finally:
        _tmux("kill-session", "-t", session)
