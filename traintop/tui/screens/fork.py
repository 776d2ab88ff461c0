"""``ForkScreen``: pick the weight or lr change of a run to compare its before with its after."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from traintop.health.compare import Change
from traintop.protocol.text import MESSAGE_MAX, shown


class ForkScreen(ModalScreen[Change | None]):
    """The run's changes, newest first; Enter compares around the highlighted one, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, run_name: str, changes: list[Change]) -> None:
        super().__init__()
        self.run_name = run_name
        self.changes = list(reversed(changes))  # the latest change is the one a person just made

    def compose(self) -> ComposeResult:
        """Title, the list of changes, the keys."""
        with Vertical(id="dialog"):
            yield Static(Text.assemble(("Compare before / after a change in ", "bold"),
                                       (shown(self.run_name, MESSAGE_MAX), "bold")))
            yield Static(Text("the steps after the change are drawn over as many steps before it", style="dim"))
            yield OptionList(*[Option(Text(f"step {c.step:>9,}  {shown(c.what, MESSAGE_MAX)}"), id=str(i))
                               for i, c in enumerate(self.changes)], id="fork-changes")
            yield Static(Text.assemble(("Enter", "bold"), " compare    ", ("Esc", "bold"), " cancel"), classes="keys")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Compare around the chosen change."""
        self.dismiss(self.changes[event.option_index])

    def action_cancel(self) -> None:
        """Close without a comparison."""
        self.dismiss(None)
