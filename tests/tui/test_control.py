"""Pilot tests: every control key appends the right command; acks move the UI from pending on."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui.conftest import control_lines, make_app, run_clock, wait_for, wait_loaded
from tests.tui.fixtures import append_events
from traintop.tui.screens.dialogs import ConfirmScreen, ValueScreen
from traintop.tui.screens.run import RunScreen
from traintop.tui.widgets.alerts import AlertsPane
from traintop.tui.widgets.weights import LR_ROW, WeightsPane

pytestmark = pytest.mark.anyio


def _tabs(app) -> str:
    return str(app.screen.query_one("#tabs").render())


@pytest.mark.parametrize(("key", "cmd"), [("p", "pause"), ("s", "save"), ("e", "eval"), ("a", "sample")])
async def test_key_appends_command(tiny: Path, key: str, cmd: str) -> None:
    app = make_app(tiny, run_clock(tiny))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press(key)
        await wait_for(pilot, lambda: len(control_lines(tiny)) == 1, what="a command line")
        (line,) = control_lines(tiny)
        assert line["cmd"] == cmd and line["args"] == {}
        assert f"{cmd}: pending" in _tabs(app)


async def test_pause_key_resumes_a_paused_run(tiny: Path) -> None:
    append_events(tiny, ("state", {"state": "paused"}))
    app = make_app(tiny, run_clock(tiny))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: len(control_lines(tiny)) == 1, what="a command line")
        assert control_lines(tiny)[0]["cmd"] == "resume"


async def test_stop_asks_first(tiny: Path) -> None:
    app = make_app(tiny, run_clock(tiny))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, RunScreen)
        assert control_lines(tiny) == []
        await pilot.press("x")
        await pilot.press("y")
        await wait_for(pilot, lambda: len(control_lines(tiny)) == 1, what="the stop command")
        assert control_lines(tiny)[0]["cmd"] == "stop"


@pytest.mark.parametrize(("status", "reason"), [("applied", ""), ("rejected", "the run is already stopping")])
async def test_ack_moves_pending_to_outcome(tiny: Path, status: str, reason: str) -> None:
    app = make_app(tiny, run_clock(tiny))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("s")
        await wait_for(pilot, lambda: "save: pending" in _tabs(app), what="pending")
        cid = control_lines(tiny)[0]["id"]
        append_events(tiny, ("ack", {"id": cid, "status": status, "reason": reason, "step": 120, "state": {}}))
        await wait_for(pilot, lambda: f"save: {status}" in _tabs(app), what=f"save: {status}")
        if reason:
            assert reason in _tabs(app)
        await pilot.press("6")  # the event log names the command and its outcome
        log = str(app.screen.query_one("#log").render())
        assert f"ack  save {status}" in log


async def test_weights_nudge_and_send(tiny: Path) -> None:
    app = make_app(tiny, run_clock(tiny))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("w")
        pane = app.screen.query_one(WeightsPane)
        assert pane.has_focus and pane.current_row == "loss_mel"
        await pilot.press("plus", "plus", "enter")
        await wait_for(pilot, lambda: len(control_lines(tiny)) == 1, what="set_weight")
        line = control_lines(tiny)[0]
        assert line["cmd"] == "set_weight"
        assert line["args"] == {"term": "loss_mel", "value": pytest.approx(45 * 1.1 * 1.1, rel=1e-3)}
        append_events(tiny, ("ack", {"id": line["id"], "status": "applied", "reason": "", "step": 121,
                                     "state": {"weights": {"loss_mel": line["args"]["value"]}}}))
        await wait_for(pilot, lambda: "applied" in str(pane.get_row("loss_mel")[3]), what="weights row applied")


async def test_typed_weight_and_lr(tiny: Path) -> None:
    app = make_app(tiny, run_clock(tiny))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("w", "down", "t")
        assert isinstance(app.screen, ValueScreen)
        inp = app.screen.query_one("Input")
        inp.value = ""
        await pilot.press(*"0.5", "enter")
        await pilot.press("l")
        assert isinstance(app.screen, ValueScreen)
        app.screen.query_one("Input").value = ""
        await pilot.press(*"3e-6", "enter")
        await wait_for(pilot, lambda: len(control_lines(tiny)) == 2, what="two commands")
        first, second = control_lines(tiny)
        assert (first["cmd"], first["args"]) == ("set_weight", {"term": "loss_text_ce", "value": 0.5})
        assert (second["cmd"], second["args"]) == ("set_lr", {"value": 3e-6})
        assert app.screen.query_one(WeightsPane).current_row == LR_ROW


async def test_bad_values_are_refused_in_words(tiny: Path) -> None:
    app = make_app(tiny, run_clock(tiny))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("l")
        app.screen.query_one("Input").value = ""
        await pilot.press(*"fast", "enter")
        assert isinstance(app.screen, ValueScreen)  # not a number: the dialog stays and says so
        assert "is not a number" in str(app.screen.query_one("#value-error").render())
        app.screen.query_one("Input").value = ""
        await pilot.press(*"5", "enter")  # lr 5 is outside (0, 1]: the protocol refuses, nothing is written
        await pilot.pause()
        assert control_lines(tiny) == []
        assert any("outside" in str(n.message) for n in app._notifications)


async def test_applying_a_suggestion_sends_exactly_it(seed: Path) -> None:
    app = make_app(seed, run_clock(seed))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("2")
        pane = app.screen.query_one(AlertsPane)
        await wait_for(pilot, lambda: bool(pane.suggestions), what="suggestions")
        chosen = next(s for s in pane.suggestions if s.cmd != "stop")
        pane.highlighted = pane.get_option_index(next(k for k, v in pane._refs.items() if v == chosen))
        await pilot.press("f")
        await wait_for(pilot, lambda: len(control_lines(seed)) == 1, what="the suggestion's command")
        line = control_lines(seed)[0]
        assert line["cmd"] == chosen.cmd
        assert line["args"] == {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in chosen.args.items()}
        from traintop.protocol import Command

        assert Command(line["cmd"], line["args"]).describe() == chosen.label
        await wait_for(pilot, lambda: "pending" in _option_text(pane, chosen.label), what="pending on the line")
        append_events(seed, ("ack", {"id": line["id"], "status": "rejected", "reason": "no such term here",
                                     "step": 1190, "state": {}}))
        await wait_for(pilot, lambda: "rejected: no such term here" in _option_text(pane, chosen.label),
                       what="rejected with its reason")


def _option_text(pane: AlertsPane, label: str) -> str:
    for i in range(pane.option_count):
        text = str(pane.get_option_at_index(i).prompt)
        if label in text:
            return text
    return ""
