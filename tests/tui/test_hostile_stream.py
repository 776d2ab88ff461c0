"""``traintop watch`` on a hostile run, in a real tmux pane: the bytes the app writes to the terminal,
captured with ``pipe-pane`` while a person walks the runs list and every pane, hold no control sequence
of the run's own (title, OSC 52 clipboard, OSC 8 link, screen wipe, CR, backspace, C1, bidi, zero-width).
Textual's own escapes are of course there; what the run wrote is only ever shown as ``\\x1b`` text."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.health.test_report_hostile import assert_no_payload, payload_run
from tests.tui.fixtures import small_run

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
REPO = Path(__file__).resolve().parents[2]
# waits for a file, then becomes `traintop watch ROOT`: the pipe is in place before the first byte
LAUNCHER = """import os, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
os.execv(sys.executable, [sys.executable, "-m", "traintop", "watch", sys.argv[2]])
"""


class Pane:
    """One tmux pane on a server of its own, whose output is copied to ``stream``."""

    def __init__(self, tmp: Path) -> None:
        self.tmux = ["tmux", "-S", str(tmp / "tmux.sock"), "-f", "/dev/null"]  # a server of its own, gone with tmp
        self.stream = tmp / "stream.bin"

    def start(self, root: Path, width: int, height: int) -> None:
        """Start ``traintop watch root`` in a ``width``×``height`` pane once its output is piped."""
        launcher, go = root.parent / "launch.py", root.parent / "go"
        launcher.write_text(LAUNCHER)
        # the server keeps the environment it starts with: COLUMNS / LINES from there would override the size
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TMUX")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        subprocess.run([*self.tmux, "new-session", "-d", "-s", "w", "-x", str(width), "-y", str(height),
                        sys.executable, str(launcher), str(go), str(root)], env=env, check=True, cwd=root.parent)
        subprocess.run([*self.tmux, "pipe-pane", "-O", "-t", "w", f"cat >> {shlex.quote(str(self.stream))}"],
                       check=True)
        self.wait(lambda _: self.stream.exists(), "the pipe to start")
        go.touch()

    def screen(self) -> str:
        """What the pane shows now, as text."""
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", "w"], capture_output=True,
                              text=True, errors="replace").stdout

    def wait(self, ready: Callable[[str], bool], what: str, timeout: float = 30.0) -> str:
        """The screen once ``ready(screen)``; fail with the screen after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if ready(screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; the pane shows:\n{self.screen()}")

    def press(self, key: str, ready: Callable[[str], bool], what: str) -> str:
        """Send one key (tmux's name for it) and wait for the screen it leads to."""
        subprocess.run([*self.tmux, "send-keys", "-t", "w", key], check=True)
        return self.wait(ready, what)

    def close(self) -> None:
        """End the server and its pane."""
        subprocess.run([*self.tmux, "kill-server"], check=False, capture_output=True)


def test_watch_writes_no_byte_of_a_hostile_run_to_the_terminal(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    payload_run(logs)  # names, statuses, alerts, acks, samples, notices: all hostile; a 10 KB term
    small_run(logs, "calm-run", end=True)  # a second run: the list stays on screen
    steps = [  # (key, what the screen then shows, in words)
        ("Enter", lambda s: "Charts" in s and "\\x1b]2;PWNED" in s.splitlines()[0], "the run screen"),  # the worst run
        ("1", lambda s: any("CRITICAL" in line and "mel\\x1b]2;PWNED" in line for line in s.splitlines())
         and any(line.lstrip(" ▸").startswith("mel\\x1b]2;PWNED") for line in s.splitlines()),
         "the term table and the worst alert naming the hostile term"),
        ("2", lambda s: "sampling failed at step 12" in s, "the alerts pane"),
        ("3", lambda s: "lr" in s.split() and "mel\\x1b]2;PWNED" in s, "the weights pane"),
        *[("Up", lambda s: True, "the row above")] * 3,  # to the first row: the hostile term's
        ("+", lambda s: True, "a staged weight"),  # its column is off screen: the name's is wide
        ("Enter", lambda s: "set_weight" in s, "the sent weight in the tabs line"),
        ("4", lambda s: "CPU" in s, "the system pane"),
        ("5", lambda s: "sampling failed:" in s, "the samples pane (the failed sample)"),
        ("Down", lambda s: "reference" in s and "txt\\x1b]2;PWNED" in s, "the other sample's text and paths"),
        ("6", lambda s: "run ended:" in s and "state →" in s and "rejected:" in s, "the event log"),
        ("x", lambda s: "y yes" in s and "  run\\x1b]2;PWNED" in s, "the stop question naming the run"),
        ("n", lambda s: "y yes" not in s, "the question closed"),
        ("Escape", lambda s: "calm-run" in s, "the runs list again"),
    ]
    pane = Pane(tmp_path)
    stuck: AssertionError | None = None
    try:
        pane.start(logs, 100, 30)  # narrow: the term table, the worst-alert line, one pane at a time
        pane.wait(lambda s: "calm-run" in s and "run\\x1b]2;PWNED" in s, "the runs list with both runs")
        for key, ready, what in steps:
            pane.press(key, ready, what)
    except AssertionError as exc:  # a screen the run's bytes wiped: the stream says why, below
        stuck = exc
    finally:
        time.sleep(1.0)  # the last frame reaches the pipe
        pane.close()
    stream = pane.stream.read_bytes().decode("utf-8")
    assert_no_payload(stream, "traintop watch")
    assert len(stream) > 10_000 and "\\x1b]2;PWNED\\x07" in stream  # the names were drawn, as text
    # Textual writes ESC sequences and line ends of its own, a BEL only to end its pointer shape (OSC 22);
    # never C1, format or separator characters
    stream = re.sub("\x1b]22;[a-z-]*\x07", "", stream)
    odd = sorted({f"U+{ord(c):04X}" for c in stream if unicodedata.category(c) in ("Cf", "Zl", "Zp")
                  or 0x80 <= ord(c) <= 0x9f or c in "\x07\x08\x7f"})
    assert not odd, f"control characters reached the terminal: {odd}"
    if stuck is not None:
        raise stuck
