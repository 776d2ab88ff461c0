"""kill -9 in the middle of a run, then --resume: the run continues where its checkpoint left it."""

from __future__ import annotations

from collections import Counter

from tests.trainer.conftest import QUICK
from traintop.protocol.control import ControlInbox
from traintop.protocol.events import decode_line


def _all_lines(run_dir) -> tuple[list[dict], int]:
    events, torn = [], 0
    for line in (run_dir / "events.jsonl").read_bytes().split(b"\n"):
        if not line.strip():
            continue
        try:
            events.append(decode_line(line))
        except ValueError:
            torn += 1  # the line the killed writer was in the middle of
    return events, torn


def test_kill9_then_resume_continues_exactly(start_trainer) -> None:
    p = start_trainer("xtts_tiny", "--max-steps", "400", *QUICK, "--set", "sample.enabled=false",
                      "--set", "cadence.save_every=3")
    p.wait_event(lambda e: e["type"] == "step", what="first step")
    inbox = ControlInbox(p.run_dir)
    sw = inbox.send_new("set_weight", term="loss_text_ce", value=0.2)
    sc = inbox.send_new("scale_lr", factor=0.5)
    ack = p.wait_event(lambda e: e["type"] == "ack" and e["id"] == sc.id, what="scale_lr ack")
    ckpt = p.wait_event(lambda e: e["type"] == "checkpoint" and e["step"] > ack["step"],
                        what="checkpoint after the commands")
    first_life_next = p.wait_event(lambda e: e["type"] == "step" and e["step"] == ckpt["step"] + 1,
                                   what="the step after the checkpoint")
    p.kill9()
    before, _ = _all_lines(p.run_dir)
    assert before[-1]["type"] != "run_end"
    saved = max(e["step"] for e in before if e["type"] == "checkpoint")

    q = start_trainer("--resume", str(p.run_dir), "--max-steps", str(saved + 3), logs=p.logs)
    code, err = q.finish()
    assert code == 0, err
    events, torn = _all_lines(p.run_dir)
    assert torn <= 1
    assert [e["seq"] for e in events] == list(range(len(events)))  # seq continues, no gap
    starts = [i for i, e in enumerate(events) if e["type"] == "run_start"]
    assert len(starts) == 2
    second = events[starts[1]:]
    assert second[0]["resumed_from"]["step"] == saved
    steps = [e for e in second if e["type"] == "step"]
    assert [s["step"] for s in steps] == [saved + 1, saved + 2, saved + 3]
    assert all(s["weights"] == {"loss_text_ce": 0.2, "loss_mel_ce": 1.0} for s in steps)
    if saved == ckpt["step"]:  # same step, same schedule position, same hand-scaled rate
        assert steps[0]["lr"] == first_life_next["lr"]
    acks = Counter(e["id"] for e in events if e["type"] == "ack")
    assert acks[sw.id] == 1 and acks[sc.id] == 1  # nothing applied twice
    assert second[-1]["type"] == "run_end" and second[-1]["status"] == "completed"
