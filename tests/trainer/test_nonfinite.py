"""A real non-finite loss, provoked by an absurd learning rate, follows the recipe's policy."""

from __future__ import annotations

from tests.trainer.conftest import QUICK
from traintop.protocol.control import ControlInbox

ABSURD = ["--set", "training.lr=1.0e+6", "--set", "training.warmup_steps=0",
          "--set", "training.grad_clip=null", "--set", "sample.enabled=false"]


def test_policy_stop_alerts_and_stops(start_trainer) -> None:
    p = start_trainer("xtts_tiny", "--max-steps", "30", *QUICK, *ABSURD, "--set", "nonfinite=stop")
    code, err = p.finish()
    assert code == 0, err
    events = p.events()
    alerts = [e for e in events if e["type"] == "alert"]
    assert alerts and alerts[0]["kind"] == "nonfinite" and alerts[0]["term"] in ("loss_text_ce", "loss_mel_ce")
    bad = [e for e in events if e["type"] == "step" and e.get("nonfinite")]
    assert bad, "the absurd rate must produce a non-finite loss"
    assert bad[0]["losses"][alerts[0]["term"]] is None  # null + flag, never bare NaN
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "stopped"
    assert events[-1]["step"] == bad[0]["step"]


def test_policy_skip_drops_steps_and_keeps_going(start_trainer) -> None:
    p = start_trainer("xtts_tiny", "--max-steps", "5", *QUICK, *ABSURD, "--set", "nonfinite=skip")
    code, err = p.finish()
    assert code == 0, err
    events = p.events()
    assert any(e["type"] == "alert" and e["kind"] == "nonfinite" for e in events)
    assert [e["step"] for e in events if e["type"] == "step"] == [1, 2, 3, 4, 5]
    assert events[-1]["status"] == "completed"


def test_policy_pause_waits_for_a_command(start_trainer) -> None:
    p = start_trainer("xtts_tiny", "--max-steps", "30", *QUICK, *ABSURD, "--set", "nonfinite=pause")
    p.wait_event(lambda e: e["type"] == "alert", what="non-finite alert")
    p.wait_event(lambda e: e["type"] == "state" and e["state"] == "paused", what="paused")
    ControlInbox(p.run_dir).send_new("stop")
    code, err = p.finish()
    assert code == 0, err
    events = p.events()
    assert events[-1]["status"] == "stopped"
    first_bad = next(e["step"] for e in events if e["type"] == "step" and e.get("nonfinite"))
    assert max(e["step"] for e in events if e["type"] == "step") == first_bad  # no step after it
