"""``TermState``: everything health keeps about one run term, fed one chunk of rows at a time."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from traintop.health.detectors import OverfitDetector, PlateauDetector, Signal
from traintop.health.profile import ZONE_ALERT, HealthProfile, Scope, ZoneRule, positive
from traintop.health.streams import CollapseDetector, Ema, EpochMeans, NonFiniteDetector, SpikeDetector, runs

# emit(slot, kind, signal, severity=None, suggestions=None, extra label)
Emit = Callable[..., None]
Rows = tuple[np.ndarray, np.ndarray, np.ndarray]  # step, epoch, t


def scope_text(scope: Scope) -> str:
    """``after epoch 25``, ``before epoch 80``, ``in 25–100% of the planned run`` ..."""
    parts = []
    for name, (lo, hi) in (("epoch", scope.epochs), ("step", scope.steps)):
        if lo == -math.inf and hi == math.inf:
            continue
        if hi == math.inf:
            parts.append(f"after {name} {int(lo) - 1}")
        elif lo == -math.inf:
            parts.append(f"before {name} {int(hi) + 1}")
        else:
            parts.append(f"in {name}s {int(lo)}–{int(hi)}")
    if scope.fraction is not None:
        lo, hi = scope.fraction
        parts.append(f"in {max(lo, 0) * 100:.0f}–{min(hi, 1) * 100:.0f}% of the planned run")
    return " ".join(parts)


def scope_mask(scope: Scope, epochs: np.ndarray, steps: np.ndarray, planned: tuple[Any, Any]) -> np.ndarray:
    """Where ``scope`` applies, row by row (vectorized ``Scope.contains``)."""
    m = np.ones(len(steps), dtype=bool)
    if scope.epochs != (-math.inf, math.inf):
        human = epochs + 1  # events count epochs from 0, profiles (like the seed guide) from 1
        m &= (human >= scope.epochs[0]) & (human <= scope.epochs[1])
    if scope.steps != (-math.inf, math.inf):
        m &= (steps >= scope.steps[0]) & (steps <= scope.steps[1])
    if scope.fraction is not None:
        ps, pe = planned
        if not positive(ps) and not positive(pe):
            return np.zeros(len(steps), dtype=bool)  # an unknown planned length: the rule waits
        progress = steps / ps if positive(ps) else epochs / pe
        m &= (progress >= scope.fraction[0]) & (progress < scope.fraction[1])
    return m


class ZoneState:
    """Hysteresis of one zone rule: ``points`` values in its band to raise, as many out to clear."""

    __slots__ = ("rule", "inside", "outside", "start", "active")

    def __init__(self, rule: ZoneRule) -> None:
        self.rule = rule
        self.inside = 0
        self.outside = 0
        self.start = 0
        self.active = False


class TermState:
    """One term's detectors, zone rules and summaries (EMA, epoch means, latest values)."""

    def __init__(self, name: str, profile: HealthProfile) -> None:
        self.name = name
        self.role = profile.role_of(name)
        self.scale, self.offset = profile.transform(name)
        self.ema = Ema(profile.ema_smoothing)
        self.last = math.nan
        self.last_eval = math.nan
        self.epoch_means: list[tuple[int, float]] = []  # (epoch, mean on the profile's scale): one per epoch
        self.epoch_emas: list[float] = []
        dets = profile.detectors_for(name)
        self.settings = dets
        self.nonfinite = NonFiniteDetector("train") if "nonfinite" in dets else None
        self.nonfinite_eval = NonFiniteDetector("eval") if "nonfinite" in dets else None
        self.spike = SpikeDetector(**dets["spike"]) if "spike" in dets else None
        self.collapse = CollapseDetector(**dets["collapse"]) if "collapse" in dets else None
        self.overfit = OverfitDetector(**dets["overfit"]) if "overfit" in dets else None
        self.plateau = PlateauDetector(**dets["plateau"]) if "plateau" in dets else None
        on = dets["plateau"]["source"] if "plateau" in dets else "auto"
        self.plateau_on = "epoch" if on == "auto" else on  # auto switches to eval at the first eval point
        self.plateau_auto = on == "auto"
        self.epochs = EpochMeans()
        spec = profile.roles.get(self.role or "")
        self.rules = [ZoneState(r) for r in spec.rules] if spec is not None else []

    def value(self, raw: float) -> float:
        """The raw value as the profile compares it (``offset + scale * raw``)."""
        return self.offset + self.scale * raw

    def train_ema(self) -> float | None:
        """The train EMA on the profile's scale."""
        return None if self.ema.value is None else self.value(self.ema.value)

    # -- feeding -----------------------------------------------------------------------------------

    def feed(self, emit: Emit, tv: np.ndarray, rows: Rows, tbad: np.ndarray | None, ev: np.ndarray, erows: Rows,
             ebad: np.ndarray | None, planned: tuple[Any, Any]) -> None:
        """Judge new train rows (vectorized) and new evaluations (one by one, in time order with them)."""
        ema_before = self.ema.value
        tf = np.empty(0)
        ema_arr = np.empty(0)
        closures: list[tuple[int, int, float, int]] = []
        if len(tv):
            tf, ema_arr, closures = self._train(emit, tv, rows, tbad, planned)
        first_eval_t = math.inf
        if len(ev):
            finite_ev = np.flatnonzero(np.isfinite(ev))
            if len(finite_ev):
                first_eval_t = float(erows[2][finite_ev[0]])
        for _epoch, last_step, mean, closer in closures:
            if self.plateau is not None and self.plateau_on == "epoch" and (
                    not self.plateau_auto or not tf[closer] > first_eval_t):  # fed before the first eval only
                emit("plateau", "plateau", self.plateau.push(mean, last_step, "epoch mean"))
        for j in range(len(ev)):
            k = int(np.searchsorted(tf, erows[2][j], side="right")) - 1  # the train rows judged before it
            ema = float(ema_arr[k]) if k >= 0 else ema_before
            self._eval_point(emit, float(ev[j]), int(erows[0][j]), None if ebad is None else bool(ebad[j]), ema)

    def _train(self, emit: Emit, tv: np.ndarray, rows: Rows, tbad: np.ndarray | None, planned: tuple[Any, Any]
               ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, float, int]]]:
        steps, epochs, ts = rows
        if self.nonfinite is not None:
            signals, bad = self.nonfinite.extend(tv, steps, tbad)
            for sig in signals:
                emit("nonfinite", "nonfinite", sig)
        else:
            bad = np.isinf(tv)
        finite = np.isfinite(tv)
        if finite.all():  # the usual chunk: no gathering needed
            raw, sf, ef, tf = tv, steps, epochs, ts
            if len(tv):
                self.last = float(tv[-1])
        else:
            real = np.flatnonzero(finite | bad)  # an uncorroborated NaN is an absent value, not the latest one
            if len(real):
                self.last = float(tv[real[-1]])
            fi = np.flatnonzero(finite)
            raw, sf, ef, tf = tv[fi], steps[fi], epochs[fi], ts[fi]
        x = raw if (self.scale, self.offset) == (1.0, 0.0) else self.offset + self.scale * raw
        ema_arr = self.ema.extend(raw)
        if self.spike is not None:
            for sig in self.spike.extend(x, sf):
                emit("spike", "spike", sig)
        if self.collapse is not None:
            for sig in self.collapse.extend(x, sf):
                emit("collapse", "collapse", sig)
        closures = self.epochs.extend(x, ef, sf)
        for epoch, _step, mean, closer in closures:
            self.epoch_means.append((epoch, mean))
            self.epoch_emas.append(float(ema_arr[closer]))
        for z in self.rules:
            self._zone(emit, z, x, raw, sf, ef, planned)
        return tf, ema_arr, closures

    def _zone(self, emit: Emit, z: ZoneState, x: np.ndarray, raw: np.ndarray, steps: np.ndarray,
              epochs: np.ndarray, planned: tuple[Any, Any]) -> None:
        rule = z.rule
        mask = scope_mask(rule.scope, epochs, steps, planned)
        if rule.above is not None:
            mask &= x > rule.above
        if rule.below is not None:
            mask &= x < rule.below
        points = rule.points
        for a, b, on in runs(mask):
            if on:
                if z.inside == 0:
                    z.start = int(steps[a])
                before = z.inside
                z.inside += b - a
                z.outside = 0
                if not z.active and z.inside >= points:
                    k = a + max(0, points - before - 1)  # where the run reached ``points`` values
                    z.active = True
                    self._zone_alert(emit, z, float(x[k]), float(raw[k]), int(steps[k]), int(epochs[k]))
            else:
                z.inside = 0
                if z.active:
                    before = z.outside
                    z.outside += b - a
                    if z.outside >= points:
                        z.active = False
                        emit(f"rule:{rule.key}", rule.kind, Signal(False, int(steps[a + max(0, points - before - 1)])))

    def _zone_alert(self, emit: Emit, z: ZoneState, x: float, raw: float, step: int, epoch: int) -> None:
        rule = z.rule
        if rule.above is not None and rule.below is not None:
            bound = f"in ({rule.above:g}, {rule.below:g})"
        else:
            bound = f"> {rule.above:g}" if rule.above is not None else f"< {rule.below:g}"
        when = scope_text(rule.scope)
        shown = f"{x:.4g}" if (self.scale, self.offset) == (1.0, 0.0) else f"{x:.4g} (raw {raw:.4g})"
        msg = f"{shown} {bound}{' ' + when if when else ''}"
        if rule.points > 1:
            msg += f" for {rule.points} points"
        if rule.message:
            msg += f": {rule.message}"
        evidence = {"value": x, "raw": raw, "above": rule.above, "below": rule.below, "points": rule.points,
                    "epoch": epoch, "rule": rule.key, "window": [z.start, step]}
        role = f" ({self.role})" if self.role and self.role != self.name else ""
        emit(f"rule:{rule.key}", rule.kind, Signal(True, z.start, msg, evidence), ZONE_ALERT[rule.zone],
             rule.suggest, role)

    def _eval_point(self, emit: Emit, raw: float, step: int, nan_bad: bool | None, train_ema: float | None) -> None:
        if self.nonfinite_eval is not None:
            signals, _ = self.nonfinite_eval.extend(np.array([raw]), np.array([step]),
                                                    None if nan_bad is None else np.array([nan_bad]))
            for sig in signals:
                emit("nonfinite_eval", "nonfinite", sig)
        if raw == raw or nan_bad:
            self.last_eval = raw
        if not math.isfinite(raw):
            return
        x = self.value(raw)
        if self.overfit is not None:
            ema = None if train_ema is None else self.value(train_ema)
            emit("overfit", "overfit", self.overfit.push(x, step, ema))
        if self.plateau is not None:
            if self.plateau_auto and self.plateau_on == "epoch":
                self.plateau_on = "eval"  # evaluations exist: judge the plateau on them, as the scheduler would
                self.plateau = PlateauDetector(**self.settings["plateau"])
                emit("plateau", "plateau", Signal(False, step))
            if self.plateau_on == "eval":
                emit("plateau", "plateau", self.plateau.push(x, step, "evaluation"))
