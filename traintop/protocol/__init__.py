"""The run-directory contract between the trainer and the terminal app (docs/run-directory.md).

Imports neither torch nor textual; both halves depend on it, and it depends on nothing of ours.
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
from traintop.protocol.history import RunHistory, WeightTrack
from traintop.protocol.lines import TailNotice
from traintop.protocol.load import load_history
from traintop.protocol.reader import ReadUpdate, RunReader, open_reader
from traintop.protocol.rundir import (
    CONTROL_FILE,
    EVENTS_FILE,
    RunDirError,
    find_runs,
    new_run_dir,
    resolve_run_dir,
)
from traintop.protocol.tail import JsonlTail, TailChunk
from traintop.protocol.writer import EventWriter

__all__ = [
    "COMMANDS", "CONTROL_FILE", "EVENTS_FILE", "SCHEMA_VERSION", "Command", "CommandError", "ControlInbox",
    "ControlPermissionError", "ControlReader", "ControlState", "Decision", "Event", "EventError",
    "EventWriter", "JsonlTail", "ReadUpdate", "RunDirError", "RunHistory", "RunReader",
    "TailChunk", "TailNotice", "WeightTrack",
    "decode_line", "encode_event", "open_reader", "find_runs", "load_history", "make_command", "new_run_dir",
    "resolve_run_dir", "validate_command",
]
