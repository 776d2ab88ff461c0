"""``SystemPane``: GPU utilisation / memory / temperature / power, CPU and RSS as sparklines."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from rich.text import Text
from textual.widget import Widget

from traintop.sources.history import RunHistory
from traintop.tui.live import LiveRun

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: np.ndarray, width: int, lo: float | None = None, hi: float | None = None) -> str:
    """The last ``width`` values as block characters (blank where a value is missing)."""
    v = np.asarray(values[-width:], dtype=np.float64)
    if not len(v):
        return ""
    finite = np.isfinite(v)
    if not finite.any():
        return " " * len(v)
    lo = float(np.nanmin(v[finite])) if lo is None else lo
    hi = float(np.nanmax(v[finite])) if hi is None else hi
    span = hi - lo if hi > lo else 1.0
    idx = np.clip(((v - lo) / span * (len(BARS) - 1)), 0, len(BARS) - 1)
    return "".join(BARS[int(i)] if f else " " for i, f in zip(np.nan_to_num(idx), finite))


def _last(a: np.ndarray) -> float:
    f = np.flatnonzero(np.isfinite(a))
    return float(a[f[-1]]) if len(f) else math.nan


def system_text(h: RunHistory, width: int) -> Text:
    """The whole pane as text (called under the run's lock)."""
    sys_t = h.system
    t = Text()
    if not len(sys_t):
        t.append("no system readings yet", style="dim")
        return t
    spark_w = max(8, width - 24)
    for i in range(h.gpu_count):
        util = sys_t.term(f"gpu{i}.util")
        used, total = sys_t.term(f"gpu{i}.mem_used"), sys_t.term(f"gpu{i}.mem_total")
        temp, power = sys_t.term(f"gpu{i}.temp"), sys_t.term(f"gpu{i}.power")
        with np.errstate(invalid="ignore", divide="ignore"):
            mem_pct = 100.0 * used / total
        t.append(f"GPU{i}", style="bold")
        t.append("\n")
        for label, series, unit, lo, hi in (("util", util, "%", 0, 100), ("mem ", mem_pct, "%", 0, 100),
                                            ("temp", temp, "°C", None, None), ("pwr ", power, "W", None, None)):
            last = _last(series)
            t.append(f" {label} {last:6.0f}{unit:<2} " if math.isfinite(last) else f" {label}      – ")
            t.append(sparkline(series, spark_w, lo, hi), style="cyan")
            t.append("\n")
    if h.gpu_count == 0:
        t.append("no GPU\n", style="bold")
    cpu, rss = sys_t["cpu"], sys_t["rss"]
    last_cpu, last_rss = _last(cpu), _last(rss)
    t.append(f"CPU  {last_cpu:6.0f}%  " if math.isfinite(last_cpu) else "CPU       –  ")
    t.append(sparkline(cpu, spark_w, 0, None), style="green")
    t.append("\n")
    t.append(f"RSS {last_rss / 2**30:6.2f}G  " if math.isfinite(last_rss) else "RSS       –  ")
    t.append(sparkline(rss, spark_w), style="green")
    return t


class SystemPane(Widget):
    """Machine readings of the run, drawn at the width the pane has."""

    def __init__(self, live: LiveRun, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.live = live

    def render(self) -> Text:
        """Read the system columns under the run's lock."""
        with self.live.lock:
            return system_text(self.live.history, self.content_size.width)
