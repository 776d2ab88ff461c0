"""``traintop report A B [C…]``: runs side by side — each run's verdict, what differs between them
(settings, and the changes applied inside each), and per term who is ahead now and at the same step.

The numbers are ``health.compare``'s (the comparison screen reads the same); each run is opened and
judged as one run of a folder is (``folder.open_judged``). The exit code is the worst run's verdict.
"""

from __future__ import annotations

import json
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from traintop.health import compare
from traintop.health.cli import EXIT_CODES, EXIT_UNREADABLE
from traintop.health.compare import Member, TermComparison, TermStats
from traintop.health.folder import open_judged
from traintop.health.loader import load_profile
from traintop.health.profile import ProfileError
from traintop.health.report import build_report
from traintop.health.streams import debiased_ema
from traintop.protocol import RunDirError
from traintop.protocol.text import MESSAGE_MAX, shown
from traintop.sources.find import resolve_run, run_name

MAX_RUNS = compare.MAX_MEMBERS  # one label letter per run
ALIGN = "step"  # runs are compared at the same training step
SMOOTHING = 0.9  # the watch's default EMA strength: the curve its chart draws


@dataclass(frozen=True)
class _Opened:
    """One run read and judged: what the comparison needs of it."""

    run_dir: Path
    history: Any
    monitor: Any
    report: dict[str, Any]
    config: dict[str, Any] | None


def _open(path: str, profile: str | None) -> _Opened | str:
    """The run at ``path`` read and judged, or why not (a sentence naming the path)."""
    try:
        run_dir = resolve_run(path)
    except (RunDirError, OSError) as exc:
        return _naming(path, str(exc))
    opened = open_judged(run_dir, profile)
    if isinstance(opened, str):
        return _naming(path, opened)
    run, mon = opened
    return _Opened(run_dir, run.history, mon, build_report(run.history, mon.profile, monitor=mon),
                   compare.read_config(run_dir))


def _naming(path: str, why: str) -> str:
    return why if path in why else f"{path}: {why}"  # the user must learn which of the runs failed


def _zone(monitor: Any, term: str) -> str | None:
    try:
        return monitor.zone(term)
    except Exception:  # noqa: BLE001 - a term the profile cannot judge has no zone, the rest still compares
        return None


def _num(x: float | None) -> float | str | None:
    """A JSON-safe number: None, a finite float, or ``nan`` / ``inf`` / ``-inf`` as ``build_report`` writes them."""
    if x is None or math.isfinite(x):
        return x
    return "nan" if x != x else ("inf" if x > 0 else "-inf")


def _terms(runs: list[_Opened], members: list[Member]) -> list[TermComparison]:
    """Every term any run logs in its train steps (first-seen order, then ``total``), compared."""
    names: dict[str, None] = {}
    for o in runs:
        names.update(dict.fromkeys(t for t in o.history.terms if t != "total"))
    out = []
    for term in [*names, "total"]:
        parts = []
        for m, o in zip(members, runs):
            raw = compare.series_of(o.history, term)  # all NaN (a TensorBoard run's total): not present
            ema = debiased_ema(raw, SMOOTHING) if len(raw) else None
            parts.append(compare.member_stats(o.history, m, raw, ema, _zone(o.monitor, term), ALIGN))
        if any(s.present for s, _, _ in parts):  # a term only declared or only evaluated is no curve to compare
            out.append(compare.compare_term(term, parts))
    return out


def _stats(s: TermStats) -> dict[str, Any]:
    return {"present": s.present, "last": _num(s.last), "ema": _num(s.ema), "best": _num(s.best),
            "best_step": s.best_step, "at_common_step": _num(s.at_common), "change": _num(s.change),
            "zone": s.zone, "end_step": s.end_step}


def compare_runs(paths: list[str], profile: str | None) -> dict[str, Any] | tuple[int, str]:
    """Open, judge and compare the runs at ``paths`` (``profile`` for every one): the comparison as one
    JSON-ready dict, or ``(exit code, message)`` when a run (or the profile) cannot be read."""
    try:  # a profile that cannot be read is said once, not pinned on the first run
        load_profile(profile) if profile is not None else None
    except ProfileError as exc:
        return EXIT_UNREADABLE, str(exc)
    with ThreadPoolExecutor(max_workers=len(paths)) as pool:  # reading and judging is mostly I/O and numpy
        opened = list(pool.map(lambda p: _open(p, profile), paths))
    for o in opened:
        if isinstance(o, str):
            return EXIT_UNREADABLE, o
    runs = [o for o in opened if isinstance(o, _Opened)]
    try:  # names from the runs' common folder: two ``train`` folders never look alike
        root: Path | None = Path(os.path.commonpath([o.run_dir for o in runs]))
    except ValueError:  # relative and absolute paths mixed: each run by its folder's name
        root = None
    members = [Member(compare.LABELS[i], run_name(root, o.run_dir) if root else o.run_dir.name)
               for i, o in enumerate(runs)]
    histories = [o.history for o in runs]
    rows = compare.diff_rows([compare.run_facts(o.history, o.config) for o in runs])
    terms = _terms(runs, members)

    def label(i: int | None) -> str | None:
        return None if i is None else members[i].label

    verdicts = [o.report["verdict"] for o in runs]
    return {
        "runs": [{"label": m.label, "name": m.name, "path": str(o.run_dir), "verdict": o.report["verdict"],
                  "status": o.report.get("status"), "step": o.report.get("step"), "profile": o.report.get("profile")}
                 for m, o in zip(members, runs)],
        "align": ALIGN,
        "verdict": max(verdicts, key=lambda v: EXIT_CODES.get(v, 0)),
        "terms": {c.term: {"common_step": _num(c.common_x), "ahead_now": label(c.ahead_now),
                           "ahead_at_common_step": label(c.ahead_common),
                           "only_in": [members[i].label for i in c.only_in],
                           "runs": {m.label: _stats(s) for m, s in zip(members, c.stats)}} for c in terms},
        "differences": [{"key": r.key, "values": {m.label: v for m, v in zip(members, r.values)}} for r in rows],
        "changes": compare.diff_sentences(members, histories, rows),
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and not isinstance(v, bool):
        return f"{v:.4g}"
    return shown(v)  # "nan" / "inf", or a step


def _step(v: Any) -> str:
    return f"{int(v):,}" if isinstance(v, (int, float)) and math.isfinite(v) else "–"


def print_comparison(data: dict[str, Any]) -> None:
    """Print the comparison: a line per run, what differs, then a block per term."""
    runs = data["runs"]
    width = min(40, max(len(shown(r["name"])) for r in runs))
    for r in runs:
        print(f"{r['label']}  {shown(r['name'])[:width]:<{width}}  {shown(r['verdict']).upper():<8} "
              f"{shown(r.get('status')):<10} step {_step(r.get('step'))}")
    print()
    print("differs:" if data["changes"] else "differs: nothing that their starts and run.yaml say")
    for sentence in data["changes"]:
        print(f"  {shown(sentence, MESSAGE_MAX)}")
    print()
    print("per term: EMA at the common step, last value, EMA now, best EMA (its step), zone")
    for term, t in data["terms"].items():
        common = t["common_step"]
        where = (f"only in {', '.join(t['only_in'])}" if t["only_in"]
                 else f"common step {_step(common)}" if isinstance(common, float) else "no common step")
        at = f"at {_step(common)}" if isinstance(common, float) else "at common"
        print(f"\n{shown(term)} · {where}")
        print(f"     {at:>10} {'last':>10} {'ema':>10} {'best':>10} {'(step)':<10} zone")
        for lab, s in t["runs"].items():
            if not s["present"]:
                continue
            ahead = "  ◀ ahead" if t["ahead_now"] == lab else ""
            best_at = f"({_step(s['best_step'])})" if s["best_step"] is not None else ""
            print(f"  {lab}  {_fmt(s['at_common_step']):>10} {_fmt(s['last']):>10} {_fmt(s['ema']):>10} "
                  f"{_fmt(s['best']):>10} {best_at:<10} {shown(s['zone'] or '–'):<8}{ahead}".rstrip())


def report_comparison(paths: list[str], profile: str | None, *, as_json: bool = False) -> int:
    """Run ``traintop report A B [C…]``: print the comparison (or say why not); return the exit code."""
    result = compare_runs(paths, profile)
    if isinstance(result, tuple):
        code, message = result
        print(f"traintop report: {shown(message, MESSAGE_MAX)}", file=sys.stderr)
        return code
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print_comparison(result)
    return EXIT_CODES.get(result["verdict"], EXIT_UNREADABLE)
