"""``build_report``: the seed guide's per-epoch analysis of a run, as one JSON-ready dict."""

from __future__ import annotations

import math
from typing import Any

from traintop.health.monitor import ZONE_RANK, HealthMonitor
from traintop.health.profile import HealthProfile
from traintop.health.term import TermState

VERDICTS = ("healthy", "warning", "critical")
TREND_TOLERANCE = 0.02  # relative EMA change below which a curve counts as stable
TREND_EPOCHS = 5  # the trend compares the EMA now with the EMA this many epochs ago
CONSISTENT_FALL = 0.6  # "total fell consistently": at least this share of epoch-to-epoch changes are falls


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


def _checklist(history: Any, mon: HealthMonitor, profile: HealthProfile, terms: list[str]) -> list[dict[str, Any]]:
    ended = history.run_end is not None
    items: list[dict[str, Any]] = []
    for c in profile.checklist:
        players = [t for t in terms if mon.role(t) == c.role]
        for t in players:
            raw = mon.last_value(t)
            state = mon.term_state(t)
            if raw is None or state is None:
                items.append({"item": c.item, "ok": False, "detail": f"{t}: no value yet"})
                continue
            v = state.value(raw)
            ok = math.isfinite(v) and (c.below is None or v < c.below) and (c.above is None or v > c.above)
            bound = f"< {c.below:g}" if c.below is not None else f"> {c.above:g}"
            items.append({"item": c.item, "ok": bool(ok),
                          "detail": f"{t} = {v:.4g} (wanted {bound})" + ("" if ended else "; the run is not over")})
    total = mon.term_state("total")
    means = [m for _, m in total.epoch_means] if total is not None else []
    if len(means) >= 2:
        falls = sum(1 for a, b in zip(means, means[1:]) if b < a)
        share = falls / (len(means) - 1)
        ok = means[-1] < means[0] and share >= CONSISTENT_FALL
        items.append({"item": "total fell consistently", "ok": ok,
                      "detail": f"{means[0]:.4g} → {means[-1]:.4g} over {len(means)} epochs; "
                                f"fell from one epoch to the next {share * 100:.0f}% of the time"})
    else:
        items.append({"item": "total fell consistently", "ok": False, "detail": "fewer than 2 finished epochs"})
    crit = sorted(mon.criticals)
    items.append({"item": "no critical alert during training", "ok": not crit,
                  "detail": "none" if not crit else ", ".join(crit)})
    n_ck = len(history.checkpoints)
    items.append({"item": "the model is saved", "ok": n_ck > 0, "detail": f"{n_ck} checkpoint(s)"})
    items.append({"item": "the test audio sounds like the target voice", "ok": None,
                  "detail": f"listen: {len(history.samples)} sample(s) in samples/"})
    items.append({"item": "a backup exists", "ok": None, "detail": "traintop cannot check this"})
    return items


def data_issues(history: Any) -> dict[str, Any]:
    """What the reader skipped or saw replaced: bad lines, seq gaps and duplicates, restarts."""
    notices = list(getattr(history, "notices", []))
    return {"bad_lines": int(getattr(history, "bad_lines", 0)),
            "seq_gaps": int(getattr(history, "seq_gaps", 0)),
            "duplicates": int(getattr(history, "duplicates", 0)),
            "restarted": sum(1 for n in notices if n.kind in ("truncated", "replaced")),
            "notices": [{"kind": n.kind, "offset": n.offset, "message": n.message} for n in notices[:20]]}


def build_report(history: Any, profile: HealthProfile, now: float | None = None,
                 monitor: HealthMonitor | None = None) -> dict[str, Any]:
    """Judge ``history`` with ``profile`` (or an already updated ``monitor``) into one report dict.

    Keys: ``run``, ``profile``, ``status``, ``step``, ``epoch``, ``terms`` {name: {``last``, ``ema``,
    ``zone``, ``role``, ``weight``, ``eval``, ``trend``, ``verdict``}}, ``alerts`` (active ones, worst
    first), ``ended_alerts``, ``checklist`` [{``item``, ``ok``, ``detail``}], ``verdict`` and ``data`` (what
    was skipped, truncated or replaced while reading; see ``data_issues``).
    """
    mon = monitor or HealthMonitor(profile)
    if monitor is None:
        mon.update(history, now)
    active = mon.active_alerts()
    weights = history.current_weights()
    terms = [*history.terms, "total"]
    table: dict[str, Any] = {}
    worst = 0
    for t in terms:
        state = mon.term_state(t)
        if state is None:
            continue
        zone = mon.zone(t)
        worst = max(worst, ZONE_RANK.get(zone or "good", 0))
        names = [a.kind for a in active if a.term == t]
        table[t] = {"last": _num(mon.last_value(t)), "ema": _num(mon.ema(t)), "zone": zone, "role": mon.role(t),
                    "weight": weights.get(t), "eval": _num(state.last_eval), "trend": trend(state),
                    "verdict": _verdict_line(zone, trend(state), mon.expectation(t), names)}
        raw = mon.last_value(t)
        if raw is not None and not math.isfinite(raw):
            table[t]["last"] = "nan" if raw != raw else ("inf" if raw > 0 else "-inf")
    worst = max(worst, max((a.rank for a in active), default=0))
    start = history.run_start or {}
    return {
        "run": start.get("run"), "profile": profile.name, "status": history.status(),
        "step": history.last_step, "epoch": history.last_epoch,
        "planned_epochs": start.get("planned_epochs"), "planned_steps": start.get("planned_steps"),
        "terms": table, "alerts": [a.to_dict() for a in active],
        "ended_alerts": [a.to_dict() for a in mon.alerts if not a.active],
        "checklist": _checklist(history, mon, profile, terms), "verdict": VERDICTS[worst],
        "data": data_issues(history),
    }
