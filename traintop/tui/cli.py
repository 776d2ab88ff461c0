"""``traintop watch [PATH] [--poll]`` — light at import: Textual loads only when the app runs."""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from traintop.tui.live import LiveRun


def add_watch_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``traintop watch``."""
    parser.add_argument("path", nargs="*", default=[Path("logs")], type=Path, metavar="PATH",
                        help="a run directory or a folder of runs (default: ./logs; waited for if missing); "
                             "two to eight run directories: compare them")
    parser.add_argument("--poll", action="store_true",
                        help="poll the events file instead of inotify (NFS, sshfs and other silent filesystems)")
    parser.add_argument("--profile", metavar="NAME|PATH", default=None,
                        help="health profile to judge the run with, instead of the one guessed from its terms")


def run_watch(args: argparse.Namespace) -> int:
    """Run the app until the person quits; the trainer is never touched."""
    from traintop.protocol.text import MESSAGE_MAX, shown

    paths = list(args.path) if isinstance(args.path, list) else [args.path]
    from traintop.sources.find import runs_to_compare

    try:
        compare = runs_to_compare(paths)
    except ValueError as exc:
        print(f"traintop watch: {exc}", file=sys.stderr)
        return 2
    path: Path = paths[0]
    if path.is_file() and path.name != "events.jsonl":
        print(f"traintop watch: {shown(path, MESSAGE_MAX)} is a file; give a run directory (holding events.jsonl or "
              "TensorBoard event files) "
              "or a folder of runs", file=sys.stderr)
        return 2
    options: dict = {}
    if getattr(args, "profile", None):
        from traintop.health import choose_profile
        from traintop.health.pipeline import profile_factory
        from traintop.health.profile import ProfileError

        try:
            profile = choose_profile(None, args.profile)  # a bad name fails here, before the screen opens
        except ProfileError as exc:
            print(f"traintop watch: {shown(exc, MESSAGE_MAX)}", file=sys.stderr)
            return 2
        options["monitor_factory"] = profile_factory(args.profile)
        options["tag_rules"] = profile.tags  # what a TensorBoard run's tags are, as the profile says
    # start-up builds many objects and no garbage worth a collection pass: the app turns the
    # collector back on once it has drawn the run (or after GC_PAUSE seconds at most)
    gc.disable()
    # every run starts opening now (a comparison's too): its parsing runs while Textual loads
    opening = [start_open(p, not args.poll, options) for p in compare or [path]]
    from traintop.tui.app import TraintopApp  # Textual is imported only here, while the run is read

    app = TraintopApp(path, use_watchdog=not args.poll, live=None if compare else opening[0], compare=compare,
                      opening=[live for live in opening if live is not None] if compare else None, **options)
    app.run()
    return int(app.return_code or 0)


def start_open(path: Path, use_watchdog: bool, options: dict) -> LiveRun | None:
    """Start opening a run directory now (its parsing processes start while Textual loads); the app
    shows it when ready. A folder of runs is left to the app."""
    from traintop.sources.find import is_run_dir

    run_dir = path.parent if path.name == "events.jsonl" else path
    if not is_run_dir(run_dir):
        return None
    from multiprocessing import resource_tracker

    from traintop.tui.live import LiveRun

    resource_tracker.ensure_running()  # while sys.stderr is the real one (spawn passes it on)
    live = LiveRun(run_dir, use_watchdog=use_watchdog, **options)
    live.start_open()
    return live

