"""Detectors over a term's train stream, fed one chunk (numpy arrays) at a time.

Each keeps constant state between chunks and does vectorized work per chunk, with Python only at
the few points where a condition starts or ends, so a cold open of a million steps stays cheap.
Results do not depend on how the stream was cut into chunks (a property test checks it).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from traintop.health.detectors import Signal

FROZEN_BATCH = 4096  # windows per pass of the frozen check
QUIET_BATCH = 2000  # spike blocks judged per vectorized pass (bounds the temporary windows to ~1.6 MB)
EMA_SPAN = 1e8  # the closed-form EMA scales values by up to this factor inside a block (float64: ~1e-8 rel.)


def runs(mask: np.ndarray) -> list[tuple[int, int, bool]]:
    """``(start, stop, value)`` of the runs of equal values in a boolean array."""
    n = len(mask)
    if n == 0:
        return []
    cuts = np.flatnonzero(mask[1:] != mask[:-1]) + 1
    bounds = [0, *cuts.tolist(), n]
    return [(a, b, bool(mask[a])) for a, b in zip(bounds, bounds[1:])]


class Ema:
    """TensorBoard's debiased EMA, computed in closed form per block of values.

    Blocks are aligned on the absolute count of values, and within a block the running sum is
    sequential (``np.add.accumulate``), so any chunking gives bit-identical results.
    """

    def __init__(self, smoothing: float) -> None:
        self.w = smoothing
        self.n = 0
        self.value: float | None = None
        self._block_last = 0.0  # the undebiased average at the start of the current block
        self._block_sum = 0.0  # Σ w^-(j+1)·x_j over the block so far
        self._block = max(1, int(math.log(EMA_SPAN) / -math.log(smoothing))) if 0 < smoothing < 1 else 1
        j = np.arange(1, self._block + 1, dtype=np.float64)
        self._grow = smoothing ** -j if smoothing > 0 else j  # w^-(j+1) and w^(j+1) for one block, computed once
        self._decay = smoothing ** j if smoothing > 0 else j
        # counts from which w**n < 2**-56, so that 1 - w**n rounds to exactly 1.0
        self._settled = int(math.ceil(-56 * math.log(2) / math.log(smoothing))) + 1 if 0 < smoothing < 1 else 0

    def extend(self, x: np.ndarray) -> np.ndarray:
        """Add finite values; return the debiased EMA after each one."""
        out = np.empty(len(x))
        w, i = self.w, 0
        if w <= 0 and len(x):  # no smoothing: the EMA is the value itself
            out[:] = x
            self.n += len(x)
            self.value = float(out[-1])
            return out
        while i < len(x):
            pos = self.n % self._block  # position inside the current block
            full = (len(x) - i) // self._block if pos == 0 and w > 0 else 0
            if full:
                i += self._full_blocks(x[i:i + full * self._block], out[i:i + full * self._block], full)
                continue
            take = min(len(x) - i, self._block - pos)
            if w > 0:
                grow = self._grow[pos:pos + take]
                sums = np.add.accumulate(np.concatenate(([self._block_sum], x[i:i + take] * grow)))[1:]
                last = self._decay[pos:pos + take] * (self._block_last + (1.0 - w) * sums)
                counts = self.n + np.arange(1, take + 1)
                out[i:i + take] = last / (1.0 - w ** counts)
                self._block_sum = float(sums[-1])
            else:
                last = x[i:i + take].astype(np.float64)
                out[i:i + take] = last
            self.n += take
            i += take
            if self.n % self._block == 0:  # the block is full: start the next one from its end value
                self._block_last, self._block_sum = float(last[-1]), 0.0
        if len(x):
            self.value = float(out[-1])
        return out

    def _full_blocks(self, x: np.ndarray, out: np.ndarray, m: int) -> int:
        """``m`` whole blocks at once: the same float operations as one block at a time, so the same bits."""
        w, b = self.w, self._block
        sums = np.add.accumulate(x.reshape(m, b) * self._grow, axis=1)
        starts = np.empty(m)
        carry, keep, d_end = self._block_last, 1.0 - w, float(self._decay[-1])
        ends = sums[:, -1].tolist()
        for r in range(m):  # one scalar step per block: each block starts from the last one's end value
            starts[r] = carry
            carry = d_end * (carry + keep * ends[r])
        last = self._decay * (starts[:, None] + keep * sums)
        out[:] = last.reshape(-1)
        settled = self._settled - self.n  # beyond it 1 - w**n is exactly 1.0: dividing changes nothing
        if settled > 0:
            counts = self.n + np.arange(1, min(settled, m * b) + 1)
            out[:len(counts)] /= 1.0 - w ** counts
        self.n += m * b
        self._block_last, self._block_sum = float(last[-1, -1]), 0.0
        return m * b


class EpochMeans:
    """Means of values per epoch, released when the epoch number changes."""

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.step = 0
        self._sum = 0.0
        self._n = 0

    def extend(self, x: np.ndarray, epochs: np.ndarray, steps: np.ndarray) -> list[tuple[int, int, float, int]]:
        """Add values; return ``(epoch, its last step, mean, index of the value that closed it)``."""
        done: list[tuple[int, int, float, int]] = []
        if len(x) == 0:
            return done
        change = np.flatnonzero(epochs[1:] != epochs[:-1]) + 1
        starts = [0, *change.tolist()]
        stops = [*change.tolist(), len(x)]
        for a, b in zip(starts, stops):
            ep = int(epochs[a])
            if ep != self.epoch:
                if self._n:
                    done.append((self.epoch if self.epoch is not None else -1, self.step, self._sum / self._n, a))
                self.epoch, self._sum, self._n = ep, 0.0, 0
            # sequential sum continued from the carry: the same bits whatever the chunking
            self._sum = float(np.add.accumulate(np.concatenate(([self._sum], x[a:b])))[-1])
            self._n += b - a
            self.step = int(steps[b - 1])
        return done


class NonFiniteDetector:
    """NaN or ±Inf. In the history NaN also means "not reported", so a NaN needs corroboration."""

    def __init__(self, where: str = "train") -> None:
        self.where = where
        self.active = False
        self.present = False
        self.count = 0

    def extend(self, x: np.ndarray, steps: np.ndarray, nan_is_bad: np.ndarray | None
               ) -> tuple[list[Signal], np.ndarray]:
        """Judge raw values; return the signals and the mask of values that are really non-finite.

        A NaN counts once the series has reported finite values, and then only where ``nan_is_bad``
        corroborates it (a term's NaN poisons its row's total); ``None``: the total itself.
        """
        finite = np.isfinite(x)
        if finite.all():  # the usual chunk: every value judged, none bad (what the general path finds too)
            self.present = self.present or len(x) > 0
            bad = np.zeros(len(x), dtype=bool)
            if self.active and len(x):
                self.active = False
                return [Signal(False, int(steps[0]))], bad
            return [], bad
        seen = np.logical_or.accumulate(finite)
        before = (np.concatenate(([False], seen[:-1])) | self.present) if len(x) else seen  # reported earlier?
        bad = np.isinf(x) | (np.isnan(x) & before & (True if nan_is_bad is None else nan_is_bad))
        self.present = self.present or bool(finite.any())
        self.count += int(bad.sum())
        signals: list[Signal] = []
        judged = np.flatnonzero(bad | finite)  # an uncorroborated NaN is no value: it changes nothing
        if len(judged) == 0:
            return signals, bad
        status = bad[judged]
        for a, _b, is_bad in runs(status):
            if is_bad == self.active:
                continue
            i = int(judged[a])
            self.active = is_bad
            if is_bad:
                v = float(x[i])
                shown = "NaN" if v != v else ("+Inf" if v > 0 else "-Inf")
                signals.append(Signal(True, int(steps[i]), f"{self.where} value is {shown} at step {int(steps[i])}",
                                      {"value": v, "where": self.where, "window": [int(steps[i]), int(steps[i])]}))
            else:
                signals.append(Signal(False, int(steps[i])))
        return signals, bad


class CollapseDetector:
    """Near zero (``|x| < near_zero``) or frozen (std ≤ ``rel_std``·|mean|) for ``points`` points in a row."""

    def __init__(self, near_zero: float | None = None, rel_std: float | None = None, points: int = 50,
                 **_: Any) -> None:
        self.near_zero, self.rel_std, self.points = near_zero, rel_std, points
        self.active = False
        self._zero_run = 0
        self._win = np.empty(0)
        self._win_steps = np.empty(0, dtype=np.int64)

    def extend(self, x: np.ndarray, steps: np.ndarray) -> list[Signal]:
        """Add finite values."""
        n, p = len(x), self.points
        if n == 0:
            return []
        idx = np.arange(n)
        if self.near_zero is not None:
            m = np.abs(x) < self.near_zero
            last_false = np.maximum.accumulate(np.where(~m, idx, -1))
            zrun = np.where(last_false < 0, idx + 1 + self._zero_run, idx - last_false)
            zero = zrun >= p
        else:
            zrun = np.zeros(n, dtype=np.int64)
            zero = np.zeros(n, dtype=bool)
        both = np.concatenate((self._win, x))
        both_steps = np.concatenate((self._win_steps, steps))
        frozen = np.zeros(n, dtype=bool)
        mean, std = np.full(n, math.nan), np.full(n, math.nan)
        if self.rel_std is not None and len(both) >= p:
            # exact std of every full window, batch by batch: the same bits whatever the chunking
            first = max(0, p - 1 - len(self._win))  # the first new value whose window is full
            views = np.lib.stride_tricks.sliding_window_view(both, p)
            for a in range(first, n, FROZEN_BATCH):
                b = min(n, a + FROZEN_BATCH)
                lo = len(self._win) + a - p + 1
                near = a + np.flatnonzero(_maybe_frozen(both[lo:lo + b - a + p - 1], p, self.rel_std))
                if len(near):  # exact std only where the cheap one says it could be frozen: the same bits
                    rows = views[near + len(self._win) - p + 1]
                    mean[near] = rows.mean(axis=1)
                    std[near] = rows.std(axis=1)
            frozen = std <= self.rel_std * np.abs(mean) + 1e-12  # NaN (a window not yet full) is never frozen
        signals: list[Signal] = []
        for a, _b, on in runs(zero | frozen):
            if on == self.active:
                continue
            self.active = on
            if not on:
                signals.append(Signal(False, int(steps[a])))
            elif zero[a]:
                run = int(zrun[a])
                k = max(0, len(self._win) + a - run + 1)  # the run's first value in ``both`` (run == points here)
                start = int(both_steps[k])
                signals.append(Signal(True, start, f"near zero (|x| < {self.near_zero:g}) for {run} points in a row "
                                                   f"(last {float(x[a]):.3g})",
                                      {"near_zero": self.near_zero, "points": run, "last": float(x[a]),
                                       "window": [start, int(steps[a])]}))
            else:
                first = int(both_steps[len(self._win) + a - p + 1])
                signals.append(Signal(True, first, f"frozen: std {std[a]:.3g} around {mean[a]:.4g} over {p} points",
                                      {"mean": float(mean[a]), "std": float(std[a]), "rel_std": self.rel_std,
                                       "points": p, "window": [first, int(steps[a])]}))
        self._zero_run = int(zrun[-1])
        self._win, self._win_steps = both[-p:].copy(), both_steps[-p:].copy()
        return signals


def _maybe_frozen(seg: np.ndarray, p: int, rel_std: float) -> np.ndarray:
    """For each full window of ``p`` values in ``seg``: could its std be ≤ ``rel_std``·|mean|?

    A running-sum std (values taken relative to the first, so the sums stay small) costs a few
    passes instead of ``p`` per window; its rounding error is far below the margin kept here, so a
    window it rules out is not frozen, and the windows it keeps are judged exactly.
    """
    d = seg - seg[0]
    c1 = np.concatenate(([0.0], np.cumsum(d)))
    c2 = np.concatenate(([0.0], np.cumsum(d * d)))
    m = (c1[p:] - c1[:-p]) / p
    var = (c2[p:] - c2[:-p]) / p - m * m
    scale = float(np.abs(d).max()) if len(d) else 0.0
    margin = 1e-6 * scale + 1e-12  # ≫ the sums' rounding error (~1e-13 of scale² in the variance)
    return np.sqrt(np.maximum(var, 0.0)) <= 2.0 * rel_std * np.abs(seg[0] + m) + margin


def _median_rows(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=1)`` of finite values, the same bits: sorting short rows beats the
    two-pivot partition ``np.median`` makes (measured 6× on rows of 100)."""
    k = a.shape[1]
    s = np.sort(a, axis=1)
    if k % 2:
        return s[:, k // 2]
    return (s[:, k // 2 - 1] + s[:, k // 2]) / 2.0


class SpikeDetector:
    """Robust z-score against the rolling median and MAD of recent unflagged points.

    The baseline (median, MAD of the last ``window`` accepted points) is recomputed every
    ``refresh`` points once ``warmup`` points are in; flagged points stay out of it unless
    ``max_run`` of them come in a row (then the level really moved, and they are the new normal).
    """

    def __init__(self, z: float = 6.0, window: int = 100, warmup: int = 30, refresh: int = 20,
                 direction: str = "up", max_run: int = 20, **_: Any) -> None:
        self.z, self.window, self.warmup, self.refresh = z, window, max(warmup, 3), refresh
        self.direction, self.max_run = direction, max_run
        self._win: deque[float] = deque(maxlen=window)
        self._pushes = 0
        self._median = math.nan
        self._mad = math.nan
        self.run = 0
        self.active = False

    def _baseline(self) -> None:
        arr = np.fromiter(self._win, dtype=np.float64, count=len(self._win))
        self._median = float(np.median(arr))
        self._mad = float(np.median(np.abs(arr - self._median)))

    def _scores(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        floor = 1e-9 * max(1.0, abs(self._median))  # a frozen baseline has MAD 0: any real move is a spike
        score = 0.6745 * (x - self._median) / max(self._mad, floor)  # Iglewicz–Hoaglin modified z
        if self.direction == "up":
            return score, score > self.z
        if self.direction == "down":
            return score, score < -self.z
        return score, np.abs(score) > self.z

    def extend(self, x: np.ndarray, steps: np.ndarray) -> list[Signal]:
        """Add finite values, judged in blocks of ``refresh`` points that share one baseline."""
        signals: list[Signal] = []
        i, n = 0, len(x)
        while i < n:
            if len(self._win) < self.warmup:
                take = min(n - i, self.warmup - len(self._win))
                self._win.extend(x[i:i + take].tolist())
                self._pushes += take
                i += take
                continue
            if self._pushes % self.refresh == 0 and len(self._win) == self.window and not self.active:
                i += self._quiet_blocks(x[i:], steps[i:])  # the usual case: many spike-free blocks at once
                if i >= n or self._pushes % self.refresh != 0:
                    continue
            if self._pushes % self.refresh == 0 or self._median != self._median:
                self._baseline()
            take = min(n - i, self.refresh - self._pushes % self.refresh)
            block = x[i:i + take]
            score, flagged = self._scores(block)
            if not flagged.any() and not self.active:
                self._win.extend(block.tolist())
                self.run = 0
            else:
                for k in range(take):  # rare: a spike in this block, judge it point by point
                    self._judge(float(block[k]), int(steps[i + k]), float(score[k]), bool(flagged[k]), signals)
            self._pushes += take
            i += take
        return signals

    def _quiet_blocks(self, x: np.ndarray, steps: np.ndarray) -> int:
        """Accept the whole blocks before the first one holding a spike, vectorized; return how many values."""
        w, r = self.window, self.refresh
        m = min(len(x) // r, QUIET_BATCH)
        if m == 0:
            return 0
        buf = np.concatenate((np.fromiter(self._win, dtype=np.float64, count=w), x[:m * r]))
        # block b's baseline is the window just before it: every earlier value was accepted (no spike)
        windows = np.lib.stride_tricks.sliding_window_view(buf, w)[np.arange(m) * r]
        med = _median_rows(windows)
        mad = _median_rows(np.abs(windows - med[:, None]))
        floor = 1e-9 * np.maximum(1.0, np.abs(med))
        score = 0.6745 * (x[:m * r].reshape(m, r) - med[:, None]) / np.maximum(mad, floor)[:, None]
        flagged = (score > self.z if self.direction == "up" else score < -self.z if self.direction == "down"
                   else np.abs(score) > self.z).any(axis=1)
        quiet = int(np.argmax(flagged)) if flagged.any() else m
        if quiet == 0:
            return 0
        self._win.extend(x[max(0, quiet * r - w):quiet * r].tolist())
        self._median, self._mad = float(med[quiet - 1]), float(mad[quiet - 1])
        self._pushes += quiet * r
        self.run = 0
        return quiet * r

    def _judge(self, v: float, step: int, score: float, flagged: bool, signals: list[Signal]) -> None:
        if not flagged:
            self.run = 0
            self._win.append(v)
            if self.active:
                self.active = False
                signals.append(Signal(False, step))
            return
        self.run += 1
        if self.run >= self.max_run:
            self._win.append(v)  # a lasting shift, not a spike: let the baseline follow it
        if self.active:
            return
        self.active = True
        signals.append(Signal(True, step, f"jumped to {v:.4g}, {score:+.1f} robust z from the median "
                                          f"{self._median:.4g} (threshold {self.z:g})",
                              {"value": v, "median": self._median, "mad": self._mad, "z": score, "threshold": self.z,
                               "baseline_points": len(self._win), "window": [step, step]}))


def debiased_ema(values: np.ndarray, strength: float) -> np.ndarray:
    """TensorBoard's smoothing: ``last = last*s + (1-s)*x``, shown as ``last / (1 - s**n)``.

    ``n`` counts finite values only; non-finite inputs stay NaN in the output and do not move the
    average (as in TensorBoard). The arithmetic is health's ``Ema`` (one EMA for the whole app).
    """
    return ema_continue(values, strength, EmaState())[0]


@dataclass
class EmaState:
    """Where a smoothing pass stopped (health's ``Ema``, created on the first finite value)."""

    ema: Ema | None = None

    @property
    def count(self) -> int:
        """Finite values smoothed so far."""
        return self.ema.n if self.ema is not None else 0


def ema_continue(values: np.ndarray, strength: float, state: EmaState) -> tuple[np.ndarray, EmaState]:
    """Smooth ``values`` that follow those summarized by ``state``; return them and the state (advanced)."""
    x = np.asarray(values, dtype=np.float64)
    out = np.full(len(x), np.nan)
    finite = np.isfinite(x)
    if not finite.any():
        return out, state
    ema = state.ema if state.ema is not None else Ema(min(max(float(strength), 0.0), 0.999999))
    out[finite] = ema.extend(x[finite])
    state = EmaState(ema) if state.ema is None else state
    return out, state
