"""``WeightsPane``: each loss term's live weight and the lr; nudge or type a value, send, see the ack."""

from __future__ import annotations

import math
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from traintop.protocol.text import MESSAGE_MAX, shown
from traintop.tui.commands import STATUS_STYLE
from traintop.tui.summary import fmt_value

LR_ROW = "__lr__"
NAME_MAX = 40  # characters of a term's name: a longer one would push the values off a 100-column pane
NUDGE = 1.1  # one keypress moves a weight or the lr by 10 %


class WeightsPane(DataTable):
    """Rows: every term's weight, then the lr. ``+``/``-`` stage a nudged value, Enter sends it."""

    BINDINGS = [
        Binding("plus,equals_sign", "nudge(1)", "Nudge up", show=True),
        Binding("minus", "nudge(-1)", "Nudge down", show=True),
        Binding("enter", "send", "Send", show=True),
        Binding("t", "type", "Type value", show=True),
        Binding("escape", "unstage", "Unstage", show=False),
    ]

    class Send(Message):
        """Send ``value`` for ``term`` (``None`` is the lr)."""

        def __init__(self, term: str | None, value: float) -> None:
            self.term = term
            self.value = value
            super().__init__()

    class TypeValue(Message):
        """The person wants to type a value for ``term`` (``None`` is the lr)."""

        def __init__(self, term: str | None, current: float | None) -> None:
            self.term = term
            self.current = current
            super().__init__()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.staged: dict[str, float] = {}
        self.live_values: dict[str, float] = {}
        self._rows: list[str] = []

    def on_mount(self) -> None:
        """Columns once; rows come with ``show``."""
        # fixed widths for the numbers: the first frame (before any value) must not clip them later
        self.add_column("term")
        self.add_column("live", width=10)
        self.add_column("new", width=11)
        self.add_column("last command")

    def show(self, weights: dict[str, float], lr: float | None, statuses: dict[str, tuple[str, str, str]]) -> None:
        """Refresh rows from live values; ``statuses[row]`` = (command text, status, reason).

        A staged value goes stale when the live value changes under it (another ``ctl``, an applied
        command): it is dropped, so the ``→`` never shows a value the person did not just choose.
        """
        before = self.live_values
        self.live_values = dict(weights)
        if lr is not None:
            self.live_values[LR_ROW] = lr
        for row in list(self.staged):
            if row in before and self.live_values.get(row) != before[row]:
                del self.staged[row]
        rows = [*weights, LR_ROW]
        if rows != self._rows:
            keep = self.cursor_row
            self.clear()
            for r in rows:
                self.add_row(*self._cells(r, statuses), key=r)
            self._rows = rows
            if self.row_count:
                self.move_cursor(row=min(keep, self.row_count - 1))
            return
        for r in rows:
            for col, cell in zip(self.columns, self._cells(r, statuses)):
                self.update_cell(r, col, cell, update_width=True)

    def _cells(self, row: str, statuses: dict[str, tuple[str, str, str]]) -> tuple[Any, ...]:
        live = self.live_values.get(row)
        staged = self.staged.get(row)
        name = Text("lr", style="bold") if row == LR_ROW else Text(shown(row, NAME_MAX))
        new = Text(f"→ {staged:.4g}", style="bold yellow") if staged is not None else Text("")
        desc, status, reason = statuses.get(row, ("", "", ""))
        last = Text(shown(desc, MESSAGE_MAX))
        if status:
            last.append(f"  {shown(status)}", style=STATUS_STYLE.get(status, ""))
        if reason:
            last.append(f": {shown(reason, MESSAGE_MAX)}", style="red")
        return (name, fmt_value(live), new, last)

    @property
    def current_row(self) -> str | None:
        """Key of the row under the cursor (a term name, or ``LR_ROW``)."""
        if not self._rows or self.cursor_row < 0:
            return None
        return self._rows[min(self.cursor_row, len(self._rows) - 1)]

    def select(self, row: str) -> None:
        """Move the cursor to ``row``."""
        if row in self._rows:
            self.move_cursor(row=self._rows.index(row))

    def action_nudge(self, direction: int) -> None:
        """Stage the value 10 % above or below the staged (or live) one."""
        row = self.current_row
        if row is None:
            return
        base = self.staged.get(row, self.live_values.get(row))
        if base is None or not math.isfinite(base):
            return
        value = base * (NUDGE if direction > 0 else 1 / NUDGE)
        if row != LR_ROW and base == 0:
            value = 0.01 if direction > 0 else 0.0
        self.staged[row] = float(f"{value:.4g}")  # round to what is shown, so the sent value is the seen value
        self._refresh_row(row)

    def action_unstage(self) -> None:
        """Forget the staged value of the current row."""
        row = self.current_row
        if row is not None and self.staged.pop(row, None) is not None:
            self._refresh_row(row)

    def action_send(self) -> None:
        """Send the staged value, or ask for one when nothing is staged."""
        row = self.current_row
        if row is None:
            return
        term = None if row == LR_ROW else row
        if row in self.staged:
            self.post_message(self.Send(term, self.staged.pop(row)))
            self._refresh_row(row)
        else:
            self.post_message(self.TypeValue(term, self.live_values.get(row)))

    def action_type(self) -> None:
        """Ask for a value to type."""
        row = self.current_row
        if row is not None:
            self.post_message(self.TypeValue(None if row == LR_ROW else row, self.live_values.get(row)))

    def sent(self, term: str | None) -> None:
        """A value for ``term`` (``None``: the lr) was sent another way (typed): its staged one is done."""
        row = LR_ROW if term is None else term
        if self.staged.pop(row, None) is not None and row in self._rows:
            self._refresh_row(row)

    def _refresh_row(self, row: str) -> None:
        staged = self.staged.get(row)
        self.update_cell(row, list(self.columns)[2],
                         Text(f"→ {staged:.4g}", style="bold yellow") if staged is not None else Text(""))
