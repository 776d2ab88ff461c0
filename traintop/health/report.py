"""``build_report``: the seed guide's per-epoch analysis of a run, as one JSON-ready dict."""

from __future__ import annotations

import math
import time
from typing import Any

from traintop.health.monitor import HealthMonitor
from traintop.health.profile import HealthProfile
from traintop.health.term import TermState
from traintop.health.verdict import VERDICTS, checklist, verdict_now, verdict_of, worst_so_far
from traintop.sources.runs import run_status

__all__ = ["VERDICTS", "build_report", "trend"]

TREND_TOLERANCE = 0.02  # relative EMA change below which a curve counts as stable
TREND_EPOCHS = 5  # the trend compares the EMA now with the EMA this many epochs ago


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def trend(state: TermState) -> str:
    """``falling`` / ``rising`` / ``stable`` / ``too early``, from the EMA against a few epochs back."""
    now = state.ema.value
    if now is None or not state.epoch_emas:
        return "too early"
    back = state.epoch_emas[-TREND_EPOCHS] if len(state.epoch_emas) >= TREND_EPOCHS else state.epoch_emas[0]
    if back != back:
        return "too early"
    change = (now - back) / max(abs(back), 1e-12)
    if abs(change) < TREND_TOLERANCE:
        return "stable"
    return "falling" if change < 0 else "rising"


def _verdict_line(zone: str | None, tr: str, expect: str, alerts: list[str]) -> str:
    head = {"good": "good, ", "warn": "warning, ", "critical": "critical, ", None: ""}[zone]
    text = f"{head}{tr}"
    if alerts:
        text += f"; alerts: {', '.join(alerts)}"
    return f"{text} — {expect}" if expect else text


def data_issues(history: Any) -> dict[str, Any]:
    """What the reader skipped or saw replaced: bad lines, seq gaps and duplicates, restarts, files it
    could not read, and summaries that are no series (histograms, images, text: not shown)."""
    notices = list(getattr(history, "notices", []))
    return {"bad_lines": int(getattr(history, "bad_lines", 0)),
            "seq_gaps": int(getattr(history, "seq_gaps", 0)),
            "duplicates": int(getattr(history, "duplicates", 0)),
            "restarted": sum(1 for n in notices if n.kind in ("truncated", "replaced")),
            "unreadable": sorted({n.message for n in notices if n.kind == "unreadable"}),
            "torn": sum(1 for n in notices if n.kind == "torn"),
            "not_shown": [n.message for n in notices if n.kind == "not_shown"],
            "notices": [{"kind": n.kind, "offset": n.offset, "message": n.message} for n in notices[:20]
                        if n.kind != "not_shown"]}


def build_report(history: Any, profile: HealthProfile, now: float | None = None,
                 monitor: HealthMonitor | None = None) -> dict[str, Any]:
    """Judge ``history`` with ``profile`` (or an already updated ``monitor``) into one report dict.

    Keys: ``run``, ``profile``, ``status``, ``step``, ``epoch``, ``terms`` {name: {``last``, ``ema``,
    ``zone``, ``role``, ``weight``, ``eval``, ``trend``, ``verdict``}}, ``alerts`` (active ones, worst
    first), ``ended_alerts``, ``checklist`` [{``item``, ``ok``, ``severity``, ``detail``}], ``verdict``
    (the worst failed checklist item: over an ended run, every alert raised during it counts),
    ``now`` (the worst of what is active and the latest zones), ``worst_so_far`` (an alert or null) and
    ``data`` (what was skipped, truncated or replaced while reading; see ``data_issues``).
    """
    mon = monitor or HealthMonitor(profile)
    if monitor is None:
        mon.update(history, now)
    active = mon.active_alerts()
    weights = history.current_weights()
    terms = [*history.terms, "total"]
    table: dict[str, Any] = {}
    for t in terms:
        state = mon.term_state(t)
        if state is None:
            continue
        zone = mon.zone(t)
        names = [a.kind for a in active if a.term == t]
        table[t] = {"last": _num(mon.last_value(t)), "ema": _num(mon.ema(t)), "zone": zone, "role": mon.role(t),
                    "weight": weights.get(t), "eval": _num(state.last_eval), "trend": trend(state),
                    "verdict": _verdict_line(zone, trend(state), mon.expectation(t), names)}
        raw = mon.last_value(t)
        if raw is not None and not math.isfinite(raw):
            table[t]["last"] = "nan" if raw != raw else ("inf" if raw > 0 else "-inf")
    items = checklist(history, mon, profile, terms)
    start = history.run_start or {}
    return {
        "run": start.get("run"), "profile": profile.name,
        "status": run_status(history, time.time() if now is None else now),
        "step": history.last_step, "epoch": history.last_epoch,
        "planned_epochs": start.get("planned_epochs"), "planned_steps": start.get("planned_steps"),
        "terms": table, "alerts": [a.to_dict() for a in active],
        "ended_alerts": [a.to_dict() for a in mon.alerts if not a.active],
        "checklist": items, "verdict": verdict_of(items), "now": verdict_now(mon, list(table)),
        "worst_so_far": worst_so_far(mon),
        "samples": {"made": sum(1 for s in history.samples if s.get("error") is None),
                    "failed": sum(1 for s in history.samples if s.get("error") is not None)},
        "data": data_issues(history),
    }
