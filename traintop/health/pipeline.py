"""One open + health pipeline for every front end: ``open_run`` → ``open`` (each part judged while
worker processes parse the rest) → the first whole pass, from the health cache when it fits, saved
for the next open. ``traintop report`` (one run or a folder), ``report --follow`` and ``traintop
watch`` (``tui.live.LiveRun``) all go through ``JudgedRun``; none sets up a reader or a cache itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from traintop.health.loader import choose_profile
from traintop.health.monitor import HealthMonitor
from traintop.health.snapshot import judge
from traintop.sources.follow import ReadUpdate
from traintop.sources.history import RunHistory
from traintop.sources.jsonl.load import LEAD_SHARE
from traintop.sources.source import RunSource, open_run
from traintop.sources.tensorboard.tags import TagRules

# the monitor for a history (its profile chosen on what that history holds); None: no health here
MonitorFactory = Callable[[RunHistory], Any]


def profile_factory(profile: str | Path | None) -> MonitorFactory:
    """Monitors with ``profile`` (a built-in name or a YAML file), else the one the run names or
    fits best; ``choose_profile`` raises ``ProfileError`` when it cannot be used."""
    return lambda history: HealthMonitor(choose_profile(history, profile))


class JudgedRun:
    """A run's source and the health monitor that has judged what it read."""

    def __init__(self, run_dir: str | Path, *, monitor_factory: MonitorFactory, use_watchdog: bool = True,
                 tag_rules: TagRules = ()) -> None:
        self.source: RunSource = open_run(run_dir, use_watchdog=use_watchdog, tag_rules=tag_rules)
        self.monitor_factory = monitor_factory
        self.monitor: Any = None

    @property
    def history(self) -> RunHistory:
        """What the source has read (owned by it; mutated under ``source.lock``)."""
        return self.source.history

    def open(self, *, progress: Callable[[float], None] | None = None, lead: float = LEAD_SHARE,
             judge_parts: bool = True) -> ReadUpdate:
        """Cold open; with ``judge_parts``, what is in is judged while worker processes parse the rest."""
        self.monitor = None
        return self.source.open(progress=progress, on_part=self._judge_part if judge_parts else None, lead=lead)

    def _judge_part(self, part: RunHistory) -> None:
        # ``now`` is the part's own last event: no stall yet, and the alerts end up those of one pass
        # over the whole (chunking never matters to health)
        try:
            if self.monitor is None:
                self.monitor = self.monitor_factory(part)
            if self.monitor is not None:
                self.monitor.update(part, now=part.last_t)
        except Exception:  # noqa: BLE001 - the first whole pass judges it all (and reports what fails)
            self.monitor = None

    def first_pass(self, *, background: bool = True) -> Any:
        """Judge everything read: from the health cache when it fits (docs/run-directory.md, "Health
        cache"), else from the parts' monitor when its profile is the whole run's, else from scratch;
        save the state when it judged many new bytes. ``now`` is the last event (the state saved
        depends on the bytes alone): the caller's next ``update`` judges stalls on its clock.

        Returns the monitor (None when the factory gives none); raises what the factory raises.
        """
        history = self.source.history
        whole = self.monitor_factory(history)
        if whole is None:
            self.monitor = None
            return None
        part = self.monitor
        mon = part if part is not None and getattr(part, "profile", None) == getattr(whole, "profile", None) else whole
        if isinstance(mon, HealthMonitor):
            events = self.source.path if self.source.cacheable else None  # a TensorBoard run gets no cache
            mon = judge(history, mon.profile, events, self.source.offset, mon, background=background)
        else:
            mon.update(history, history.last_t)
        self.monitor = mon
        return mon
