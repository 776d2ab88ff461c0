"""The health cache beside a run: a re-open restores the monitor and judges only the rows after it.

``<run>/.health.cache.json`` holds a ``HealthMonitor``'s state after a pass over the history of
``events.jsonl`` up to an offset, with what it is valid for: the events file's key
(``sources.jsonl.cache.file_key``), fingerprints of the profile's content and of the health code, and
the history's row counts. It is plain JSON, never pickle: decoding rebuilds only the classes of
``ALLOWED``, by overlaying saved attributes on objects the normal constructors built from the
current profile (zone rules, detector settings and suggestions are never read from the file), and
refuses any attribute the fresh object lacks or a value of another type. Anything off — absent,
stale, foreign, a wrong type, a future version, a link or a FIFO in its place, any error at all
while reading it — means a full pass that overwrites it (docs/run-directory.md, "Health cache").
It is written with ``safefile.atomic_write``: a fresh random temp name, never through a planted link.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from traintop.health.alerts import Alert, Suggestion
from traintop.health.detectors import OverfitDetector, PlateauDetector
from traintop.health.monitor import HealthMonitor
from traintop.health.profile import HealthProfile, SuggestionSpec, ZoneRule
from traintop.health.streams import CollapseDetector, Ema, EpochMeans, NonFiniteDetector, SpikeDetector
from traintop.health.term import TermState, ZoneState
from traintop.health.work import Tally, WorkWatch
from traintop.protocol.safefile import atomic_write, open_read
from traintop.sources.history import RunHistory
from traintop.sources.jsonl.cache import MIN_NEW_BYTES, file_key, loads_bounded, tell_ignored

HEALTH_FILE = ".health.cache.json"
HEALTH_VERSION = 2  # 2: a NaN counts only where the row logged one
MAX_BYTES = 64 << 20  # a state is ~100 KB (alerts are capped): a bigger file is not ours
# the modules whose code decides what a state means: any change to them invalidates every cache
CODE = ("alerts", "detectors", "monitor", "profile", "snapshot", "streams", "term", "work")
ALLOWED: dict[str, type] = {cls.__name__: cls for cls in (
    HealthMonitor, TermState, ZoneState, Ema, EpochMeans, NonFiniteDetector, SpikeDetector, CollapseDetector,
    OverfitDetector, PlateauDetector, WorkWatch, Tally, Alert, Suggestion)}
BOUND = (HealthProfile, ZoneRule, SuggestionSpec)  # re-bound from the current profile, never stored
DTYPES = ("<f8", "<i8", "|b1")  # the arrays a state holds (detector windows)


class SnapshotError(ValueError):
    """A health state that does not fit: restoring it is refused (the caller judges from scratch)."""


def cache_path(events: Path) -> Path:
    """Where the health cache of ``events`` lives."""
    return events.with_name(HEALTH_FILE)


def profile_fingerprint(profile: HealthProfile) -> str:
    """A hash of the profile's content (not its path: a built-in is the same wherever it is installed)."""
    text = repr(dataclasses.replace(profile, path=""))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


_code_fp: list[str | None] = []


def code_fingerprint() -> str | None:
    """A hash of the health modules' source (a state saved by other code is never restored); None
    when the source cannot be read (then no cache is read or written)."""
    if not _code_fp:  # computed once per process
        h = hashlib.blake2b(digest_size=16)
        try:
            for name in CODE:
                h.update(Path(__file__).with_name(f"{name}.py").read_bytes())
            _code_fp.append(h.hexdigest())
        except OSError:
            _code_fp.append(None)
    return _code_fp[0]


# -- encoding ------------------------------------------------------------------------------------

def _bound(value: Any) -> bool:
    """Whether the value is (or holds) part of the profile: its attribute keeps what the constructor made."""
    if isinstance(value, BOUND):
        return True
    if isinstance(value, dict):
        return any(_bound(v) for v in value.values())
    return isinstance(value, (list, tuple)) and any(_bound(v) for v in value)


def _attrs(obj: Any) -> dict[str, Any]:
    slots = getattr(type(obj), "__slots__", None)
    return {n: getattr(obj, n) for n in slots} if slots is not None else dict(vars(obj))


def _encode(value: Any, seen: dict[int, int]) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float, np.integer, np.floating, np.bool_)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, RunHistory):
        return None  # the history is the caller's: ``update`` binds it again
    if type(value).__name__ in ALLOWED and ALLOWED[type(value).__name__] is type(value):
        if id(value) in seen:  # the same object again (a term in the trainer list, the worst alert)
            return {"$r": seen[id(value)]}
        seen[id(value)] = len(seen)
        out = {name: {"$b": 1} if _bound(attr) else _encode(attr, seen) for name, attr in _attrs(value).items()}
        return {"$o": type(value).__name__, "a": out}
    if isinstance(value, list):
        return [_encode(v, seen) for v in value]
    if isinstance(value, tuple):
        return {"$t": [_encode(v, seen) for v in value]}
    if isinstance(value, deque):
        return {"$q": [_encode(v, seen) for v in value], "m": value.maxlen}
    if isinstance(value, (set, frozenset)):
        return {"$s": sorted(_encode(v, seen) for v in value)}
    if isinstance(value, dict):
        return {"$d": [[_encode(k, seen), _encode(v, seen)] for k, v in value.items()]}
    if isinstance(value, np.ndarray) and value.dtype.str in DTYPES and value.ndim == 1:
        return {"$a": value.tolist(), "d": value.dtype.str}
    raise TypeError(f"cannot store a {type(value).__name__} in a health state")


def state_of(monitor: HealthMonitor) -> dict[str, Any]:
    """The monitor's whole state as JSON-ready data (call it right after ``update``)."""
    return _encode(monitor, {})


# -- decoding ------------------------------------------------------------------------------------

class _Decoder:
    """Rebuilds a state onto fresh objects made from ``profile``; raises ``SnapshotError`` when it does not fit."""

    def __init__(self, profile: HealthProfile) -> None:
        self.profile = profile
        self.memo: list[Any] = []

    def value(self, data: Any, template: Any) -> Any:
        out = self._build(data, template)
        if template is not None and not _same_type(out, template):
            raise SnapshotError(f"a {type(out).__name__} where a {type(template).__name__} belongs")
        return out

    def _build(self, data: Any, template: Any) -> Any:
        if data is None or isinstance(data, (bool, int, float, str)):
            return data
        if isinstance(data, list):
            pair = isinstance(template, list) and len(template) == len(data)  # e.g. a term's zone states
            return [self.value(d, template[i] if pair else None) for i, d in enumerate(data)]
        if not isinstance(data, dict) or len(data) not in (1, 2):
            raise SnapshotError("not a tagged value")
        if "$o" in data:
            return self._object(data, template)
        if "$r" in data:
            ref = data["$r"]
            if not isinstance(ref, int) or isinstance(ref, bool) or not 0 <= ref < len(self.memo):
                raise SnapshotError("a reference to nothing")
            return self.memo[ref]
        if "$t" in data:
            return tuple(self.value(d, None) for d in _list(data["$t"]))
        if "$q" in data:
            maxlen = data.get("m")
            if maxlen is not None and (not isinstance(maxlen, int) or maxlen < 0):
                raise SnapshotError("a bad deque length")
            return deque((self.value(d, None) for d in _list(data["$q"])), maxlen=maxlen)
        if "$s" in data:
            return {_hashable(self.value(d, None)) for d in _list(data["$s"])}
        if "$d" in data:
            out: dict[Any, Any] = {}
            for item in _list(data["$d"]):
                if not isinstance(item, list) or len(item) != 2:
                    raise SnapshotError("a bad dict item")
                key = _hashable(self.value(item[0], None))
                out[key] = self.value(item[1], template.get(key) if isinstance(template, dict) else None)
            return out
        if "$a" in data:
            if data.get("d") not in DTYPES or not all(isinstance(v, (int, float)) for v in _list(data["$a"])):
                raise SnapshotError("a bad array")
            return np.array(data["$a"], dtype=np.dtype(data["d"]))
        raise SnapshotError(f"an unknown tag {sorted(data)}")

    def _object(self, data: dict[str, Any], template: Any) -> Any:
        cls = ALLOWED.get(data["$o"]) if isinstance(data["$o"], str) else None
        attrs = data.get("a")
        if cls is None or not isinstance(attrs, dict):
            raise SnapshotError(f"a class not allowed: {str(data['$o'])[:80]!r}")
        obj = template if type(template) is cls else self._fresh(cls, attrs)
        self.memo.append(obj)
        current = _attrs(obj)
        for name, saved in attrs.items():
            if name not in current:
                raise SnapshotError(f"{cls.__name__} has no attribute {name[:80]!r}")
            if saved == {"$b": 1}:
                continue  # made from the current profile by the constructor
            object.__setattr__(obj, name, self.value(saved, current[name]))  # frozen dataclasses too
        if isinstance(obj, Alert):
            _check_alert(obj)
        elif isinstance(obj, Suggestion) and not (isinstance(obj.cmd, str) and isinstance(obj.args, dict)
                                                  and isinstance(obj.label, str)):
            raise SnapshotError("a bad suggestion")
        return obj

    def _fresh(self, cls: type, attrs: dict[str, Any]) -> Any:
        # the objects a fresh monitor does not hold yet: its terms, its alerts and their suggestions
        if cls is TermState and isinstance(attrs.get("name"), str):
            return TermState(attrs["name"], self.profile)
        if cls is Alert:
            return Alert(id="", severity="", kind="", term=None, step=None, message="")
        if cls is Suggestion:
            return Suggestion(cmd="")
        raise SnapshotError(f"no {cls.__name__} belongs here")


def _same_type(value: Any, template: Any) -> bool:
    if type(value) is not type(template):
        return False
    if isinstance(value, deque):
        return value.maxlen == template.maxlen
    if isinstance(value, np.ndarray):
        return value.dtype == template.dtype
    return True


def _list(data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise SnapshotError("not a list")
    return data


def _hashable(key: Any) -> Any:
    if key is None or isinstance(key, (bool, int, float, str)):
        return key
    if isinstance(key, tuple) and all(k is None or isinstance(k, (bool, int, float, str)) for k in key):
        return key
    raise SnapshotError("a key that is not a plain value")


def _check_alert(a: Alert) -> None:
    ok = (isinstance(a.id, str) and isinstance(a.severity, str) and isinstance(a.kind, str)
          and isinstance(a.message, str) and isinstance(a.evidence, dict) and isinstance(a.suggestions, list)
          and isinstance(a.active, bool) and (a.term is None or isinstance(a.term, str))
          and all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in (a.step, a.ended_step))
          and all(isinstance(s, Suggestion) for s in a.suggestions))
    if not ok:
        raise SnapshotError(f"a bad alert {str(a.id)[:80]!r}")


def monitor_from(profile: HealthProfile, state: Any) -> HealthMonitor:
    """A monitor for ``profile`` with ``state_of``'s state overlaid (raises ``SnapshotError`` when it does not fit)."""
    try:
        mon = _Decoder(profile).value(state, HealthMonitor(profile))
    except RecursionError as exc:
        raise SnapshotError("nested too deep") from exc
    if not isinstance(mon, HealthMonitor) or mon.profile is not profile:
        raise SnapshotError("not a monitor of this profile")
    return mon


# -- the file ------------------------------------------------------------------------------------

def _rows(history: RunHistory) -> dict[str, Any]:
    """What of ``history`` a state has judged: it fits a later history holding at least these rows."""
    steps = history.steps
    last = [int(steps["step"][-1]), float(steps["t"][-1])] if len(steps) else None
    return {"generation": history.generation, "steps": len(steps), "evals": len(history.evals),
            "alerts": len(history.alerts), "samples": len(history.samples),
            "checkpoints": len(history.checkpoints), "last": last}


def _fits(rows: Any, history: RunHistory) -> bool:
    now = _rows(history)
    if not isinstance(rows, dict) or rows.get("generation") != now["generation"]:
        return False
    for kind in ("steps", "evals", "alerts", "samples", "checkpoints"):
        n = rows.get(kind)
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= now[kind]:
            return False
    n, last = rows["steps"], rows.get("last")
    if n == 0:
        return last is None
    steps = history.steps
    return last == [int(steps["step"][n - 1]), float(steps["t"][n - 1])]  # the same rows, not just as many


def restore(profile: HealthProfile, events: Path, history: RunHistory) -> tuple[HealthMonitor, int] | None:
    """The monitor saved beside ``events`` and the offset it covers, when it fits ``history`` and ``profile``.

    ``None`` when there is none or it does not fit; never raises. The file is opened through
    ``safefile`` (a link or FIFO is ignored, never followed or waited on), read up to its real size
    (never more than ``MAX_BYTES``) and its JSON depth bounded; one that cannot be read is told once.
    """
    path = cache_path(events)
    try:
        return _restore(profile, events, history, path)
    except FileNotFoundError:
        return None  # no cache yet
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with a cache, the rows are judged afresh
        tell_ignored(path, exc)
        return None


def _restore(profile: HealthProfile, events: Path, history: RunHistory,
             path: Path) -> tuple[HealthMonitor, int] | None:
    with open_read(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_BYTES:
            raise SnapshotError(f"{size} bytes, more than a health state can be")
        data = fh.read(size)
    meta = loads_bounded(data)
    if not isinstance(meta, dict) or meta.get("version") != HEALTH_VERSION:
        return None  # another version's (or nothing of ours): rewritten by the next pass
    key = meta.get("key")
    offset = key.get("offset") if isinstance(key, dict) else None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise SnapshotError("key.offset: not a byte offset")
    code = code_fingerprint()
    if (code is None or meta.get("code") != code or meta.get("profile") != profile_fingerprint(profile)
            or key != file_key(events, offset) or not _fits(meta.get("rows"), history)):
        return None  # other code, another profile, another file or other bytes: judge them afresh
    return monitor_from(profile, meta.get("state")), offset


def save(monitor: HealthMonitor, events: Path, history: RunHistory, offset: int, *,
         background: bool = True) -> threading.Thread | None:
    """Write the state of ``monitor``, just updated with ``history`` (which covers ``events`` up to ``offset``).

    The state is serialized now (the monitor goes on changing); the file is written by a thread,
    atomically; failures are silent (a read-only run directory gets no cache).
    """
    key = file_key(events, offset)
    if key is None or code_fingerprint() is None:
        return None
    try:
        text = json.dumps({"version": HEALTH_VERSION, "key": key, "code": code_fingerprint(),
                           "profile": profile_fingerprint(monitor.profile), "rows": _rows(history),
                           "state": state_of(monitor)}, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError, RecursionError):
        return None  # a value JSON cannot hold: no cache, no harm
    if not background:
        _write(cache_path(events), text)
        return None
    # not a daemon: a short-lived `traintop report` finishes writing before the interpreter exits
    thread = threading.Thread(target=_write, args=(cache_path(events), text), name="traintop-health-cache")
    thread.start()
    return thread


def _write(path: Path, data: bytes) -> None:
    try:
        # a fresh temp file (O_EXCL, random name, never a planted link) renamed over the cache:
        # readers see the old cache or the new one, never half of one
        with atomic_write(path) as fh:
            fh.write(data)
    except OSError:
        pass  # a read-only run directory: no cache, no harm (the temp file is removed)


def judge(history: RunHistory, profile: HealthProfile, events: Path | None, offset: int,
          monitor: HealthMonitor | None = None, *, background: bool = True) -> HealthMonitor:
    """A monitor that has judged all of ``history`` (which covers ``events`` up to ``offset``).

    It starts from the health cache when that fits (else from ``monitor``, e.g. a pass over a first
    part, else from scratch), judges only the rows after it, and saves the result when it judged
    more than ``MIN_NEW_BYTES`` of new events (``events`` None: no cache, e.g. a TensorBoard run).
    The pass runs with ``now`` at the last event, so the state saved depends on the bytes alone;
    the caller's next ``update`` judges stalls on the wall clock.
    """
    found = restore(profile, events, history) if events is not None else None
    mon, since = found if found is not None else (monitor or HealthMonitor(profile), 0)
    try:
        mon.update(history, now=history.last_t)
    except Exception:  # noqa: BLE001 - a restored state that passed every check yet fails: judge afresh
        if found is None:
            raise
        mon, since = HealthMonitor(profile), 0
        mon.update(history, now=history.last_t)
    if events is not None and offset - since > MIN_NEW_BYTES:
        save(mon, events, history, offset, background=background)
    return mon
