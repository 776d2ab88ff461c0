"""``traintop report DIR`` on a folder of runs: one line per run with its verdict (``--all``: every
run's whole report), worst first; the exit code is the worst verdict."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from traintop.health.cli import EXIT_CODES, EXIT_UNREADABLE, no_events_reason
from traintop.health.loader import load_profile
from traintop.health.pipeline import JudgedRun, profile_factory
from traintop.health.profile import ProfileError
from traintop.health.report import build_report
from traintop.protocol import RunDirError
from traintop.protocol.text import MESSAGE_MAX, shown
from traintop.sources.find import run_name

RANK = {"critical": 0, "warning": 1, "healthy": 2}


def open_judged(run_dir: Path, profile_name: str | None) -> tuple[JudgedRun, Any] | str:
    """One run opened and judged once (its ``JudgedRun`` and updated monitor), or why it could not be read."""
    try:
        rules = load_profile(profile_name).tags if profile_name is not None else ()
        run = JudgedRun(run_dir, monitor_factory=profile_factory(profile_name), use_watchdog=False, tag_rules=rules)
        run.open(judge_parts=False)
    except (RunDirError, OSError, ProfileError) as exc:
        return str(exc)
    if run.history.events == 0:
        return no_events_reason(run.source)
    try:
        mon = run.first_pass(background=False)
    except ProfileError as exc:
        return str(exc)
    mon.update(run.history)  # the stall check on the wall clock
    return run, mon


def judge_run(run_dir: Path, profile_name: str | None) -> dict[str, Any] | str:
    """The report of one run, or why it could not be read."""
    opened = open_judged(run_dir, profile_name)
    if isinstance(opened, str):
        return opened
    run, mon = opened
    return build_report(run.history, mon.profile, monitor=mon)


def report_folder(root: Path, runs: list[Path], args: Any) -> int:
    """Judge every run under ``root``; print a table (or each report with ``--all``); return the worst code."""
    judged = [(run_name(root, run), run, judge_run(run, args.profile)) for run in runs]
    judged.sort(key=lambda j: (RANK.get(j[2]["verdict"], -1) if isinstance(j[2], dict) else -1, j[0]))
    codes = [EXIT_CODES[r["verdict"]] if isinstance(r, dict) else EXIT_UNREADABLE for _, _, r in judged]
    if args.json:
        print(json.dumps([{"run": name, "path": str(run), **({"report": r} if isinstance(r, dict) else {"error": r})}
                          for name, run, r in judged], indent=2, default=str))
        return max(codes, default=0)
    if getattr(args, "all", False):
        from traintop.health.render import print_report

        for _name, run, r in judged:
            if isinstance(r, dict):
                print_report(r, run)
            else:
                print(f"{shown(run, MESSAGE_MAX)}: {shown(r, MESSAGE_MAX)}")
            print()
        return max(codes, default=0)
    width = min(60, max([len(shown(n)) for n, _, _ in judged] + [3]))
    print(f"{'RUN':<{width}} {'VERDICT':<8} {'STATUS':<10} {'STEP':>8}  WORST ALERT")
    for name, _run, r in judged:
        if not isinstance(r, dict):
            print(f"{shown(name)[:width]:<{width}} {'?':<8} {'unread':<10} {'-':>8}  {shown(r, 80)}")
            continue
        worst = r.get("worst_so_far") or {}
        alert = f"{worst['severity']}: {worst.get('message', '')}" if worst.get("severity") in EXIT_CODES else ""
        step = r.get("step")
        print(f"{shown(name)[:width]:<{width}} {shown(r['verdict']).upper():<8} {shown(r.get('status')):<10} "
              f"{shown(step if step is not None else '-'):>8}  {shown(alert, 80)}")
    print(f"{len(judged)} run(s) under {shown(root, MESSAGE_MAX)}; `traintop report RUN` for one, "
          "`--all` for every report", file=sys.stderr)
    return max(codes, default=0)
