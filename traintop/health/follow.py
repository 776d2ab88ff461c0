"""``traintop report --follow --on-alert CMD``: a headless watcher for people with no terminal attached."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

from traintop.health.alerts import SEVERITY_RANK, Alert
from traintop.health.cli import EXIT_CODES
from traintop.health.pipeline import JudgedRun
from traintop.protocol.text import MESSAGE_MAX, shown
from traintop.sources.follow import ReadUpdate
from traintop.sources.lines import TailNotice

TICK = 1.0  # seconds between health passes: a stall is noticed with no new event
HOOK_TIMEOUT = 60.0  # a hung mail command must not stop the watcher


def run_hook(command: str, alert: Alert) -> int:
    """Run ``command`` in a shell with the alert as JSON on stdin (and in TRAINTOP_ALERT_* variables)."""
    env = {**os.environ, "TRAINTOP_ALERT_SEVERITY": alert.severity, "TRAINTOP_ALERT_KIND": alert.kind,
           "TRAINTOP_ALERT_TERM": alert.term or "", "TRAINTOP_ALERT_MESSAGE": alert.message}
    try:
        # the user's own command line (pipes and quoting allowed), exactly as `watch` or cron would run it
        done = subprocess.run(command, shell=True, input=json.dumps(alert.to_dict()), text=True, env=env,
                              timeout=HOOK_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        print(f"traintop report: --on-alert command timed out after {HOOK_TIMEOUT:g} s", file=sys.stderr)
        return -1
    if done.returncode != 0:
        print(f"traintop report: --on-alert command exited {done.returncode}", file=sys.stderr)
    return done.returncode


def follow_run(run: JudgedRun, on_alert: str | None, *, as_json: bool = False, tick: float = TICK) -> int:
    """Follow a run opened and judged (``JudgedRun.first_pass``) until ``run_end`` (or its trainer is
    gone); return the exit code of the final verdict."""
    from traintop.health.report import build_report

    reader, mon = run.source, run.monitor
    lock = reader.lock
    history = reader.history
    stop = threading.Event()
    told: set[str] = set()

    def say(notice: TailNotice) -> None:
        # skipped / truncated / replaced data is news too, never passed over in silence
        print(json.dumps({"notice": notice.kind, "offset": notice.offset, "message": notice.message})
              if as_json else f"data: {shown(notice.message, MESSAGE_MAX)}", flush=True)

    def tell(alerts: list[Alert]) -> None:
        for alert in alerts:
            if alert.id in told or SEVERITY_RANK.get(alert.severity, 0) < SEVERITY_RANK["warning"]:
                continue
            told.add(alert.id)
            line = json.dumps(alert.to_dict()) if as_json else \
                f"{shown(alert.severity)}: {shown(alert.message, MESSAGE_MAX)}"
            print(line, flush=True)
            if on_alert:
                run_hook(on_alert, alert)

    with lock:
        mon.update(history)  # the stall check on the wall clock
    for notice in history.notices:  # what the first read skipped or found replaced
        say(notice)
    tell(mon.active_alerts())  # what is wrong already is news to someone who just started watching
    last = [time.monotonic()]

    def idle() -> float:
        # one health pass a tick, whether or not lines came: a stall is noticed with no new event
        if time.monotonic() - last[0] < tick:
            return tick - (time.monotonic() - last[0])
        last[0] = time.monotonic()
        with lock:
            new = mon.update(reader.history)
            ended = reader.history.run_end is not None
            gone = any(a.active and a.kind == "stall" and "pid" in a.evidence for a in mon.alerts)
        tell(new)
        if ended or gone:
            stop.set()
        return tick

    def on_update(update: ReadUpdate) -> None:
        for notice in update.notices:  # the rows are in the history already; the idle pass judges them
            say(notice)

    reader.follow(on_update, stop, idle=idle)
    history = reader.history
    with lock:
        report = build_report(history, mon.profile, monitor=mon)
    print(json.dumps({"verdict": report["verdict"], "status": report["status"], "step": report["step"]})
          if as_json else f"run {shown(report['status'])}: verdict {report['verdict']}", flush=True)
    return EXIT_CODES[report["verdict"]]
