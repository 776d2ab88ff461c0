"""The control reader follows the file and counts a line only once it is handled (issue 10)."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from traintop.protocol.control import ControlInbox, ControlReader, ControlState, make_command

TERMS = ["loss_mel", "loss_kl"]


def _saved(reader: ControlReader) -> ControlState:
    """The state as a checkpoint stores it (through JSON)."""
    return ControlState.from_dict(orjson.loads(orjson.dumps(reader.state.to_dict())))


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.write(fd, data)
    os.close(fd)


def test_the_saved_state_holds_only_what_was_handled(tmp_path: Path) -> None:
    """A save and a set_weight read in one poll: a checkpoint taken while handling the save must
    not count the set_weight (which would then be neither in it nor replayed)."""
    inbox = ControlInbox(tmp_path)
    save = inbox.send_new("save")
    weight = inbox.send_new("set_weight", TERMS, term="loss_kl", value=0.5)
    reader = ControlReader(tmp_path, terms=TERMS)
    d_save, d_weight = reader.poll()
    at_save = reader.snapshot(d_save)  # the checkpoint the save handler writes
    assert at_save.seen_ids == [save.id] and reader.state.seen_ids == []
    resumed = ControlReader(tmp_path, terms=TERMS, state=ControlState.from_dict(at_save.to_dict()))
    assert [d.id for d in resumed.poll()] == [weight.id]  # replayed after a restart from it


def test_a_deferred_command_waits_while_later_ones_are_handled(tmp_path: Path) -> None:
    inbox = ControlInbox(tmp_path)
    pause, ev, weight = (inbox.send_new("pause"), inbox.send_new("eval"),
                         inbox.send_new("set_weight", TERMS, term="loss_mel", value=2.0))
    reader = ControlReader(tmp_path, terms=TERMS)
    d_pause, _d_eval, d_weight = reader.poll()
    reader.commit(d_pause)
    reader.commit(d_weight)  # the eval is deferred (paused): not handled yet
    resumed = ControlReader(tmp_path, terms=TERMS, state=_saved(reader))
    again = resumed.poll()
    assert [d.id for d in again] == [ev.id]  # only the eval comes back
    assert pause.id in resumed.state.seen_ids and weight.id in resumed.state.seen_ids
    resumed.commit(again[0])
    assert resumed.state.offset == (tmp_path / "control.jsonl").stat().st_size


def test_a_file_renamed_over_the_control_file_is_read_from_its_start(tmp_path: Path) -> None:
    inbox = ControlInbox(tmp_path)
    first = inbox.send_new("save")
    reader = ControlReader(tmp_path, terms=TERMS)
    reader.commit(reader.poll()[0])
    new = tmp_path / "new.jsonl"
    cmd = make_command("set_weight", TERMS, term="loss_kl", value=0.25)
    new.write_bytes(cmd.to_line())
    new.chmod(0o600)
    os.replace(new, tmp_path / "control.jsonl")
    got = reader.poll()
    assert [(d.status, d.id) for d in got] == [("accepted", cmd.id)]  # not read from the old offset
    assert [n.kind for n in reader.take_notices()] == ["replaced"]
    assert first.id in reader.state.seen_ids


def test_a_file_replaced_while_the_trainer_was_down_is_recognised(tmp_path: Path) -> None:
    inbox = ControlInbox(tmp_path)
    inbox.send_new("save")
    reader = ControlReader(tmp_path, terms=TERMS)
    reader.commit(reader.poll()[0])
    saved = _saved(reader)
    copy = (tmp_path / "control.jsonl").read_bytes()
    # the same bytes under a new inode (the run directory was copied): the offset still holds
    (tmp_path / "control.jsonl").unlink()
    (tmp_path / "control.jsonl").write_bytes(copy)
    (tmp_path / "control.jsonl").chmod(0o600)
    again = ControlReader(tmp_path, terms=TERMS, state=saved.copy())
    assert again.poll() == [] and again.take_notices() == []
    # other bytes: read from the start, and say so
    other = make_command("resume")
    (tmp_path / "control.jsonl").write_bytes(other.to_line() + b" " * 10 + b"\n")
    third = ControlReader(tmp_path, terms=TERMS, state=saved.copy())
    assert [d.id for d in third.poll()][0] == other.id
    assert [n.kind for n in third.take_notices()] == ["replaced"]


def test_truncation_restarts_at_byte_zero(tmp_path: Path) -> None:
    inbox = ControlInbox(tmp_path)
    inbox.send_new("save")
    inbox.send_new("save")
    reader = ControlReader(tmp_path)
    for d in reader.poll():
        reader.commit(d)
    os.truncate(tmp_path / "control.jsonl", 0)
    cmd = inbox.send_new("eval")
    assert [d.id for d in reader.poll()] == [cmd.id]
    assert [n.kind for n in reader.take_notices()] == ["truncated"]


def test_a_symlink_is_refused_once_and_swapping_back_replays_nothing(tmp_path: Path) -> None:
    inbox = ControlInbox(tmp_path)
    inbox.send_new("save")
    reader = ControlReader(tmp_path)
    reader.commit(reader.poll()[0])
    real = tmp_path / "control.jsonl"
    other = tmp_path / "elsewhere.jsonl"
    other.write_bytes(b"".join(make_command("pause").to_line() for _ in range(5)))
    other.chmod(0o600)
    os.rename(real, tmp_path / "real.jsonl")
    os.symlink(other, real)
    for _ in range(5):
        assert reader.poll() == []
    notices = reader.take_notices()
    assert len(notices) == 1 and "symbolic link" in notices[0].message
    real.unlink()
    os.rename(tmp_path / "real.jsonl", real)  # the original file is back
    assert reader.poll() == []  # nothing old replayed, nothing rejected
    assert [n.kind for n in reader.take_notices()] == ["readable"]
    cmd = inbox.send_new("eval")
    assert [d.id for d in reader.poll()] == [cmd.id]


def test_a_directory_in_its_place_is_a_notice_not_a_crash(tmp_path: Path) -> None:
    reader = ControlReader(tmp_path)
    (tmp_path / "control.jsonl").mkdir()
    assert reader.poll() == [] and reader.poll() == []
    notices = reader.take_notices()
    assert len(notices) == 1 and "is a directory" in notices[0].message


def test_a_torn_line_does_not_swallow_the_next_command(tmp_path: Path) -> None:
    path = tmp_path / "control.jsonl"
    dead = make_command("set_weight", TERMS, term="loss_mel", value=3.0).to_line()
    good = make_command("pause")
    _write(path, dead[:25])  # the writer died here
    _write(path, good.to_line())
    decisions = ControlReader(tmp_path, terms=TERMS).poll()
    assert [(d.status, d.id) for d in decisions][-1] == ("accepted", good.id)
    assert decisions[0].status == "rejected" and "torn line" in decisions[0].reason
    assert decisions[0].end == decisions[1].offset  # the pieces tile the line


def test_ids_are_recovered_from_lines_that_are_not_json(tmp_path: Path) -> None:
    lines = [b'{"v":1,"id":"nan1","cmd":"set_weight","args":{"term":"loss_mel","value":NaN}}',
             b'{"v":1,"id":"inf1","cmd":"set_lr","args":{"value":Infinity}}',
             b'{"v":1,"id":"big1","cmd":"set_lr","args":{"value":1e999}}']
    _write(tmp_path / "control.jsonl", b"\n".join(lines) + b"\n")
    decisions = ControlReader(tmp_path, terms=TERMS).poll()
    assert [(d.status, d.id) for d in decisions] == [("rejected", "nan1"), ("rejected", "inf1"),
                                                      ("rejected", "big1")]
    assert all("not JSON" in d.reason for d in decisions)


def test_an_unknown_version_is_rejected_with_a_reason(tmp_path: Path) -> None:
    _write(tmp_path / "control.jsonl", b'{"v":99,"id":"future","cmd":"pause","args":{}}\n')
    (d,) = ControlReader(tmp_path).poll()
    assert d.status == "rejected" and d.id == "future" and "version 1 only" in d.reason


# -- issue 14: what was written while the file was unsafe is never applied ----------------------

def _open_up(path: Path) -> None:
    path.chmod(0o666)  # what an attacker on the same machine needs


def test_a_command_written_while_others_could_write_the_file_is_never_applied(tmp_path: Path) -> None:
    inbox = ControlInbox(tmp_path)
    first = inbox.send_new("save")
    reader = ControlReader(tmp_path, terms=TERMS)
    reader.commit(reader.poll()[0])
    path = tmp_path / "control.jsonl"
    _open_up(path)
    planted = make_command("set_weight", TERMS, term="loss_mel", value=999.0)
    _write(path, planted.to_line())
    assert reader.poll() == []
    assert [n.kind for n in reader.take_notices()] == ["refused"]
    path.chmod(0o600)  # the owner closes it again: the planted line must stay dead
    (d,) = reader.poll()
    assert (d.status, d.id) == ("rejected", planted.id)
    assert "writable by other users" in d.reason and "send it again" in d.reason
    (readable,) = reader.take_notices()
    assert readable.kind == "readable" and "not applied" in readable.message
    reader.commit(d)
    assert reader.state.untrusted is None  # every untrusted line answered
    mine = inbox.send_new("set_weight", TERMS, term="loss_mel", value=2.0)
    assert [(d.status, d.id) for d in reader.poll()] == [("accepted", mine.id)]
    assert first.id in reader.state.seen_ids


def test_a_partial_line_planted_while_unsafe_does_not_swallow_the_owners_next_command(
        tmp_path: Path) -> None:
    path = tmp_path / "control.jsonl"
    inbox = ControlInbox(tmp_path)
    inbox.send_new("save")
    reader = ControlReader(tmp_path, terms=TERMS)
    reader.commit(reader.poll()[0])
    _open_up(path)
    whole = make_command("stop")
    _write(path, whole.to_line() + b'{"v":1,"id":"half","cmd":"set_lr","args":{"value":0.')
    assert reader.poll() == []
    path.chmod(0o600)
    assert [(d.status, d.id) for d in reader.poll()] == [("rejected", whole.id)]
    mine = inbox.send_new("pause")  # lands right after the planted half line
    got = reader.poll()
    assert [d.status for d in got] == ["rejected", "accepted"] and got[1].id == mine.id


def test_the_distrust_survives_checkpoints_taken_before_and_after_the_file_is_safe_again(
        tmp_path: Path) -> None:
    path = tmp_path / "control.jsonl"
    inbox = ControlInbox(tmp_path)
    inbox.send_new("save")
    reader = ControlReader(tmp_path, terms=TERMS)
    reader.commit(reader.poll()[0])
    _open_up(path)
    planted = make_command("scale_lr", factor=10.0)
    _write(path, planted.to_line())
    assert reader.poll() == []
    while_unsafe = _saved(reader)  # a checkpoint while it is still refused
    saved = while_unsafe.to_dict()
    path.chmod(0o600)
    resumed = ControlReader(tmp_path, terms=TERMS, state=while_unsafe)
    assert [(d.status, d.id) for d in resumed.poll()] == [("rejected", planted.id)]
    assert saved["untrusted"] and saved["untrusted_to"] is None
    after_restore = _saved(resumed)  # a checkpoint before the rejection was answered
    again = ControlReader(tmp_path, terms=TERMS, state=after_restore)
    (d,) = again.poll()
    assert (d.status, d.id) == ("rejected", planted.id) and "send it again" in d.reason
    again.commit(d)
    mine = inbox.send_new("scale_lr", factor=0.5)
    last = ControlReader(tmp_path, terms=TERMS, state=_saved(again))
    assert [(d.status, d.id) for d in last.poll()] == [("accepted", mine.id)]
    # a checkpoint written before these fields existed still loads
    old = {k: v for k, v in after_restore.to_dict().items() if not k.startswith("untrusted")}
    assert ControlState.from_dict(old).untrusted is None
