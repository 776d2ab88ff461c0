"""The run-directory contract between the trainer and the terminal app (docs/run-directory.md): the
event schema, the writer, control commands and their reader, run-directory creation and text escaping.

Imports nothing else of ours and no numpy: the trainer and ``traintop ctl`` load only this. Reading
runs (the history, the caches, TensorBoard files) is ``traintop.sources``.
"""

from traintop.protocol.control import (
    COMMANDS,
    Command,
    CommandError,
    ControlInbox,
    ControlPermissionError,
    ControlReader,
    ControlState,
    Decision,
    make_command,
    validate_command,
)
from traintop.protocol.events import SCHEMA_VERSION, Event, EventError, decode_line, encode_event
from traintop.protocol.rundir import CONTROL_FILE, EVENTS_FILE, RunDirError, new_run_dir, resolve_run_dir
from traintop.protocol.writer import EventWriter

__all__ = [
    "COMMANDS", "CONTROL_FILE", "EVENTS_FILE", "SCHEMA_VERSION", "Command", "CommandError", "ControlInbox",
    "ControlPermissionError", "ControlReader", "ControlState", "Decision", "Event", "EventError",
    "EventWriter", "RunDirError", "decode_line", "encode_event", "make_command", "new_run_dir",
    "resolve_run_dir", "validate_command",
]
