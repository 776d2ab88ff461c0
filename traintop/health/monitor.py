"""``HealthMonitor``: judges a ``RunHistory`` incrementally against a ``HealthProfile``.

Each ``update`` reads only the rows that arrived since the last one (constant work per new point),
feeds every term's detectors and zone rules with raw values, and turns their signals into
``Alert``s carrying exact commands for the run's own term names.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from traintop.health.alerts import Alert, Suggestion, raised_order
from traintop.health.detectors import Signal
from traintop.health.profile import HealthProfile, SuggestionSpec, ZoneRule
from traintop.health.term import TermState
from traintop.health.work import TRAINER_WORK, WorkWatch
from traintop.protocol.control import CommandError, validate_command
from traintop.sources.runs import fmt_duration, pid_alive

ZONE_RANK = {"good": 0, "warn": 1, "critical": 2}
MAX_ENDED_ALERTS = 500  # ended alerts kept for the record; a pathological run cannot grow memory forever
PID_GRACE = 5.0  # seconds of silence before a vanished pid counts (the trainer may just have ended)


class HealthMonitor:
    """Judges one run; call ``update(history)`` whenever the history has grown."""

    def __init__(self, profile: HealthProfile) -> None:
        self.profile = profile
        self._generation: int | None = None
        self._reset()

    def _reset(self) -> None:
        self._terms: dict[str, TermState] = {}
        self._alerts: dict[str, Alert] = {}
        self._current: dict[tuple[str | None, str], str] = {}
        self._row = 0
        self._erow = 0
        self._arow = 0
        self._epoch: int | None = None
        self._step: int | None = None
        self._planned: tuple[Any, Any] = (None, None)
        self._history: Any = None
        self._new: list[Alert] = []
        self._trainer: list[tuple[TermState | None, str, float]] = []  # (term, slot, t) of trainer alerts
        self.criticals: set[str] = set()  # "kind:term" of every critical alert, kept when old alerts are trimmed
        self.worst: Alert | None = None  # the first alert of the worst severity raised so far (kept when trimmed)
        self.raised: dict[str, int] = {}  # severity → alerts of it raised so far
        self.work = WorkWatch()

    # -- public reading ------------------------------------------------------------------------

    @property
    def alerts(self) -> list[Alert]:
        """Every alert raised so far (ended ones included), oldest first (``raised_order``: the same
        whether the run was judged in one pass, in parts, or from a health cache)."""
        return sorted(self._alerts.values(), key=raised_order)

    def active_alerts(self) -> list[Alert]:
        """Alerts still in force, worst first (then earliest)."""
        active = [a for a in self._alerts.values() if a.active]
        return sorted(active, key=lambda a: (-a.rank, a.step if a.step is not None else -1, a.id))

    def role(self, term: str) -> str | None:
        """The role ``term`` plays in the profile (``None`` when it plays none)."""
        return self.profile.role_of(term)

    def ema(self, term: str) -> float | None:
        """Debiased EMA of the term's raw train values (display only; detection never uses it)."""
        state = self._terms.get(term)
        return None if state is None else state.ema.value

    def expectation(self, term: str) -> str:
        """The seed guide's one-line expectation for the term's role ("" when it has none)."""
        role = self.profile.roles.get(self.profile.role_of(term) or "")
        return role.expect if role is not None else ""

    def last_value(self, term: str) -> float | None:
        """The latest raw value of ``term`` (train, else eval), NaN/Inf included; ``None`` when never seen."""
        state = self._terms.get(term)
        if state is None:
            return None
        if state.last == state.last or math.isinf(state.last):
            return state.last
        return state.last_eval if state.last_eval == state.last_eval else None

    def term_state(self, term: str) -> TermState | None:
        """Internal state of one term (for ``build_report``)."""
        return self._terms.get(term)

    def _rules_now(self, state: TermState) -> list[ZoneRule]:
        ps, pe = self._planned
        return [z.rule for z in state.rules if z.rule.band and z.rule.scope.contains(self._epoch, self._step, ps, pe)]

    def zone(self, term: str) -> str | None:
        """``good`` / ``warn`` / ``critical`` by the latest raw value, or ``None`` when unjudged."""
        state = self._terms.get(term)
        if state is None or not any(z.rule.band for z in state.rules):
            return None
        raw = self.last_value(term)
        if raw is None:
            return None
        if not math.isfinite(raw):
            return "critical"
        value = state.value(raw)
        worst = "good"
        for rule in self._rules_now(state):
            if rule.holds(value) and ZONE_RANK[rule.zone] > ZONE_RANK[worst]:
                worst = rule.zone
        return worst

    def bands(self, term: str) -> list[tuple[float, float, str]]:
        """``(low, high, zone)`` bands in force now, on the term's raw scale, for a chart's background."""
        state = self._terms.get(term)
        if state is None:
            return []
        rules = self._rules_now(state)
        if not rules:
            return []
        cuts = sorted({t for r in rules for t in (r.above, r.below) if t is not None})
        edges = [-math.inf, *cuts, math.inf]
        bands: list[list[Any]] = []
        for lo, hi in zip(edges, edges[1:]):
            if math.isfinite(lo) and math.isfinite(hi):
                probe = (lo + hi) / 2
            else:
                probe = hi - 1 if lo == -math.inf else lo + 1
            zone = "good"
            for r in rules:
                if r.holds(probe) and ZONE_RANK[r.zone] > ZONE_RANK[zone]:
                    zone = r.zone
            if bands and bands[-1][2] == zone:
                bands[-1][1] = hi
            else:
                bands.append([lo, hi, zone])
        out = []
        for lo, hi, zone in bands:
            a, b = ((lo - state.offset) / state.scale, (hi - state.offset) / state.scale) if state.scale else (lo, hi)
            out.append((min(a, b), max(a, b), zone))
        return out if state.scale > 0 else list(reversed(out))

    # -- updating --------------------------------------------------------------------------------

    def update(self, history: Any, now: float | None = None) -> list[Alert]:
        """Judge the rows added since the last call; return the alerts this call raised."""
        if history.generation != self._generation or len(history.steps) < self._row or len(history.evals) < self._erow:
            self._reset()  # the file was truncated or replaced: start over
            self._generation = history.generation
        self._new = []
        self._history = history
        start = history.run_start if isinstance(history.run_start, dict) else {}
        self._planned = (start.get("planned_steps"), start.get("planned_epochs"))
        self._epoch, self._step = history.last_epoch, history.last_step
        n, ne = len(history.steps), len(history.evals)
        if n > self._row or ne > self._erow:
            self._ingest(history, n, ne)
        self._trainer_alerts(history)
        self.work.update(history, self._work_signal, self._work_evidence)
        self._stall(history, time.time() if now is None else now)
        self._trim()
        return self._new

    def _ingest(self, history: Any, n: int, ne: int) -> None:
        steps, evals = history.steps, history.evals
        a, ea = self._row, self._erow
        rows = (steps["step"][a:n], steps["epoch"][a:n], steps["t"][a:n])
        erows = (evals["step"][ea:ne], evals["epoch"][ea:ne], evals["t"][ea:ne])
        tv_total = steps["total"][a:n].astype(np.float64)
        ev_total = evals["total"][ea:ne].astype(np.float64)
        # a NaN is a non-finite loss only where its row logged one (else the term was absent there)
        tbad, ebad = steps["nonfinite"][a:n] > 0, evals["nonfinite"][ea:ne] > 0
        none = np.empty(0)
        for name in dict.fromkeys([*steps.terms, *evals.terms, "total"]):
            found = self._terms.get(name)
            state = found if found is not None else self._terms.setdefault(name, TermState(name, self.profile))

            def emit(slot: str, kind: str, sig: Signal | None, severity: str | None = None,
                     specs: tuple[SuggestionSpec, ...] | None = None, note: str = "", _s: TermState = state) -> None:
                self._signal(_s, slot, kind, sig, severity, specs, note)

            if name == "total":
                state.feed(emit, tv_total, rows, tbad, ev_total, erows, ebad, self._planned)
                continue
            tv = steps.term(name)[a:n].astype(np.float64) if name in steps.terms else none
            ev = evals.term(name)[ea:ne].astype(np.float64) if name in evals.terms else none
            state.feed(emit, tv, rows, tbad, ev, erows, ebad, self._planned)
        self._row, self._erow = n, ne

    # -- alerts ----------------------------------------------------------------------------------

    def _signal(self, s: TermState | None, slot: str, kind: str, sig: Signal | None, severity: str | None = None,
                specs: tuple[SuggestionSpec, ...] | None = None, role_note: str = "") -> None:
        if sig is None:
            return
        term = s.name if s is not None else None
        key = (term, slot)
        if not sig.fire:
            aid = self._current.pop(key, None)
            if aid is not None and aid in self._alerts:
                self._alerts[aid].active = False
                self._alerts[aid].ended_step = sig.step
            return
        if key in self._current:
            return
        settings = s.settings.get(slot.replace("_eval", ""), {}) if s is not None else {}
        severity = severity or settings.get("severity", "warning")
        specs = specs if specs is not None else settings.get("suggest", ())
        base = f"{kind}:{term if term is not None else 'run'}:{sig.step}{_qualifier(slot, kind)}"
        aid, k = base, 1
        while aid in self._alerts:
            k += 1
            aid = f"{base}#{k}"
        label = f"{term}{role_note}: " if term is not None else ""
        alert = Alert(id=aid, severity=severity, kind=kind, term=term, step=sig.step, message=label + sig.message,
                      evidence=sig.evidence, suggestions=self._suggest(specs, term))
        self._alerts[aid] = alert
        self._current[key] = aid
        self._new.append(alert)
        if severity == "critical":
            self.criticals.add(f"{kind}:{term}")
        self.raised[severity] = self.raised.get(severity, 0) + 1
        if self.worst is None or alert.rank > self.worst.rank:
            self.worst = alert

    def _work_signal(self, kind: str, sig: Signal, severity: str, specs: tuple[SuggestionSpec, ...]) -> None:
        self._signal(None, kind, kind, sig, severity, specs)

    def _work_evidence(self, kind: str) -> dict[str, Any] | None:
        aid = self._current.get((None, kind))
        return self._alerts[aid].evidence if aid is not None and aid in self._alerts else None

    def _suggest(self, specs: tuple[SuggestionSpec, ...], term: str | None) -> list[Suggestion]:
        history = self._history
        run_terms = list(history.terms) if history is not None else []
        weights = history.current_weights() if history is not None else {}
        out: dict[str, Suggestion] = {}
        for spec in specs:
            if spec.cmd == "set_weight":
                targets = self._targets(spec.term or "", term, run_terms)
                arg_sets = []
                for t in targets:
                    value: float | None
                    if spec.relative:
                        if t not in weights:
                            continue  # "×1.5 of the current weight" needs the current weight
                        value = float(f"{weights[t] * (spec.value or 0):.6g}")
                    else:
                        value = spec.value
                    if weights.get(t) == value:
                        continue  # already in force: suggesting it again would be a no-op
                    arg_sets.append({"term": t, "value": value})
            elif spec.cmd == "set_lr":
                arg_sets = [{"value": spec.value}]
            elif spec.cmd == "scale_lr":
                arg_sets = [{"factor": spec.value}]
            else:
                arg_sets = [{}]
            for args in arg_sets:
                try:
                    clean = validate_command(spec.cmd, args, run_terms if spec.cmd == "set_weight" else None)
                except CommandError:
                    continue  # not applicable to this run (e.g. a term it does not have)
                sug = Suggestion.make(spec.cmd, clean)
                out.setdefault(sug.label, sug)
        return list(out.values())

    def _targets(self, name: str, alert_term: str | None, run_terms: list[str]) -> list[str]:
        if name == "$term":
            return [alert_term] if alert_term is not None else []
        if name in run_terms and self.profile.role_of(name) != name and name in self.profile.aliases:
            return [name]  # a recipe's own term named directly
        found = [t for t in run_terms if self.profile.role_of(t) == name]
        if alert_term in found:
            found.remove(alert_term)
            found.insert(0, alert_term)  # the term that raised the alert comes first
        return found

    def _trainer_alerts(self, history: Any) -> None:
        # the trainer's own alerts (it acts on non-finite losses itself): shown unless already raised here
        t_col = history.steps["t"]
        for i, d in enumerate(history.alerts[self._arow:], start=self._arow):
            term = d.get("term") if isinstance(d.get("term"), str) else None
            if d.get("kind") in TRAINER_WORK:  # failed work (an eval, a save) the trainer survived
                step = d.get("step") if isinstance(d.get("step"), int) else (history.last_step or 0)
                self.work.trainer_alert(d["kind"], step, str(d.get("message") or d["kind"]), self._work_signal,
                                        self._work_evidence)
                continue
            kind = d.get("kind") if d.get("kind") in ("nonfinite", "spike", "stall", "collapse") else "nonfinite"
            if (term, kind) in self._current or (term, f"{kind}_eval") in self._current:
                continue
            t = d.get("t") if isinstance(d.get("t"), (int, float)) else math.inf
            row = int(np.searchsorted(t_col, t, side="right")) - 1 if len(t_col) else -1
            step = d.get("step") if isinstance(d.get("step"), int) else (
                int(history.steps["step"][row]) if row >= 0 else 0)
            s = None if term is None else self._terms.setdefault(term, TermState(term, self.profile))
            slot = f"trainer:{i}"
            self._signal(s, slot, kind, Signal(True, step, f"trainer: {d.get('message', kind)}",
                                               {"source": "trainer", "t": d.get("t"), "window": [step, step]}),
                         "critical", ())
            self._trainer.append((s, slot, t))
        self._arow = len(history.alerts)
        last_t = float(t_col[-1]) if len(t_col) else -math.inf
        for entry in list(self._trainer):
            if last_t > entry[2]:  # training went on after the trainer dealt with it
                self._signal(entry[0], entry[1], "nonfinite", Signal(False, self._step or 0))
                self._trainer.remove(entry)

    def _stall(self, history: Any, now: float) -> None:
        ended = history.run_end is not None
        silent = now - history.last_t if history.last_t is not None else None
        stalled = not ended and silent is not None and silent > self.profile.heartbeat
        step = history.last_step if history.last_step is not None else 0
        if stalled and (None, "stall") not in self._current:
            detail = {"silent_seconds": silent, "heartbeat": self.profile.heartbeat, "last_t": history.last_t,
                      "window": [step, step]}
            if not history.has_heartbeat:  # TensorBoard files: quiet files say nothing more
                severity, said = "info", (f"nothing new in the TensorBoard files for {fmt_duration(silent)}; "
                                          "they do not say whether the run ended")
            else:
                severity, said = self.profile.stall_severity, (f"no event for {silent:.0f} s (heartbeat allows "
                                                               f"{self.profile.heartbeat:g} s)")
            self._signal(None, "stall", "stall", Signal(True, step, f"{said}; last step {step}", detail), severity, ())
        elif not stalled:
            self._signal(None, "stall", "stall", Signal(False, step))
        latest = getattr(history, "latest_start", None) or history.run_start  # a resume runs under a new pid
        gone = not ended and silent is not None and silent > PID_GRACE and _pid_gone(latest)
        if gone and (None, "gone") not in self._current:
            pid = latest.get("pid")
            self._signal(None, "gone", "stall", Signal(True, step, f"the trainer (pid {pid} on this host) is gone "
                         f"and the run never ended; last step {step}", {"pid": pid, "silent_seconds": silent,
                                                                          "window": [step, step]}), "critical", ())
        elif not gone:
            self._signal(None, "gone", "stall", Signal(False, step))

    def _trim(self) -> None:
        ended = [(aid, a) for aid, a in self._alerts.items() if not a.active]
        if len(ended) > MAX_ENDED_ALERTS:  # the oldest go: which ones never depends on how the rows came
            ended.sort(key=lambda item: raised_order(item[1]))
            for aid, _ in ended[: len(ended) - MAX_ENDED_ALERTS]:
                del self._alerts[aid]


def _qualifier(slot: str, kind: str) -> str:
    """Id suffix that keeps alerts of one kind, term and step apart (eval vs train, rule 0 vs rule 2)."""
    if slot == kind:
        return ""
    if slot.startswith("rule:"):
        return ":r" + slot.rsplit("[", 1)[-1].rstrip("]")  # roles.speaker.rules[2] → :r2
    if slot.startswith("trainer:"):
        return ":trainer"
    return ":" + slot.rsplit("_", 1)[-1]  # nonfinite_eval → :eval, gone → :gone


def _pid_gone(run_start: Any) -> bool:
    """True when the run started on this host and its pid no longer exists."""
    if not isinstance(run_start, dict):
        return False
    return pid_alive(run_start.get("pid"), run_start.get("host")) is False
