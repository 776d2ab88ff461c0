"""`traintop ctl` and `traintop --help` as a person or a script uses them (real subprocesses)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from traintop.protocol.control import ControlReader
from traintop.protocol.writer import EventWriter

SUBCOMMANDS = ["train", "watch", "ctl", "report", "demo", "runs", "sample"]


def traintop(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "traintop", *args], capture_output=True, text=True,
                          timeout=timeout)


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    with EventWriter(run) as w:
        w.emit("run_start", run="run", recipe="vits_tiny", profile="vits", terms={"loss_mel": 45.0, "loss_kl": 1.0},
               planned_steps=10, planned_epochs=None, host="h", pid=1, versions={}, resumed_from=None)
    return run


def _acker(run: Path, stop: threading.Event, trainer_terms: list[str]) -> None:
    """The trainer's side of the protocol for ctl tests: the real ControlReader and EventWriter."""
    reader = ControlReader(run, terms=trainer_terms)
    writer = EventWriter(run)
    while not stop.is_set():
        for d in reader.poll():
            writer.emit("ack", id=d.id, status="applied" if d.accepted else "rejected", reason=d.reason,
                        step=3, state=d.command.args if d.accepted else {})
        time.sleep(0.02)
    writer.close()


def test_help_lists_every_subcommand_and_each_has_examples() -> None:
    out = traintop("--help")
    assert out.returncode == 0
    for name in SUBCOMMANDS:
        assert name in out.stdout
        sub = traintop(name, "--help")
        assert sub.returncode == 0, sub.stderr
        assert "examples:" in sub.stdout and f"traintop {name}" in sub.stdout


@pytest.mark.parametrize(("args", "fragment"), [
    (["set-weight", "loss_mel"], "set-weight takes TERM VALUE"),
    (["set-weight", "loss_mel", "abc"], "VALUE must be a number"),
    (["set-weight", "loss_mel", "nan"], "must be finite"),
    (["set-weight", "loss_mel", "1e309"], "must be finite"),
    (["set-weight", "loss_spk", "1"], "no loss term 'loss_spk'"),
    (["scale-lr", "0"], "outside (0, 10]"),
    (["pause", "now"], "pause takes no arguments"),
])
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path: Path, args, fragment) -> None:
    run = _run_dir(tmp_path)
    out = traintop("ctl", str(run), *args)
    assert out.returncode == 2
    assert fragment in out.stderr
    assert not (run / "control.jsonl").exists()


def test_missing_run_directory_is_named(tmp_path: Path) -> None:
    out = traintop("ctl", str(tmp_path / "nope"), "pause")
    assert out.returncode == 2 and "nope: no such run directory" in out.stderr


def test_wait_exits_0_when_applied_and_1_when_rejected(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    stop = threading.Event()
    # the trainer knows only loss_kl, so it rejects a weight for loss_mel that ctl could not rule out
    thread = threading.Thread(target=_acker, args=(run, stop, ["loss_kl"]), daemon=True)
    thread.start()
    try:
        ok = traintop("ctl", str(run), "set-weight", "loss_kl", "0.5", "--wait", "20")
        assert ok.returncode == 0, ok.stderr
        assert "applied at step 3" in ok.stdout
        line = orjson.loads((run / "control.jsonl").read_bytes().splitlines()[0])
        assert line["cmd"] == "set_weight" and line["args"] == {"term": "loss_kl", "value": 0.5}
        bad = traintop("ctl", str(run), "set-weight", "loss_mel", "30", "--wait", "20")
        assert bad.returncode == 1
        assert "rejected: set_weight: this run has no loss term 'loss_mel'" in bad.stderr
    finally:
        stop.set()
        thread.join()


def test_wait_times_out_with_exit_2(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    out = traintop("ctl", str(run), "pause", "--wait", "0.5")
    assert out.returncode == 2 and "no ack" in out.stderr


def test_runs_lists_a_folder(tmp_path: Path) -> None:
    _run_dir(tmp_path)
    out = traintop("runs", str(tmp_path))
    assert out.returncode == 0 and "vits_tiny" in out.stdout and "run" in out.stdout


def test_runs_shows_long_names_whole_unless_a_terminal_is_too_narrow(tmp_path: Path) -> None:
    """A coqui run name plus the time is over 40 characters; names differ at their end."""
    from traintop.commands.runs import cut_middle, name_width

    long = "GPT_XTTS_v2.0_LJSpeech_FT-20261204-171830"
    with EventWriter(tmp_path / long) as w:
        w.emit("run_start", run=long, recipe="coqui-script", profile="xtts-gpt", terms={"loss_mel_ce": 1.0},
               planned_steps=None, planned_epochs=None, host="h", pid=1, versions={}, resumed_from=None)
    out = traintop("runs", str(tmp_path))  # a pipe: every name whole
    assert out.returncode == 0 and long in out.stdout, out.stdout
    assert name_width([long], tty=False) == len(long)
    narrow = cut_middle(long, 30)
    assert len(narrow) == 30 and narrow.endswith("20261204-171830") and narrow.startswith("GPT_XTTS")
