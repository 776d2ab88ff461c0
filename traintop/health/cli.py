"""``traintop report RUN_DIR [RUN_DIR…] [--profile NAME|PATH] [--json] [--follow --on-alert CMD]``.

Two or more runs are compared (``health.compare_report``). Exit codes: 0 healthy, 1 warning,
2 critical (the worst run's), 3 a run (or the profile asked for) could not be read.
Kept light at import time: ``traintop --help`` imports this module to build its parser.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_CODES = {"healthy": 0, "warning": 1, "critical": 2}
EXIT_UNREADABLE = 3


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``report`` subcommand's arguments to ``parser``."""
    parser.add_argument("run_dir", metavar="RUN_DIR", nargs="+",
                        help="the run directory (holding events.jsonl or TensorBoard event files), or a folder "
                             "of runs: one line per run; two or more runs (at most 8) are compared: who is "
                             "ahead on each term, and what differs")
    parser.add_argument("--all", action="store_true", help="on a folder of runs: every run's whole report")
    parser.add_argument("--profile", metavar="NAME|PATH", default=None,
                        help="health profile: a built-in name (seed-six-term, vits, xtts-gpt) or a YAML file; "
                             "default: the one the run names, else the best match by term names")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--follow", action="store_true",
                        help="keep following the run until it ends, running --on-alert for each new alert")
    parser.add_argument("--on-alert", metavar="CMD", default=None,
                        help="with --follow: shell command run once per new alert at warning or above, "
                             "with the alert as JSON on its standard input")
    parser.add_argument("--poll", action="store_true", help="with --follow: poll instead of inotify (NFS, sshfs)")


def no_events_reason(reader: Any) -> str:
    """Why a run with no event could not be judged: the file that could not be read, or none there."""
    why = next((n.message for n in reader.history.notices if n.kind == "unreadable"), None)
    return why or f"{reader.path}: no readable event"


def _load(args: argparse.Namespace) -> tuple[Any, Path] | int:
    """The run opened and judged (``health.pipeline``), or the exit code after saying why not."""
    from traintop.health.loader import load_profile
    from traintop.health.pipeline import JudgedRun, profile_factory
    from traintop.health.profile import ProfileError
    from traintop.protocol import RunDirError
    from traintop.protocol.text import MESSAGE_MAX, shown
    from traintop.sources.find import resolve_run

    try:  # a profile file's ``tags:`` rules tell the reader what a TensorBoard run's tags are
        rules = load_profile(args.profile).tags if args.profile is not None else ()
    except ProfileError as exc:
        print(f"traintop report: {shown(exc, MESSAGE_MAX)}", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        run_dir = resolve_run(args.run_dir)
        run = JudgedRun(run_dir, monitor_factory=profile_factory(args.profile),
                        use_watchdog=not getattr(args, "poll", False), tag_rules=rules)
        run.open(judge_parts=not args.follow)
    except (RunDirError, OSError) as exc:
        print(f"traintop report: {shown(exc, MESSAGE_MAX)}", file=sys.stderr)
        return EXIT_UNREADABLE
    if run.history.events == 0:
        print(f"traintop report: {shown(no_events_reason(run.source), MESSAGE_MAX)}", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        run.first_pass(background=True)
    except ProfileError as exc:  # the profile a run names is the run's text
        print(f"traintop report: {shown(exc, MESSAGE_MAX)}", file=sys.stderr)
        return EXIT_UNREADABLE
    return run, run_dir


def run_report(args: argparse.Namespace) -> int:
    """Run ``traintop report``; return the exit code."""
    from traintop.sources.find import find_runs, is_run_dir

    paths = args.run_dir if isinstance(args.run_dir, list) else [args.run_dir]
    if len(paths) > 1:
        return _compare(paths, args)
    args.run_dir = paths[0]  # one path: a run, or a folder of runs, as before

    root = Path(args.run_dir)
    if root.is_dir() and not is_run_dir(root) and not args.follow:
        runs = find_runs(root)
        if len(runs) > 1:
            from traintop.health.folder import report_folder

            return report_folder(root, runs, args)
    loaded = _load(args)
    if isinstance(loaded, int):
        return loaded
    run, run_dir = loaded
    if args.on_alert and not args.follow:
        print("traintop report: --on-alert needs --follow", file=sys.stderr)
        return EXIT_UNREADABLE
    if args.follow:
        from traintop.health.follow import follow_run

        return follow_run(run, args.on_alert, as_json=args.json)
    from traintop.health.report import build_report

    mon = run.monitor
    mon.update(run.history)  # the stall check on the wall clock
    report = build_report(run.history, mon.profile, monitor=mon)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        from traintop.health.render import print_report

        print_report(report, run_dir)
    return EXIT_CODES[report["verdict"]]


def _compare(paths: list[str], args: argparse.Namespace) -> int:
    """``traintop report A B [C…]``: the options that need one run refused, then the comparison."""
    from traintop.health.compare_report import MAX_RUNS, report_comparison

    for option, given in (("--follow", args.follow), ("--on-alert", args.on_alert), ("--all", args.all)):
        if given:
            print(f"traintop report: {option} takes one run, not {len(paths)}", file=sys.stderr)
            return EXIT_UNREADABLE
    if len(paths) > MAX_RUNS:
        print(f"traintop report: at most {MAX_RUNS} runs are compared, not {len(paths)}", file=sys.stderr)
        return EXIT_UNREADABLE
    return report_comparison(paths, args.profile, as_json=args.json)
