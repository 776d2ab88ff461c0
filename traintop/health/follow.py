"""``traintop report --follow --on-alert CMD``: a headless watcher for people with no terminal attached."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from traintop.health.alerts import SEVERITY_RANK, Alert
from traintop.health.cli import EXIT_CODES
from traintop.health.monitor import HealthMonitor
from traintop.health.profile import HealthProfile
from traintop.protocol import EVENTS_FILE, JsonlTail, TailChunk, follow
from traintop.protocol.text import shown

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


def follow_run(history: Any, offset: int, profile: HealthProfile, run_dir: Path, on_alert: str | None, *,
               use_watchdog: bool = True, as_json: bool = False, tick: float = TICK) -> int:
    """Follow the run until ``run_end`` (or its trainer is gone); return the exit code of the final verdict."""
    from traintop.health.report import build_report

    mon = HealthMonitor(profile)
    lock = threading.Lock()
    stop = threading.Event()
    told: set[str] = set()

    def on_chunk(chunk: TailChunk) -> None:
        with lock:
            if chunk.restarted:
                history.reset()
            for notice in chunk.notices:
                history.note(notice)
                # skipped / truncated / replaced data is news too, never passed over in silence
                print(json.dumps({"notice": notice.kind, "offset": notice.offset, "message": notice.message})
                      if as_json else f"data: {shown(notice.message)}", flush=True)
            history.ingest_lines(chunk.lines, chunk.start)

    def tell(alerts: list[Alert]) -> None:
        for alert in alerts:
            if alert.id in told or SEVERITY_RANK.get(alert.severity, 0) < SEVERITY_RANK["warning"]:
                continue
            told.add(alert.id)
            line = json.dumps(alert.to_dict()) if as_json else f"{alert.severity}: {shown(alert.message)}"
            print(line, flush=True)
            if on_alert:
                run_hook(on_alert, alert)

    with lock:
        mon.update(history)
    for notice in history.notices:  # what the first read skipped or found replaced
        print(json.dumps({"notice": notice.kind, "offset": notice.offset, "message": notice.message})
              if as_json else f"data: {shown(notice.message)}", flush=True)
    tell(mon.active_alerts())  # what is wrong already is news to someone who just started watching
    tail = JsonlTail(run_dir / EVENTS_FILE, offset)
    reader = threading.Thread(target=follow, args=(tail, on_chunk, stop), kwargs={"use_watchdog": use_watchdog},
                              daemon=True, name="traintop-report-follow")
    reader.start()
    try:
        while True:
            with lock:
                new = mon.update(history)
                ended = history.run_end is not None
                gone = any(a.active and a.kind == "stall" and "pid" in a.evidence for a in mon.alerts)
            tell(new)
            if ended or gone:
                break
            time.sleep(tick)
    finally:
        stop.set()
        reader.join(timeout=5)
    with lock:
        report = build_report(history, profile, monitor=mon)
    print(json.dumps({"verdict": report["verdict"], "status": report["status"], "step": report["step"]})
          if as_json else f"run {report['status']}: verdict {report['verdict']}", flush=True)
    return EXIT_CODES[report["verdict"]]
