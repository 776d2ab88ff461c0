"""Commands through the real control.jsonl of a running tiny-XTTS trainer."""

from __future__ import annotations

import math
import time

from tests.trainer.conftest import QUICK
from traintop.protocol.control import Command, ControlInbox


def _acks(events: list[dict], cid: str | None = None) -> list[dict]:
    return [e for e in events if e["type"] == "ack" and (cid is None or e["id"] == cid)]


def test_commands_are_applied_at_step_boundaries_and_acked(start_trainer) -> None:
    p = start_trainer("xtts_tiny", "--max-steps", "400", *QUICK, "--set", "sample.enabled=false")
    p.wait_event(lambda e: e["type"] == "step" and e["step"] >= 2, what="step 2")
    inbox = ControlInbox(p.run_dir)

    # set_weight: the weight changes, from the next step, and the total follows it
    sw = inbox.send_new("set_weight", term="loss_text_ce", value=0.5)
    ack = p.wait_event(lambda e: e["type"] == "ack" and e["id"] == sw.id, what="set_weight ack")
    assert ack["status"] == "applied" and ack["state"]["weight"] == 0.5
    after = p.wait_event(lambda e: e["type"] == "step" and e["step"] > ack["step"], what="next step")
    assert after["weights"]["loss_text_ce"] == 0.5
    assert math.isclose(after["total"], 0.5 * after["losses"]["loss_text_ce"]
                        + after["losses"]["loss_mel_ce"], rel_tol=1e-4)
    before = [e for e in p.events() if e["type"] == "step" and e["step"] <= ack["step"]]
    assert all(e["weights"]["loss_text_ce"] == 0.01 for e in before)

    # scale_lr: the scheduler's base rates are scaled, so the next step runs at half the rate
    sc = inbox.send_new("scale_lr", factor=0.5)
    ack = p.wait_event(lambda e: e["type"] == "ack" and e["id"] == sc.id, what="scale_lr ack")
    assert ack["status"] == "applied"
    nxt = p.wait_event(lambda e: e["type"] == "step" and e["step"] == ack["step"] + 1, what="step")
    assert math.isclose(nxt["lr"], ack["state"]["lr"], rel_tol=1e-9)

    # pause: no step while paused, even for a while; save and system events still answer
    pause = inbox.send_new("pause")
    ack = p.wait_event(lambda e: e["type"] == "ack" and e["id"] == pause.id, what="pause ack")
    paused_at = ack["step"]
    p.wait_event(lambda e: e["type"] == "state" and e["state"] == "paused", what="paused state")
    save = inbox.send_new("save")
    saved = p.wait_event(lambda e: e["type"] == "ack" and e["id"] == save.id, what="save ack")
    assert saved["status"] == "applied"
    n_system = sum(e["type"] == "system" for e in p.events())
    time.sleep(3.0)
    events = p.events()
    assert max(e["step"] for e in events if e["type"] == "step") == paused_at
    assert sum(e["type"] == "system" for e in events) > n_system  # the heartbeat goes on
    assert any(e["type"] == "checkpoint" and e["step"] == paused_at for e in events)
    resume = inbox.send_new("resume")
    p.wait_event(lambda e: e["type"] == "ack" and e["id"] == resume.id, what="resume ack")
    p.wait_event(lambda e: e["type"] == "step" and e["step"] == paused_at + 1, what="step after resume")

    # eval and sample run at once
    ev = inbox.send_new("eval")
    ack = p.wait_event(lambda e: e["type"] == "ack" and e["id"] == ev.id, timeout=240, what="eval ack")
    assert ack["status"] == "applied"
    assert any(e["type"] == "eval" and e["step"] == ack["step"] for e in p.events())
    # sample: deferred at once (it is made off the training loop), applied when its wav is written
    sm = inbox.send_new("sample")
    first = p.wait_event(lambda e: e["type"] == "ack" and e["id"] == sm.id
                         and "off the training loop" in e["reason"], what="sample ack")
    assert first["status"] == "deferred"
    ack = p.wait_event(lambda e: e["type"] == "ack" and e["id"] == sm.id and e["status"] != "deferred",
                       timeout=240, what="sample's final ack")
    assert ack["status"] == "applied" and ack["state"]["wavs"] and ack["state"]["step"] == first["step"]
    made = next(e for e in p.events() if e["type"] == "sample" and e["step"] == first["step"])
    assert "error" not in made and made["wav"] == ack["state"]["wavs"][0]

    stop = inbox.send_new("stop")
    code, err = p.finish()
    assert code == 0, err
    events = p.events()
    # the stop's final answer comes after its checkpoint and names it: `ctl stop --wait` can be trusted
    *deferred, final = _acks(events, stop.id)  # (a slow step may have it acked deferred first)
    assert all(d["status"] == "deferred" for d in deferred) and "checkpoint" in deferred[-1]["reason"]
    assert final["status"] == "applied" and final["state"]["state"] == "stopped"
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "stopped"
    saved = events[-3]
    assert saved["type"] == "checkpoint" and final["state"]["checkpoint"] == saved["path"]
    assert events[-2] is final  # stop saves, answers, then ends
    assert [e["seq"] for e in events] == list(range(len(events)))


def test_hostile_commands_are_rejected_one_by_one_while_valid_ones_apply(start_trainer) -> None:
    p = start_trainer("xtts_tiny", "--max-steps", "400", *QUICK, "--set", "sample.enabled=false")
    p.wait_event(lambda e: e["type"] == "step", what="first step")
    inbox = ControlInbox(p.run_dir)
    valid = [Command("set_weight", {"term": "loss_mel_ce", "value": 2.0}),
             Command("set_weight", {"term": "loss_text_ce", "value": 0.25}),
             Command("scale_lr", {"factor": 0.5})]
    hostile = [
        b"garbage that is not json",
        b"[1, 2, 3]",
        b'{"v":1,"cmd":"pause","args":{}}',  # no id
        b'{"v":1,"id":"h1","cmd":"rm -rf /","args":{}}',
        b'{"v":1,"id":"h2","cmd":"set_weight","args":{"term":"loss_mel_ce","value":"2"}}',
        b'{"v":1,"id":"h3","cmd":"set_weight","args":{"term":"speaker","value":1.2}}',
        b'{"v":1,"id":"h4","cmd":"set_weight","args":{"term":"loss_mel_ce","value":NaN}}',
        b'{"v":1,"id":"h5","cmd":"set_weight","args":{"term":"loss_mel_ce","value":1e308}}',
        b'{"v":1,"id":"h6","cmd":"scale_lr","args":{"factor":-1}}',
        b'{"v":1,"id":"h7","cmd":"set_lr","args":{"value":1e9}}',
        b'{"v":1,"id":"h8","cmd":"set_weight","args":["loss_mel_ce",1]}',
        b'{"v":1,"id":"' + b"i" * 200 + b'","cmd":"pause"}',
        b'{"v":1,"id":"h9","cmd":"pause","args":{"x":"' + b"A" * 70_000 + b'"}}',
        b'{"v":1,"id":"h10","cmd":"set_weight","args":{"term":{"$gt":""},"value":1}}',
    ]
    lines = [valid[0].to_line(), *[h + b"\n" for h in hostile[:7]], valid[1].to_line(),
             *[h + b"\n" for h in hostile[7:]], valid[2].to_line(),
             valid[0].to_line()]  # the same id again: must not apply twice
    with (p.run_dir / "control.jsonl").open("ab") as fh:
        fh.write(b"".join(lines))
    last = p.wait_event(lambda e: e["type"] == "ack" and e["id"] == valid[0].id
                        and e["status"] == "rejected", what="duplicate rejected")
    acks = _acks(p.events())
    assert len(acks) == len(lines)
    assert [a["status"] for a in acks] == (["applied"] + ["rejected"] * 7 + ["applied"]
                                           + ["rejected"] * 7 + ["applied", "rejected"])
    assert all(a["reason"] for a in acks if a["status"] == "rejected")
    assert "no loss term 'speaker'" in _acks(acks, "h3")[0]["reason"]
    assert "too long" in " ".join(a["reason"] for a in acks)
    assert "already handled" in last["reason"]
    step = p.wait_event(lambda e: e["type"] == "step" and e["step"] > last["step"], what="next step")
    assert step["weights"] == {"loss_mel_ce": 2.0, "loss_text_ce": 0.25}
    inbox.send_new("stop")
    code, err = p.finish()
    assert code == 0, err


def test_ctrl_c_stops_like_the_stop_command(start_trainer) -> None:
    import signal

    p = start_trainer("xtts_tiny", "--max-steps", "400", *QUICK, "--set", "sample.enabled=false")
    p.wait_event(lambda e: e["type"] == "step", what="first step")
    p.proc.send_signal(signal.SIGINT)
    code, err = p.finish()
    assert code == 0, err
    events = p.events()
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "stopped"
    assert events[-2]["type"] == "checkpoint" and events[-2]["step"] == events[-1]["step"]
    assert any(e["type"] == "state" and e["state"] == "stopping" for e in events)
