"""Run files that are not what they seem: links, FIFOs, devices, huge lines, other accounts' runs.

Each test plays what an attacker (or an accident) leaves in a run directory and checks that
traintop neither writes through it, blocks on it, reads outside the run for it, nor crashes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.accounts import as_other, shared_folder
from tests.tui.fixtures import small_run
from traintop.protocol import ControlInbox, make_command
from traintop.protocol.safefile import UnsafeFileError
from traintop.sources.find import run_file
from traintop.sources.jsonl.reader import RunReader

REPO = Path(__file__).resolve().parents[2]
HANG = 30  # seconds after which a command that should answer at once is taken as hung


def traintop(*args: str, timeout: float = HANG) -> subprocess.CompletedProcess[str]:
    """``traintop ARGS`` as a real process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "traintop.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return small_run(tmp_path / "logs")


def in_thread(fn, timeout: float = HANG):  # noqa: ANN001, ANN201 - any call, its result
    """``fn()`` in a daemon thread; fails the test (instead of hanging it) when it does not return."""
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{fn} blocked for {timeout} s"
    return out[0]


# -- point 8: no write through a symlinked control.jsonl ----------------------------------------------

def test_ctl_never_writes_through_a_symlinked_control_file(run: Path, tmp_path: Path) -> None:
    victim = tmp_path / "bashrc"
    victim.write_text("export PS1='$ '\n")
    (run / "control.jsonl").unlink(missing_ok=True)
    (run / "control.jsonl").symlink_to(victim)
    done = traintop("ctl", str(run), "pause")
    assert done.returncode == 2, done
    assert "symbolic link" in done.stderr and "Traceback" not in done.stderr
    assert victim.read_text() == "export PS1='$ '\n"
    with pytest.raises(UnsafeFileError, match="symbolic link"):  # the app's keys send through the same inbox
        ControlInbox(run).send(make_command("pause"))
    assert victim.read_text() == "export PS1='$ '\n"


# -- point 10: FIFOs and devices never block or spin ----------------------------------------------------

def test_ctl_on_a_fifo_control_file_answers_at_once(run: Path) -> None:
    (run / "control.jsonl").unlink(missing_ok=True)
    os.mkfifo(run / "control.jsonl")
    done = traintop("ctl", str(run), "pause")
    assert done.returncode == 2 and "FIFO" in done.stderr, done


def test_report_on_a_fifo_events_file_answers_at_once(run: Path) -> None:
    (run / "events.jsonl").unlink()
    os.mkfifo(run / "events.jsonl")
    done = traintop("report", str(run))
    assert "FIFO" in done.stdout + done.stderr and "Traceback" not in done.stderr, done


@pytest.mark.parametrize("swap", ["fifo", "dev-zero", "link-out"])
def test_a_followed_events_file_swapped_for_a_non_file_is_told_once_and_never_read(
        run: Path, tmp_path: Path, swap: str) -> None:
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"v": 1, "type": "run_end", "t": 1, "seq": 1, "status": "LEAKED", "step": 1}\n')
    reader = RunReader(run, use_cache=False)
    reader.open()
    steps = reader.history.last_step
    events = run / "events.jsonl"
    events.unlink()
    if swap == "fifo":
        os.mkfifo(events)
    else:
        events.symlink_to("/dev/zero" if swap == "dev-zero" else secret)
    first = in_thread(reader.poll)
    told = [n for n in first.notices if n.kind == "unreadable"]
    assert len(told) == 1, first.notices
    assert ("FIFO" if swap == "fifo" else "symbolic link") in told[0].message
    for _ in range(5):  # still refused, without a notice per poll, and without reading a byte of it
        assert not in_thread(reader.poll).notices
    assert "LEAKED" not in str(reader.history.run_end) and reader.history.last_step in (steps, None)
    stop = threading.Event()
    follower = threading.Thread(target=reader.follow, args=(lambda _u: None, stop), daemon=True)
    follower.start()
    stop.set()
    reader.wake()
    follower.join(HANG)
    assert not follower.is_alive(), "following a FIFO must stop when asked (the app's q)"
    reader.close()


# -- point 2: an event names only files of its own run --------------------------------------------------

@pytest.mark.parametrize("named", ["/etc/passwd", "../../../../../../etc/passwd", "samples/escape.wav",
                                   "samples/fifo.wav", "samples", ""])
def test_a_sample_path_outside_the_run_or_not_a_file_is_refused(run: Path, named: str) -> None:
    (run / "samples").mkdir(exist_ok=True)
    (run / "samples" / "escape.wav").symlink_to("/etc/passwd")
    os.mkfifo(run / "samples" / "fifo.wav")
    with pytest.raises(UnsafeFileError):
        run_file(run, named)  # stat only: a FIFO is never opened


def test_a_sample_inside_the_run_is_its_real_file(run: Path) -> None:
    (run / "samples").mkdir(exist_ok=True)
    (run / "samples" / "a.wav").write_bytes(b"RIFF")
    (run / "samples" / "latest.wav").symlink_to("a.wav")  # a link that stays inside the run is fine
    assert run_file(run, "samples/a.wav") == (run / "samples" / "a.wav").resolve()
    assert run_file(run, str((run / "samples" / "latest.wav").resolve())) == (run / "samples" / "a.wav").resolve()


# -- point 12: a huge line is skipped while streaming, never held whole -----------------------------------

def test_report_memory_does_not_grow_with_one_lines_length(run: Path) -> None:
    line_mib = 384
    with (run / "events.jsonl").open("ab") as fh:
        fh.write(b'{"v": 1, "type": "step", "junk": "')
        block = b"x" * (1 << 20)
        for _ in range(line_mib):
            fh.write(block)
        fh.write(b'"}\n')
    probe = ("import resource, subprocess, sys; "
             "subprocess.run([sys.executable, '-m', 'traintop.cli', 'report', '--json', sys.argv[1]], "
             "stdout=subprocess.DEVNULL); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)")
    done = subprocess.run([sys.executable, "-c", probe, str(run)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    peak_mib = int(done.stdout.strip())
    assert peak_mib < line_mib // 2, f"report peaked at {peak_mib} MiB reading a {line_mib} MiB line"


# -- point 15: other accounts' private runs are one line, never a traceback ----------------------------

def test_runs_and_ctl_by_another_account_say_one_line(tmp_path: Path) -> None:
    with shared_folder() as shared:
        small_run(shared, "mine-20261204-100000")  # root's run: 0700, as the trainer makes them
        other_open = small_run(shared, "open-20261204-100000")
        other_open.chmod(0o755)
        (other_open / "events.jsonl").chmod(0o644)
        listed = as_other(["python", "-m", "traintop.cli", "runs", str(shared)])
        assert listed.returncode == 0, listed
        assert "Traceback" not in listed.stderr and "open-20261204-100000" in listed.stdout
        assert "not readable by this account" in listed.stderr and "mine-20261204-100000" in listed.stderr
        denied = as_other(["python", "-m", "traintop.cli", "ctl", str(shared / "mine-20261204-100000"), "pause"])
        assert denied.returncode == 2, denied
        assert "Traceback" not in denied.stderr and len(denied.stderr.strip().splitlines()) == 1
        assert "permission denied" in denied.stderr
        assert not (shared / "mine-20261204-100000" / "control.jsonl").exists()


# -- an event never makes us open a file outside the run: the run's own profile ---------------------------

def test_a_profile_file_named_by_a_run_is_never_opened(tmp_path: Path) -> None:
    from traintop.health.loader import choose_profile
    from traintop.resources import HEALTH_DIR
    from traintop.sources.jsonl.load import load_history

    planted = tmp_path / "planted.yaml"  # a valid profile, but the run may not choose files
    planted.write_text((HEALTH_DIR / "vits.yaml").read_text().replace("name: vits", "name: planted", 1))
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    for named in (str(planted), str(fifo), "../../planted.yaml"):
        run = small_run(tmp_path / named.replace("/", "_"))
        text = (run / "events.jsonl").read_text().replace('"profile":"xtts"', f'"profile":"{named}"', 1)
        (run / "events.jsonl").write_text(text)
        history, _ = load_history(run / "events.jsonl")
        assert history.run_start["profile"] == named
        chosen = in_thread(lambda history=history: choose_profile(history))
        assert chosen.name != "planted" and chosen.path != str(fifo)
    assert choose_profile(history, str(planted)).name == "planted"  # given by the person, it is used


@pytest.mark.parametrize("line", [b'{"v":1,"type":"step","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                                  b'{"v":1,"type":"step","x":NaN,"y":' + b"[" * 100_000 + b"]" * 100_000 + b"}"],
                         ids=["json", "json-with-nan"])
def test_a_line_nested_too_deep_is_a_skipped_line_not_a_crash(run: Path, line: bytes) -> None:
    with (run / "events.jsonl").open("ab") as fh:
        fh.write(line + b"\n")
    done = traintop("report", str(run))
    assert "Traceback" not in done.stderr and "RecursionError" not in done.stderr, done.stderr[-2000:]
    assert "1 unreadable line(s) skipped" in done.stdout, done.stdout[-2000:]


def test_a_tensorboard_record_too_big_for_one_read_is_told_once_not_reread(tmp_path: Path) -> None:
    import struct

    from tests.tensorboard.writers import write_f5
    from traintop.sources.source import open_run
    from traintop.sources.tensorboard.record import masked_crc

    run = write_f5(tmp_path / "runs", steps=50)
    (events,) = run.glob("events.out.tfevents.*")
    length = 80 << 20  # a valid length CRC, but more than the reader reads at once (64 MiB)
    with events.open("ab") as fh:
        fh.write(struct.pack("<Q", length) + struct.pack("<I", masked_crc(struct.pack("<Q", length))))
        fh.truncate(fh.tell() + length + 4)  # sparse: no disk used
    reader = open_run(run, use_cache=False)
    reader.open()
    for _ in range(3):
        in_thread(reader.poll)
    told = [n for n in reader.history.notices if f"claims {length} bytes" in n.message]
    assert len(told) == 1, reader.history.notices
    assert reader.history.last_step == 49
    reader.close()
