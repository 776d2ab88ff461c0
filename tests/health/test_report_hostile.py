"""``traintop report`` on a run whose names are hostile and whose events were damaged (issue 10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from traintop.protocol import EventWriter

ROOT = Path(__file__).resolve().parents[2]
ESC_TERM = "\x1b]2;pwned\x07\x1b[2Jloss"


def _traintop(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "traintop", *args], capture_output=True, cwd=ROOT,
                          env=env, timeout=120)


def hostile_run(root: Path) -> Path:
    """Terms named ``[/]`` and with escape sequences, a recipe named with markup, a garbage line."""
    run = root / "hostile"
    w = EventWriter(run)
    terms = {"[/]": 1.0, ESC_TERM: 0.5}
    w.emit("run_start", run="\x1b[31mred-run", recipe="[bold]x", profile=None, terms=terms,
           planned_steps=10, planned_epochs=None, host="h", pid=1, versions={}, resumed_from=None)
    for step in range(1, 6):
        w.emit("step", step=step, epoch=0, losses={"[/]": 1.0 / step, ESC_TERM: 2.0}, weights=terms,
               total=1.0, lr=1e-4, grad_norm=None, step_time=0.1, loader_time=0.0)
    w.emit("alert", kind="nonfinite", term="[/]", message="[/] bad \x1b[2J")
    w.close()
    with (run / "events.jsonl").open("ab") as fh:
        fh.write(b"not json at all\n")
    return run


def test_report_prints_hostile_names_as_text_and_says_what_it_skipped(tmp_path: Path) -> None:
    run = hostile_run(tmp_path)
    done = _traintop("report", str(run))
    assert done.returncode in (0, 1, 2) and b"Traceback" not in done.stderr, done.stderr.decode()
    out = done.stdout.decode()
    assert b"\x1b" not in done.stdout and b"\x07" not in done.stdout  # nothing reaches the terminal raw
    assert "[/]" in out and "\\x1b]2;pwned\\x07" in out
    assert "1 unreadable line(s) skipped" in out and "byte" in out
    as_json = _traintop("report", str(run), "--json")
    report = json.loads(as_json.stdout)
    assert report["data"]["bad_lines"] == 1 and report["data"]["notices"][0]["kind"] == "bad_line"
    assert set(report["terms"]) >= {"[/]", ESC_TERM}  # JSON keeps the names exact (escaped by JSON)


def test_report_on_clean_data_says_so(tmp_path: Path) -> None:
    run = tmp_path / "clean"
    w = EventWriter(run)
    w.emit("run_start", run="clean", recipe="r", profile=None, terms={"loss": 1.0}, planned_steps=3,
           planned_epochs=None, host="h", pid=1, versions={}, resumed_from=None)
    w.emit("step", step=1, epoch=0, losses={"loss": 1.0}, weights={"loss": 1.0}, total=1.0, lr=1e-4,
           grad_norm=None, step_time=0.1, loader_time=0.0)
    w.emit("run_end", status="completed", step=1, error=None)
    w.close()
    done = _traintop("report", str(run))
    assert "Data: every event line was read." in done.stdout.decode()
    assert json.loads(_traintop("report", str(run), "--json").stdout)["data"]["bad_lines"] == 0
