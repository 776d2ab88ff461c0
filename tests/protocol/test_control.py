"""Control: validation, one decision per line, resume without re-applying, permissions, many writers."""

from __future__ import annotations

import math
import multiprocessing
import os
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traintop.protocol.control import (
    CommandError,
    ControlInbox,
    ControlPermissionError,
    ControlReader,
    ControlState,
    make_command,
    validate_command,
)

TERMS = ["loss_mel", "loss_kl"]


@pytest.mark.parametrize(("cmd", "args", "fragment"), [
    ("jump", {}, "unknown command 'jump'"),
    ("set_weight", {"term": "loss_mel"}, "missing argument 'value'"),
    ("set_weight", {"term": "loss_mel", "value": "2"}, "'value' must be a number"),
    ("set_weight", {"term": "loss_mel", "value": True}, "'value' must be a number"),
    ("set_weight", {"term": "loss_mel", "value": math.nan}, "must be finite"),
    ("set_weight", {"term": "loss_mel", "value": 1e309}, "must be finite"),
    ("set_weight", {"term": "loss_mel", "value": 5000}, "outside [0, 1000]"),
    ("set_weight", {"term": "loss_spk", "value": 1.0}, "no loss term 'loss_spk'; its terms are loss_kl, loss_mel"),
    ("set_weight", {"term": 3, "value": 1.0}, "'term' must be a loss term name"),
    ("set_lr", {"value": 0}, "outside [1e-10, 1]"),
    ("set_lr", {"value": 5e-324}, "outside [1e-10, 1]"),
    ("scale_lr", {"factor": -1}, "outside (0, 10]"),
    ("scale_lr", {"factor": 1e6}, "outside (0, 10]"),
    ("pause", [1], "'args' must be an object"),
])
def test_bad_commands_are_refused_with_the_field_named(cmd, args, fragment) -> None:
    with pytest.raises(CommandError, match=None) as err:
        validate_command(cmd, args, TERMS)
    assert fragment in str(err.value)


def test_valid_commands_normalize() -> None:
    got = validate_command("set_weight", {"term": "loss_mel", "value": 35}, TERMS)
    assert got == {"term": "loss_mel", "value": 35.0}
    assert validate_command("scale_lr", {"factor": 0.8}) == {"factor": 0.8}
    assert validate_command("pause", None) == {}
    assert make_command("set_lr", None, value=3e-6).describe() == "set_lr 3e-06"


def test_each_line_is_decided_once_and_state_resumes(tmp_path: Path) -> None:
    inbox = ControlInbox(tmp_path)
    first = inbox.send_new("pause")
    reader = ControlReader(tmp_path, terms=TERMS)
    d = reader.poll()
    assert [x.status for x in d] == ["accepted"] and d[0].command.id == first.id
    assert reader.poll() == []
    reader.commit(d[0])  # handled: only now does it count in the saved state
    second = inbox.send_new("set_weight", TERMS, term="loss_kl", value=0.5)
    saved = ControlState.from_dict(orjson.loads(orjson.dumps(reader.state.to_dict())))
    # a resumed trainer with the checkpointed state sees only what came after
    resumed = ControlReader(tmp_path, terms=TERMS, state=saved)
    got = resumed.poll()
    assert [x.command.id for x in got] == [second.id]
    assert resumed.state.last_id == first.id  # read is not handled
    resumed.commit(got[0])
    assert resumed.state.last_id == second.id


def test_a_duplicated_line_is_not_applied_twice(tmp_path: Path) -> None:
    cmd = make_command("save")
    inbox = ControlInbox(tmp_path)
    inbox.send(cmd)
    inbox.send(cmd)
    decisions = ControlReader(tmp_path).poll()
    assert [d.status for d in decisions] == ["accepted", "rejected"]
    assert "already handled" in decisions[1].reason


def test_partial_line_waits_for_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "control.jsonl"
    line = make_command("eval").to_line()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.write(fd, line[:10])
    reader = ControlReader(tmp_path)
    assert reader.poll() == []
    os.write(fd, line[10:])
    os.close(fd)
    assert [d.command.cmd for d in reader.poll()] == ["eval"]


def test_hostile_stream_is_rejected_line_by_line_while_valid_commands_apply(tmp_path: Path) -> None:
    path = tmp_path / "control.jsonl"
    good = [make_command("pause"), make_command("set_weight", TERMS, term="loss_mel", value=40.0),
            make_command("resume")]
    hostile = [b"garbage", b'{"id": "a", "cmd": "set_weight", "args": {"term": "loss_mel", "value": NaN}}',
               b'{"id": "b", "cmd": "set_weight", "args": {"term": "nope", "value": 1}}',
               b'{"id": "c", "cmd": "rm -rf /", "args": {}}', b"[1,2,3]", b'{"cmd": "pause"}',
               b'{"id": "d", "cmd": "set_lr", "args": {"value": 1e400}}', b'{"id": "e", "cmd": "scale_lr"}',
               b'{"id": "f", "cmd": "set_weight", "args": {"term": "loss_mel", "value": "__import__(\'os\')"}}',
               b'{"id": "g", "pad": "' + b"x" * 100_000 + b'"}', b"\xff\xfe\x00"]
    with path.open("wb") as fh:
        fh.write(good[0].to_line())
        for h in hostile[:6]:
            fh.write(h + b"\n")
        fh.write(good[1].to_line())
        for h in hostile[6:]:
            fh.write(h + b"\n")
        fh.write(good[2].to_line())
    path.chmod(0o600)
    decisions = ControlReader(tmp_path, terms=TERMS).poll()
    assert [d.command.cmd for d in decisions if d.accepted] == ["pause", "set_weight", "resume"]
    rejected = [d for d in decisions if not d.accepted]
    assert len(rejected) == len(hostile)
    assert all(d.reason for d in rejected)
    assert any("too long" in d.reason for d in rejected)
    assert any("no loss term 'nope'" in d.reason for d in rejected)


def test_a_control_file_others_can_write_is_refused(tmp_path: Path) -> None:
    ControlInbox(tmp_path).send_new("pause")
    (tmp_path / "control.jsonl").chmod(0o666)
    reader = ControlReader(tmp_path)
    assert reader.poll() == []  # refused, not raised: training goes on
    notices = reader.take_notices()
    assert [n.kind for n in notices] == ["refused"] and "chmod 600" in notices[0].message
    for _ in range(10):
        assert reader.poll() == []
    assert reader.take_notices() == []  # said once, not on every poll
    with pytest.raises(ControlPermissionError, match="chmod 600"):
        reader.check_permissions()
    (tmp_path / "control.jsonl").chmod(0o600)
    (d,) = reader.poll()  # present while others could write the file: never applied, answered
    assert d.status == "rejected" and "writable by other users" in d.reason
    assert [n.kind for n in reader.take_notices()] == ["readable"]


def test_inbox_creates_control_file_private(tmp_path: Path) -> None:
    ControlInbox(tmp_path).send_new("save")
    assert (tmp_path / "control.jsonl").stat().st_mode & 0o777 == 0o600


def _send_many(run_dir: str, who: int, n: int) -> None:
    inbox = ControlInbox(run_dir)
    for i in range(n):
        inbox.send(make_command("set_weight", None, term=f"t{who}_{'x' * (i * 37 % 3000)}", value=float(i)))


def test_many_processes_appending_at_once_never_tear_a_line(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_send_many, args=(str(tmp_path), w, 300)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    lines = (tmp_path / "control.jsonl").read_bytes().splitlines()
    assert len(lines) == 1200
    parsed = [orjson.loads(x) for x in lines]  # every line whole
    per_writer: dict[str, list[float]] = {}
    for obj in parsed:
        per_writer.setdefault(obj["args"]["term"].split("_")[0], []).append(obj["args"]["value"])
    assert all(v == [float(i) for i in range(300)] for v in per_writer.values())  # each writer in order


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=30))
def test_reader_never_crashes_on_arbitrary_bytes(tmp_path_factory, blobs) -> None:
    d = tmp_path_factory.mktemp("ctl")
    (d / "control.jsonl").write_bytes(b"\n".join(blobs) + b"\n")
    (d / "control.jsonl").chmod(0o600)
    reader = ControlReader(d, terms=TERMS)
    decisions = reader.poll()
    assert len(decisions) == len(b"\n".join(blobs).split(b"\n"))
    assert reader.poll() == []
