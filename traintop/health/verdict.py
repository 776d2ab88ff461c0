"""The final checklist and the verdict, built so that the two can never disagree.

Every checklist item says what failing it means (``severity``: warning or critical), and the
verdict is the worst severity among the failed items — so a ``✘`` always shows in the verdict and
a verdict above healthy always has its ``✘``. Over an ended run the alert items count every alert
raised during the run (a rule whose window ended still failed the run); over a live run they count
what is active now, and what was raised and has ended is shown as "worst so far", not judged.
"""

from __future__ import annotations

import math
from typing import Any

from traintop.health.alerts import SEVERITY_RANK, Alert
from traintop.health.monitor import ZONE_RANK, HealthMonitor
from traintop.health.profile import HealthProfile

VERDICTS = ("healthy", "warning", "critical")
CONSISTENT_FALL = 0.6  # "total fell consistently": at least this share of epoch-to-epoch changes are falls
CLEAN_END = ("completed", "stopped")


def _item(item: str, ok: bool | None, detail: str, severity: str = "warning") -> dict[str, Any]:
    return {"item": item, "ok": ok, "severity": severity, "detail": detail}


def alert_when(a: Alert) -> str:
    """``raised at step 591, ended at step 800`` / ``raised at step 591, still active``."""
    raised = f"raised at step {a.step}" if a.step is not None else "raised"
    if a.active:
        return f"{raised}, still active"
    return f"{raised}, ended at step {a.ended_step}" if a.ended_step is not None else f"{raised}, ended"


def worst_so_far(mon: HealthMonitor) -> dict[str, Any] | None:
    """The first alert of the worst severity raised during the run, with when it was raised and ended."""
    a = mon.worst
    if a is None:
        return None
    return {**a.to_dict(), "when": alert_when(a)}


def verdict_now(mon: HealthMonitor, terms: list[str]) -> str:
    """What the run looks like now: the worst active alert and the worst zone of the latest values."""
    rank = max((a.rank for a in mon.active_alerts()), default=0)
    rank = max([rank, *(ZONE_RANK.get(mon.zone(t) or "good", 0) for t in terms)])
    return VERDICTS[min(rank, 2)]


def _role_items(history: Any, mon: HealthMonitor, profile: HealthProfile, terms: list[str],
                ended: bool) -> list[dict[str, Any]]:
    items = []
    for c in profile.checklist:
        for t in [t for t in terms if mon.role(t) == c.role]:
            raw, state = mon.last_value(t), mon.term_state(t)
            if raw is None or state is None:
                items.append(_item(c.item, False if ended else None, f"{t}: no value"
                                   + ("" if ended else " yet; judged when the run ends")))
                continue
            v = state.value(raw)
            ok = math.isfinite(v) and (c.below is None or v < c.below) and (c.above is None or v > c.above)
            bound = f"< {c.below:g}" if c.below is not None else f"> {c.above:g}"
            detail = f"{t} = {v:.4g} (wanted {bound})"
            items.append(_item(c.item, bool(ok) if ended else None,
                               detail if ended else detail + "; judged when the run ends"))
    return items


def _total_item(mon: HealthMonitor, ended: bool) -> dict[str, Any]:
    total = mon.term_state("total")
    means = [m for _, m in total.epoch_means] if total is not None else []
    if len(means) < 2:
        return _item("total fell consistently", None, "fewer than 2 finished epochs: nothing to judge")
    falls = sum(1 for a, b in zip(means, means[1:]) if b < a)
    share = falls / (len(means) - 1)
    ok = means[-1] < means[0] and share >= CONSISTENT_FALL
    detail = (f"{means[0]:.4g} → {means[-1]:.4g} over {len(means)} epochs; "
              f"fell from one epoch to the next {share * 100:.0f}% of the time")
    return _item("total fell consistently", ok if ended else None,
                 detail if ended else detail + "; judged when the run ends")


def _alert_item(mon: HealthMonitor, severity: str, ended: bool) -> dict[str, Any]:
    name = "no critical alert during training" if severity == "critical" else "no warning during training"
    rank = SEVERITY_RANK[severity]
    # ``mon.alerts`` is in ``raised_order``: the same text whether health judged the run in one pass or in parts
    of_it = [a for a in mon.alerts if a.rank == rank]
    active = [a for a in of_it if a.active]
    count = mon.raised.get(severity, 0)
    if count == 0:
        return _item(name, True, "none", severity)
    shown = active or of_it
    listed = "; ".join(f"{a.kind}:{a.term or 'run'} ({alert_when(a)})" for a in shown[:4])
    more = f"; and {count - min(4, len(shown))} more" if count > min(4, len(shown)) else ""
    if ended or active:
        return _item(name, False, f"{count} raised: {listed}{more}", severity)
    return _item(name, None, f"so far {count} raised, none active now: {listed}{more}", severity)


def _zone_item(mon: HealthMonitor, terms: list[str]) -> dict[str, Any]:
    bad = [(t, z) for t in terms if (z := mon.zone(t)) in ("warn", "critical")]
    if not bad:
        return _item("every term in its good zone", True, "yes" if any(mon.zone(t) for t in terms)
                     else "no term has zones in this profile")
    severity = "critical" if any(z == "critical" for _, z in bad) else "warning"
    return _item("every term in its good zone", False, ", ".join(f"{t}: {z}" for t, z in bad), severity)


def _end_item(history: Any) -> dict[str, Any]:
    end = history.run_end
    if end is None:
        return _item("the run ended cleanly", None, "the run has not ended", "critical")
    status = str(end.get("status") or "ended")
    if status in CLEAN_END:
        return _item("the run ended cleanly", True, status, "critical")
    err = end.get("error")
    return _item("the run ended cleanly", False, f"{status}: {err}" if err else status, "critical")


def _saved_item(history: Any, ended: bool) -> dict[str, Any]:
    good = [c for c in history.checkpoints if c.get("error") is None]
    failed = len(history.checkpoints) - len(good)
    detail = f"{len(good)} checkpoint(s)" + (f", {failed} failed" if failed else "")
    if good:
        return _item("the model is saved", True, detail)
    return _item("the model is saved", False if ended else None, detail if ended else detail + " yet")


def _samples_item(history: Any) -> dict[str, Any]:
    failed = sum(1 for s in history.samples if s.get("error") is not None)
    made = len(history.samples) - failed
    detail = f"listen: {made} sample{'s' * (made != 1)}, {failed} failed" + (" (in samples/)" if made else "")
    return _item("the test audio sounds like the target voice", None, detail)


def checklist(history: Any, mon: HealthMonitor, profile: HealthProfile, terms: list[str]) -> list[dict[str, Any]]:
    """The final checklist: ``[{item, ok (True / False / None = not judged), severity, detail}]``."""
    ended = history.run_end is not None
    return [*_role_items(history, mon, profile, terms, ended), _total_item(mon, ended), _zone_item(mon, terms),
            _alert_item(mon, "critical", ended), _alert_item(mon, "warning", ended), _end_item(history),
            _saved_item(history, ended), _samples_item(history),
            _item("a backup exists", None, "traintop cannot check this")]


def verdict_of(items: list[dict[str, Any]]) -> str:
    """The worst severity among the failed items (``healthy`` when none failed)."""
    rank = max((SEVERITY_RANK[c["severity"]] for c in items if c["ok"] is False), default=0)
    return VERDICTS[min(rank, 2)]
