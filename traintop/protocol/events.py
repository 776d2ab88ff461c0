"""Event schema of ``events.jsonl``: types, required keys, encoding and decoding.

Every line is ``{"v": 1, "type": ..., "t": <unix seconds>, "seq": <n>, ...}`` (docs/run-directory.md). Readers keep
unknown types and fields (they are simply not consumed) and show a higher ``v`` instead of failing.
Non-finite floats are written as ``null`` and listed in a ``nonfinite`` map of dotted paths
(``{"losses.loss_mel": "nan"}``), because bare ``NaN`` is not JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

SCHEMA_VERSION = 1

# Required keys per known event type (docs/run-directory.md, "Events"); extra keys are always allowed.
EVENT_KEYS: dict[str, tuple[str, ...]] = {
    "run_start": ("run", "recipe", "profile", "terms", "planned_steps", "planned_epochs",
                  "host", "pid", "versions", "resumed_from"),
    "step": ("step", "epoch", "losses", "weights", "total", "lr", "grad_norm", "step_time",
             "loader_time"),
    "eval": ("step", "epoch", "losses", "total"),
    "system": ("gpus", "cpu", "rss"),
    "checkpoint": ("step", "path", "is_best", "metric"),
    "sample": ("step",),
    "ack": ("id", "status", "reason", "step", "state"),
    "state": ("state",),
    "alert": ("kind", "term", "message"),
    "run_end": ("status", "step", "error"),
}
EVENT_TYPES = frozenset(EVENT_KEYS)
ACK_STATUSES = frozenset({"applied", "rejected", "deferred"})
RUN_STATES = frozenset({"running", "paused", "stopping"})
END_STATUSES = frozenset({"completed", "stopped", "failed"})


class EventError(ValueError):
    """An event that does not follow the schema; the message names the field."""


def _nonfinite_name(x: float) -> str:
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def sanitize(value: Any, path: str = "", flags: dict[str, str] | None = None) -> Any:
    """Return ``value`` with every non-finite float replaced by ``None``, noting it in ``flags``."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        if flags is not None:
            flags[path] = _nonfinite_name(value)
        return None
    if isinstance(value, dict):
        return {k: sanitize(v, f"{path}.{k}" if path else str(k), flags) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize(v, f"{path}.{i}" if path else str(i), flags) for i, v in enumerate(value)]
    # numpy / torch scalars that are not Python floats: convert via float when they look numeric
    if hasattr(value, "item") and not isinstance(value, (str, bytes, int, bool)):
        return sanitize(value.item(), path, flags)
    return value


def encode_event(event: dict[str, Any]) -> bytes:
    """Serialize one event to a single JSON line (with trailing newline), non-finite → null + flag."""
    flags: dict[str, str] = {}
    clean = sanitize(event, "", flags)
    if flags:
        clean["nonfinite"] = {**clean.get("nonfinite", {}), **flags}
    return orjson.dumps(clean, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


_NONFINITE_TOKENS = (b"NaN", b"Infinity")


def decode_line(line: bytes) -> dict[str, Any]:
    """Parse one line (no newline) into a dict; accept bare ``NaN``/``Infinity`` from other tools.

    Raises ``EventError`` with a reason when the line is not UTF-8, not JSON or not an object.
    """
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        if any(tok in line for tok in _NONFINITE_TOKENS):
            obj = _decode_with_nonfinite(line)
        else:
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                raise EventError("line is not valid UTF-8") from None
            raise EventError(f"not JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise EventError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _decode_with_nonfinite(line: bytes) -> Any:
    import json  # slow path only: the stdlib parser understands NaN / Infinity

    try:
        return json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise EventError("line is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise EventError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise EventError("not JSON (nested too deep)") from None


def validate_event(event: dict[str, Any]) -> list[str]:
    """Return problems with a known event (missing keys, wrong kinds); unknown types pass."""
    problems: list[str] = []
    for key in ("v", "type", "t", "seq"):
        if key not in event:
            problems.append(f"missing field '{key}'")
    typ = event.get("type")
    if typ in EVENT_KEYS:
        for key in EVENT_KEYS[typ]:
            if key not in event:
                problems.append(f"{typ}: missing field '{key}'")
        if typ in ("step", "eval") and not isinstance(event.get("losses"), dict):
            problems.append(f"{typ}: field 'losses' must be an object of term → number")
        if typ == "ack" and event.get("status") not in ACK_STATUSES:
            problems.append(f"ack: field 'status' must be one of {sorted(ACK_STATUSES)}")
    return problems


@dataclass
class Event:
    """A decoded event: its type, header fields and the whole payload (unknown fields kept)."""

    type: str
    seq: int | None
    t: float | None
    v: int
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Event:
        """Wrap a decoded line; missing header fields become ``None`` rather than an error."""
        return cls(type=str(obj.get("type", "")), seq=obj.get("seq"), t=obj.get("t"),
                   v=int(obj.get("v", SCHEMA_VERSION) or SCHEMA_VERSION), data=obj)

    def get(self, key: str, default: Any = None) -> Any:
        """Payload field ``key``."""
        return self.data.get(key, default)

    def value(self, path: str) -> float | None:
        """A numeric payload value by dotted path, with flagged non-finite values restored."""
        flag = (self.data.get("nonfinite") or {}).get(path)
        if flag is not None:
            return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}.get(flag, math.nan)
        cur: Any = self.data
        for part in path.split("."):
            if not isinstance(cur, dict):
                return None
            cur = cur.get(part)
        return float(cur) if isinstance(cur, (int, float)) and not isinstance(cur, bool) else None
