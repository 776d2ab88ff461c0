"""Chart maths over numpy columns: debiased EMA smoothing and per-column min/max/last decimation.

Pure numpy, no Textual: a chart asks for the pixels of a visible step window and gets arrays as
long as the chart is wide, whatever the length of the series.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from traintop.health.streams import EmaState, debiased_ema, ema_continue

__all__ = ["Decimated", "EmaState", "column_edges", "debiased_ema", "decimate", "ema_continue", "map_decimated",
           "nice_range", "to_log"]


@dataclass
class Decimated:
    """One value triple per pixel column: ``lo``/``hi`` span and ``last``; NaN where the column is empty."""

    lo: np.ndarray
    hi: np.ndarray
    last: np.ndarray


def decimate(x: np.ndarray, y: np.ndarray, x0: float, x1: float, width: int) -> Decimated:
    """Bin points with ``x`` (sorted) in ``[x0, x1]`` into ``width`` equal columns: min, max, last.

    Column ``c`` holds ``x0 + c*w <= x < x0 + (c+1)*w`` (the last one also ``x1``). Column bounds
    come from a binary search, so no per-point temporary is made; NaNs are skipped.
    """
    lo = np.full(width, np.nan)
    hi = np.full(width, np.nan)
    last = np.full(width, np.nan)
    if width <= 0 or len(x) == 0 or x1 < x0:
        return Decimated(lo, hi, last)
    i0 = int(np.searchsorted(x, _key(x, x0, math.ceil), side="left"))
    i1 = int(np.searchsorted(x, _key(x, x1, math.floor), side="right"))
    if i1 <= i0:
        return Decimated(lo, hi, last)
    xs, ys = x[i0:i1], y[i0:i1]
    edges = column_edges(x0, x1, width)
    starts = np.r_[0, np.searchsorted(xs, _key(xs, edges, np.ceil), side="left")]
    ends = np.r_[starts[1:], len(xs)]
    filled = ends > starts
    with np.errstate(invalid="ignore"):
        lo[filled] = np.fmin.reduceat(ys, starts[filled])
        hi[filled] = np.fmax.reduceat(ys, starts[filled])
    last[filled] = ys[ends[filled] - 1]
    # a column whose last point is NaN joins on from its max instead
    last = np.where(np.isfinite(last), last, hi)
    return Decimated(lo, hi, last)


def _key(x: np.ndarray, keys: Any, rounding: Callable[[Any], Any]) -> Any:
    """Search keys in ``x``'s own dtype: a float key makes numpy convert a whole integer column first.

    For integer steps, ``x >= k`` ⟺ ``x >= ceil(k)`` and ``x <= k`` ⟺ ``x <= floor(k)``: the same rows.
    """
    if x.dtype.kind not in "iu":
        return keys
    rounded = np.asarray(rounding(keys), dtype=np.float64)
    info = np.iinfo(x.dtype)
    return np.clip(rounded, info.min, info.max).astype(x.dtype)


def column_edges(x0: float, x1: float, width: int) -> np.ndarray:
    """Left edges of columns 1..width-1 of ``[x0, x1]``."""
    return x0 + (x1 - x0) * np.arange(1, width) / width


def map_decimated(d: Decimated, fn: Callable[[np.ndarray], np.ndarray]) -> Decimated:
    """Apply a monotonic rising ``fn`` (log10) after decimation: min / max / last commute with it."""
    return Decimated(fn(d.lo), fn(d.hi), fn(d.last))


def nice_range(lo: float, hi: float, log: bool) -> tuple[float, float]:
    """A y range with a little headroom (in log10 units when ``log``)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return (0.0, 1.0)
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.05 or (0.5 if log else 1.0)
        return (lo - pad, hi + pad)
    pad = (hi - lo) * 0.05
    return (lo - pad, hi + pad)


def to_log(values: np.ndarray) -> np.ndarray:
    """log10 of positive values; zero and negatives become NaN (they cannot be drawn on log-y)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log10(np.asarray(values, dtype=np.float64))
    out[~np.isfinite(out)] = np.nan
    return out
