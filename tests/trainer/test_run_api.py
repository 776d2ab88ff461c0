"""``traintop.trainer.run.Run``: the instrumentation API for any loop, driven in-process."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.trainer.conftest import REPO, read_events
from traintop.protocol.control import Command, ControlInbox
from traintop.protocol.events import validate_event
from traintop.trainer.run import CommandRejected, Run


def test_importing_run_pulls_in_neither_torch_nor_textual() -> None:
    code = ("import sys, traintop.trainer.run, traintop.trainer.system; "
            "bad = [m for m in ('torch', 'textual', 'TTS', 'trainer') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_trainer_cli_module_is_light_at_import() -> None:
    code = ("import sys, traintop.trainer.cli; "
            "bad = [m for m in ('torch', 'TTS', 'trainer', 'textual') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_a_small_loop_writes_a_valid_run(tmp_path: Path) -> None:
    run = Run.start(tmp_path, "custom", terms={"mel": 1.0, "kl": 0.1}, planned_steps=3,
                    system_interval=0.05)
    for step in range(1, 4):
        run.log_step(step, 0, {"mel": 2.0 / step, "kl": 10.0}, lr=1e-3, grad_norm=1.5,
                     step_time=0.01, loader_time=0.001)
        assert run.poll(step) == []
    run.log_eval(3, 0, {"mel": 0.9, "kl": 9.0})
    run.log_checkpoint(3, tmp_path / "ckpt.pth", is_best=True, metric=1.8)
    run.log_sample(3, error="RuntimeError: cuFFT error")
    time.sleep(0.15)
    run.end("completed")
    events = read_events(run.run_dir)
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert all(validate_event(e) == [] for e in events)
    step1 = next(e for e in events if e["type"] == "step")
    assert step1["weights"] == {"mel": 1.0, "kl": 0.1}
    assert step1["total"] == pytest.approx(2.0 + 0.1 * 10.0)
    assert any(e["type"] == "system" for e in events)
    assert events[-1] == {**events[-1], "type": "run_end", "status": "completed", "step": 3}
    with pytest.raises((OSError, ValueError)):
        run.writer.emit("step")  # closed after end


def test_commands_handlers_and_acks(tmp_path: Path) -> None:
    run = Run.start(tmp_path, "custom", terms={"mel": 1.0}, system_interval=60)
    inbox = ControlInbox(run.run_dir)
    saved: list[str] = []
    run.on("save", lambda c: saved.append(c.id) or {"path": "x.pth"})
    run.on("sample", lambda c: (_ for _ in ()).throw(CommandRejected("no reference clip")))
    a = inbox.send_new("set_weight", term="mel", value=3.0)
    b = inbox.send_new("save")
    c = inbox.send_new("sample")
    d = inbox.send_new("scale_lr", factor=0.5)  # no handler: handed back to the caller
    e = inbox.send_new("set_weight", term="nope", value=1.0)
    left = run.poll(7, unhandled="return")
    assert [x.id for x in left] == [d.id] and run.weights == {"mel": 3.0} and saved == [b.id]
    run.ack(d.id, "applied", state={"lr": 0.5})
    f = inbox.send_new("eval")
    assert run.poll(8) == []  # by default a command nobody handles is rejected, with the reason
    run.end("completed")
    acks = {x["id"]: x for x in read_events(run.run_dir) if x["type"] == "ack"}
    assert acks[a.id]["status"] == "applied" and acks[a.id]["state"]["weight"] == 3.0
    assert acks[b.id]["state"] == {"path": "x.pth"} and acks[b.id]["step"] == 7
    assert acks[c.id]["status"] == "rejected" and acks[c.id]["reason"] == "no reference clip"
    assert acks[d.id]["status"] == "applied"
    assert acks[e.id]["status"] == "rejected" and "no loss term 'nope'" in acks[e.id]["reason"]
    assert acks[f.id]["status"] == "rejected" and "no handler" in acks[f.id]["reason"]


def test_pause_blocks_until_resume_and_defers_eval(tmp_path: Path) -> None:
    run = Run.start(tmp_path, "custom", terms={"mel": 1.0}, system_interval=0.05)
    run.poll_interval = 0.01
    inbox = ControlInbox(run.run_dir)
    inbox.send_new("pause")
    run.poll(1)
    assert run.paused
    done = threading.Event()

    def wait() -> None:
        run.wait_while_paused(1)
        done.set()

    t = threading.Thread(target=wait)
    t.start()
    ev = inbox.send_new("eval")
    time.sleep(0.3)
    assert not done.is_set()
    inbox.send(Command("resume"))
    assert done.wait(5)
    t.join()
    # deferred while paused, handed over after resume
    assert [x.id for x in run.poll(2, unhandled="return")] == [ev.id]
    run.end("completed")
    events = read_events(run.run_dir)
    states = [x["state"] for x in events if x["type"] == "state"]
    assert states == ["running", "paused", "running"]
    assert any(x["type"] == "ack" and x["id"] == ev.id and x["status"] == "deferred" for x in events)
    assert sum(x["type"] == "system" for x in events) >= 2  # heartbeat while paused


def test_state_dict_restores_weights_and_control_position(tmp_path: Path) -> None:
    run = Run.start(tmp_path, "custom", terms={"mel": 1.0}, system_interval=60)
    inbox = ControlInbox(run.run_dir)
    first = inbox.send_new("set_weight", term="mel", value=2.5)
    run.poll(1)
    state = run.state_dict()
    run.end("stopped")
    again = Run.start(tmp_path, "custom", terms={"mel": 1.0}, run_dir=run.run_dir,
                      system_interval=60)
    again.load_state_dict(state)
    second = inbox.send_new("set_weight", term="mel", value=4.0)
    again.poll(2)
    again.end("completed")
    acks = [x for x in read_events(run.run_dir) if x["type"] == "ack"]
    assert [x["id"] for x in acks] == [first.id, second.id]  # the first one was not re-applied
    assert again.weights == {"mel": 4.0}
    events = read_events(run.run_dir)
    assert [x["seq"] for x in events] == list(range(len(events)))


def test_a_command_finished_off_the_loop_is_deferred_then_answered_once(tmp_path: Path) -> None:
    from traintop.trainer.run import CommandPending

    run = Run.start(tmp_path, "custom", terms={"mel": 1.0}, system_interval=60)
    done = threading.Event()

    def sample(c: Command) -> dict:
        # another thread finishes the work and answers it, as the off-loop sampler does
        threading.Thread(target=lambda: (run.ack_later(c.id, "applied", state={"wavs": ["a.wav"]}),
                                         done.set())).start()
        raise CommandPending("made off the loop: the answer follows")

    run.on("sample", sample)
    inbox = ControlInbox(run.run_dir)
    first = inbox.send_new("sample")
    run.poll(1)
    assert done.wait(10)
    assert run.state_dict()["control"]["offset"] == 0  # not handled until its answer is written
    run.poll(2)  # the answer is written at the next boundary, from the loop's own thread
    assert run.state_dict()["control"]["offset"] > 0
    second = inbox.send_new("sample")
    run.on("sample", lambda c: (_ for _ in ()).throw(CommandPending("never answered")))
    run.poll(3)
    run.end("completed", 3)
    acks = [e for e in read_events(run.run_dir) if e["type"] == "ack"]
    assert [(a["id"], a["status"]) for a in acks] == [
        (first.id, "deferred"), (first.id, "applied"), (second.id, "deferred"), (second.id, "rejected")]
    assert acks[1]["state"] == {"wavs": ["a.wav"]} and acks[1]["step"] == 2
    assert acks[3]["reason"] == "the run ended (completed) before it finished"


def test_ctl_wait_follows_a_deferred_sample_to_its_final_answer(tmp_path: Path) -> None:
    from traintop.trainer.run import CommandPending

    run = Run.start(tmp_path, "custom", terms={"mel": 1.0}, system_interval=60)

    def sample(c: Command) -> dict:
        threading.Timer(1.5, lambda: run.ack_later(c.id, "applied", state={"wavs": ["samples/x.wav"]})).start()
        raise CommandPending("made off the loop: the answer follows")

    run.on("sample", sample)
    stop = threading.Event()

    def loop() -> None:  # a training loop: a step boundary every 50 ms
        step = 0
        while not stop.is_set():
            step += 1
            run.log_step(step, 0, {"mel": 1.0})
            run.poll(step)
            time.sleep(0.05)

    worker = threading.Thread(target=loop)
    worker.start()
    try:
        res = subprocess.run([sys.executable, "-m", "traintop.cli", "ctl", str(run.run_dir), "sample",
                              "--wait", "60"], cwd=REPO, capture_output=True, text=True, timeout=120)
    finally:
        stop.set()
        worker.join()
    run.end("completed")
    assert res.returncode == 0, res.stderr
    last = res.stdout.splitlines()[-1]
    assert last.startswith("applied at step") and "samples/x.wav" in last, res.stdout


def test_commands_sent_while_the_loop_is_busy_are_deferred_within_a_second(tmp_path: Path) -> None:
    """``keep_answering``: no poll for a while (coqui evaluating) → ``deferred`` at once, applied in order."""
    run = Run.start(tmp_path, "custom", terms={"mel": 1.0}, system_interval=60)
    inbox = ControlInbox(run.run_dir)
    run.on("save", lambda c: {"path": "x.pth"})
    run.poll(3)
    run.keep_answering(lambda: "coqui is evaluating: applies at the next step", after=0.3)
    pause = inbox.send_new("pause")
    save = inbox.send_new("save")  # allowed while paused: applied after the pause
    weight = inbox.send_new("set_weight", term="mel", value=2.0)
    deadline = time.monotonic() + 10
    while sum(e["type"] == "ack" for e in read_events(run.run_dir)) < 3:
        assert time.monotonic() < deadline, "no deferred acks from the watcher"
        time.sleep(0.05)
    first = [e for e in read_events(run.run_dir) if e["type"] == "ack"]
    assert [(e["id"], e["status"]) for e in first] == [(pause.id, "deferred"), (save.id, "deferred"),
                                                       (weight.id, "deferred")]
    assert first[0]["reason"] == "coqui is evaluating: applies at the next step"
    assert run.weights == {"mel": 1.0}  # nothing applied off the loop
    run.poll(4)  # the next step boundary applies them, in order
    assert run.paused and run.weights == {"mel": 2.0}
    run.end("completed")
    finals = [e for e in read_events(run.run_dir) if e["type"] == "ack" and e["status"] != "deferred"]
    assert [(e["id"], e["status"], e["step"]) for e in finals] == [
        (pause.id, "applied", 4), (save.id, "applied", 4), (weight.id, "applied", 4)]


def test_a_stop_is_answered_with_its_checkpoint_or_why_there_is_none(tmp_path: Path) -> None:
    """``confirm_stop``: ``ctl stop --wait`` exits 0 only when the final checkpoint was written."""
    for written, status in ((True, "applied"), (False, "rejected")):
        run = Run.start(tmp_path, f"stop-{written}", terms={"mel": 1.0}, system_interval=60)
        run.confirm_stop = True
        stop = ControlInbox(run.run_dir).send_new("stop")
        run.poll(5)
        assert run.should_stop
        if written:
            run.confirm_stopped(run.run_dir / "checkpoints" / "checkpoint_5.pth")
        else:
            run.confirm_stopped(None, "could not write checkpoint_5.pth (No space left on device)")
        run.end("stopped")
        acks = [e for e in read_events(run.run_dir) if e["type"] == "ack" and e["id"] == stop.id]
        assert [a["status"] for a in acks] == ["deferred", status]
        if written:
            assert acks[1]["state"]["checkpoint"].endswith("checkpoint_5.pth")
        else:
            assert "No space left" in acks[1]["reason"] and "stopped at step 5" in acks[1]["reason"]
