"""``traintop report`` on a run whose names are hostile and whose events were damaged (issue 10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import unicodedata
from pathlib import Path

from traintop.protocol import EventWriter

ROOT = Path(__file__).resolve().parents[2]
ESC_TERM = "\x1b]2;pwned\x07\x1b[2Jloss"


def _traintop(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "traintop", *args], capture_output=True, cwd=ROOT,
                          env=env, timeout=120)


def hostile_run(root: Path) -> Path:
    """Terms named ``[/]`` and with escape sequences, a recipe named with markup, a garbage line."""
    run = root / "hostile"
    w = EventWriter(run)
    terms = {"[/]": 1.0, ESC_TERM: 0.5}
    w.emit("run_start", run="\x1b[31mred-run", recipe="[bold]x", profile=None, terms=terms,
           planned_steps=10, planned_epochs=None, host="h", pid=1, versions={}, resumed_from=None)
    for step in range(1, 6):
        w.emit("step", step=step, epoch=0, losses={"[/]": 1.0 / step, ESC_TERM: 2.0}, weights=terms,
               total=1.0, lr=1e-4, grad_norm=None, step_time=0.1, loader_time=0.0)
    w.emit("alert", kind="nonfinite", term="[/]", message="[/] bad \x1b[2J")
    w.close()
    with (run / "events.jsonl").open("ab") as fh:
        fh.write(b"not json at all\n")
    return run


def test_report_prints_hostile_names_as_text_and_says_what_it_skipped(tmp_path: Path) -> None:
    run = hostile_run(tmp_path)
    done = _traintop("report", str(run))
    assert done.returncode in (0, 1, 2) and b"Traceback" not in done.stderr, done.stderr.decode()
    out = done.stdout.decode()
    assert b"\x1b" not in done.stdout and b"\x07" not in done.stdout  # nothing reaches the terminal raw
    assert "[/]" in out and "\\x1b]2;pwned\\x07" in out
    assert "1 unreadable line(s) skipped" in out and "byte" in out
    as_json = _traintop("report", str(run), "--json")
    report = json.loads(as_json.stdout)
    assert report["data"]["bad_lines"] == 1 and report["data"]["notices"][0]["kind"] == "bad_line"
    assert set(report["terms"]) >= {"[/]", ESC_TERM}  # JSON keeps the names exact (escaped by JSON)


def test_report_on_clean_data_says_so(tmp_path: Path) -> None:
    run = tmp_path / "clean"
    w = EventWriter(run)
    w.emit("run_start", run="clean", recipe="r", profile=None, terms={"loss": 1.0}, planned_steps=3,
           planned_epochs=None, host="h", pid=1, versions={}, resumed_from=None)
    w.emit("step", step=1, epoch=0, losses={"loss": 1.0}, weights={"loss": 1.0}, total=1.0, lr=1e-4,
           grad_norm=None, step_time=0.1, loader_time=0.0)
    w.emit("run_end", status="completed", step=1, error=None)
    w.close()
    done = _traintop("report", str(run))
    assert "Data: every event line was read." in done.stdout.decode()
    assert json.loads(_traintop("report", str(run), "--json").stdout)["data"]["bad_lines"] == 0


# Every control sequence is followed by a marker word, so a test can tell the run's bytes from a
# terminal library's own escapes. No "/" in it: it also names a run directory.
PAYLOAD = ("\x1b]2;PWNED\x07\x1b]52;c;UFdORUQ=\x07\x1b]8;;x:evil\x1b\\CLICK\x1b]8;;\x1b\\\x1b[2JWIPED"
           "\rCRX\bBSX\x9bC1X\x07BELX\x7fDELX\u202eRLOX\u2066LRIX\u061cALMX\u200bZWSX\ufeffBOMX\u2028LSX")
TERM = "mel" + PAYLOAD
BIG = "big" + "x" * 10240 + PAYLOAD  # 10 KB: shown cut, with its length
# what must never reach a terminal from the run: each sequence as the run wrote it
RAW_SEQUENCES = ("\x1b]2;PWNED", "\x1b]52;", "\x1b]8;;x:evil", "\x1b[2JWIPED", "\rCRX", "\bBSX", "\x9b", "\x07BELX",
                 "\x7fDELX", "\u202e", "\u2066", "\u061c", "\u200b", "\ufeff", "\u2028")


def payload_run(root: Path, name: str = "run" + PAYLOAD) -> Path:
    """A run whose every name and message carries ``PAYLOAD`` (escapes, C1, bidi, zero-width) and a 10 KB name:
    terms, run, recipe, statuses, alerts, acks (reasons, replays), checkpoints, samples, a resume, a bad line, the
    end."""
    run = root / name
    w = EventWriter(run)
    terms = {TERM: 1.0, BIG: 0.5, "loss": 1.0}
    start = {"run": "r" + PAYLOAD, "recipe": BIG, "profile": None, "terms": terms, "planned_steps": 40,
             "planned_epochs": None, "host": "h", "pid": 1, "versions": {"v": PAYLOAD}}
    w.emit("run_start", **start, resumed_from=None)
    for step in range(1, 21):
        losses = {TERM: 1.0 / step, BIG: 2.0 - step / 20, "loss": 1.0 / step}
        if step >= 19:
            losses[TERM] = float("nan")  # health's own non-finite alert names the term (still active at the end)
        w.emit("step", step=step, epoch=0, losses=losses, weights=terms, total=1.0, lr=1e-4, grad_norm=None,
               step_time=0.1, loader_time=0.0)
        if step == 5:
            w.emit("system", gpus=[{"index": 0, "util": 50.0, "mem_used": 1.0, "mem_total": 2.0, "temp": 50.0,
                                    "power": 100.0}], cpu=10.0, rss=1e9)
        if step == 10:
            w.emit("run_start", **start, resumed_from={"run_dir": "from" + PAYLOAD, "step": "s" + PAYLOAD})
    w.emit("alert", kind="nonfinite" + PAYLOAD, term=TERM, message=BIG)
    w.emit("checkpoint", step=10, path="ckpt" + PAYLOAD, is_best=True, metric=1.0)
    w.emit("sample", step=10, wav="s" + PAYLOAD + ".wav", reference="ref" + PAYLOAD, text="txt" + PAYLOAD,
           mel="mel" + PAYLOAD + ".npy")
    w.emit("sample", step=12, error="sampling" + PAYLOAD)
    w.emit("ack", id="c0ffee01", status="rejected", reason="why" + PAYLOAD, step=12, state={TERM: 1.0})
    w.emit("ack", id="c0ffee02", status="applied", reason="", step=13, state={}, replay=True,
           original_step="orig" + PAYLOAD)
    w.emit("state", state="paused" + PAYLOAD)
    w.emit("run_end", status="failed" + PAYLOAD, step=21, error="error" + PAYLOAD)
    w.close()
    with (run / "events.jsonl").open("ab") as fh:
        fh.write(("not json" + PAYLOAD + "\n").encode())
    return run


def assert_no_payload(stream: str, what: str) -> None:
    """No sequence of ``PAYLOAD`` reached ``stream`` as the run wrote it (a terminal's own escapes may)."""
    leaked = [repr(s) for s in RAW_SEQUENCES if s in stream]
    assert not leaked, f"{what}: the run's bytes reached the terminal raw: {', '.join(leaked)}"


def assert_plain(out: bytes, what: str) -> None:
    """Piped output (no terminal, no colours): no control or invisible character but newlines."""
    text = out.decode("utf-8")
    assert_no_payload(text, what)
    bad = sorted({f"U+{ord(c):04X}" for c in text if c != "\n" and unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")})
    assert not bad, f"{what}: control characters in the output: {bad}"


def test_report_and_its_json_print_no_byte_of_a_hostile_run_raw(tmp_path: Path) -> None:
    run = payload_run(tmp_path)
    done = _traintop("report", str(run))
    assert b"Traceback" not in done.stderr, done.stderr.decode()
    assert_plain(done.stdout + done.stderr, "report")
    out = done.stdout.decode()
    assert "\\x1b]2;PWNED\\x07" in out and "\\u202eRLOX" in out and "\\x9bC1X" in out  # shown, as escapes
    assert f"…({len(BIG)}chars)" in out.replace("\n", "").replace("│", "").replace(" ", "")  # the 10 KB name, cut
    as_json = _traintop("report", str(run), "--json")
    assert_plain(as_json.stdout + as_json.stderr, "report --json")
    assert TERM in json.loads(as_json.stdout)["terms"]  # JSON keeps the names exact, escaped by JSON


def test_report_follow_prints_no_byte_of_a_hostile_run_raw(tmp_path: Path) -> None:
    run = payload_run(tmp_path)
    done = _traintop("report", str(run), "--follow")  # the run has ended: follow reads it, judges, stops
    assert b"Traceback" not in done.stderr, done.stderr.decode()
    assert_plain(done.stdout + done.stderr, "report --follow")
    last = done.stdout.decode().splitlines()[-1]
    assert last.startswith("run failed\\x1b]2;PWNED\\x07") and last.endswith(": verdict critical"), last
    as_json = _traintop("report", str(run), "--follow", "--json")
    assert_plain(as_json.stdout + as_json.stderr, "report --follow --json")


def test_runs_prints_no_byte_of_a_hostile_run_raw(tmp_path: Path) -> None:
    payload_run(tmp_path)
    for args in ((), ("--json",)):
        done = _traintop("runs", str(tmp_path), *args)
        assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode()
        assert_plain(done.stdout + done.stderr, f"runs {' '.join(args)}")
        assert "PWNED" in done.stdout.decode()


def _ack_each_command(run: Path, stop: threading.Event, **ack: object) -> None:
    """A stand-in trainer: acks every command that reaches ``control.jsonl`` with ``ack``'s fields."""
    control, seen = run / "control.jsonl", 0
    while not stop.is_set():
        lines = control.read_bytes().split(b"\n")[:-1] if control.exists() else []  # whole lines only
        for line in lines[seen:]:
            w = EventWriter(run)
            w.emit("ack", id=json.loads(line)["id"], step=22, **ack)
            w.close()
        seen = len(lines)
        time.sleep(0.05)


def test_ctl_prints_no_byte_of_a_hostile_run_raw(tmp_path: Path) -> None:
    run = payload_run(tmp_path)
    refused = _traintop("ctl", str(run), "set-weight", "nope", "1")  # the error lists the run's terms
    assert refused.returncode == 2 and b"its terms are big" in refused.stderr, refused.stderr.decode()
    assert_plain(refused.stdout + refused.stderr, "ctl (a refused term)")
    for ack, code in (({"status": "rejected", "reason": "no" + PAYLOAD, "state": {}}, 1),
                      ({"status": "applied", "reason": "ok" + PAYLOAD, "state": {TERM: 1.0}}, 0)):
        stop = threading.Event()
        trainer = threading.Thread(target=_ack_each_command, args=(run, stop), kwargs=ack, daemon=True)
        trainer.start()
        try:
            done = _traintop("ctl", str(run), "set-weight", TERM, "0.5", "--wait", "30")
        finally:
            stop.set()
            trainer.join()
        assert done.returncode == code and b"PWNED" in done.stdout + done.stderr, done.stderr.decode()
        assert_plain(done.stdout + done.stderr, f"ctl ({ack['status']})")
