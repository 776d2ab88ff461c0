"""``Run``: instrument any training loop for traintop (imports no torch).

A ten-line loop::

    from traintop import Run

    run = Run.start("logs", "my-voice", terms={"mel": 1.0, "kl": 0.1}, planned_steps=1000)
    for step in range(1000):
        losses = model_losses(batch)                       # tensors
        total = sum(run.weights[k] * v for k, v in losses.items())
        total.backward(); opt.step(); opt.zero_grad()
        if step % 10 == 0:                                 # .item() is a GPU sync: log interval only
            run.log_step(step, 0, {k: v.item() for k, v in losses.items()}, total=total.item(),
                         lr=opt.param_groups[0]["lr"])
        run.poll(step)                                     # applies pause / set_weight, acks all
        run.wait_while_paused(step)
        if run.should_stop: break
    run.end("stopped" if run.should_stop else "completed", step)

Every value handed to ``Run`` is a plain Python float: call ``.item()`` yourself, only at your log
interval, because on a GPU it waits for the device. ``Run`` never touches a tensor.

Commands are read only when you call ``poll`` (a step boundary). ``pause`` / ``resume`` /
``stop`` / ``set_weight`` are handled here; ``save`` / ``eval`` / ``sample`` / ``set_lr`` /
``scale_lr`` go to a handler registered with ``on(cmd, fn)`` (``fn(command) -> state dict``; raise
``CommandRejected`` to refuse). Without a handler they are rejected with a reason that says so, or,
with ``poll(step, unhandled="return")``, handed back for you to apply and ``ack``. Every command
gets exactly one final ``ack`` (``applied`` / ``rejected``), and counts as consumed only once it
has it: ``state_dict()`` (what a checkpoint saves) holds exactly the commands handled so far. After
a resume from such a checkpoint, commands that came later are applied again (their effect was rolled
back with the state); those acks carry ``"replay": true`` and ``original_step``.
"""

from __future__ import annotations

import math
import os
import platform
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from traintop.protocol.control import Command, ControlNotice, ControlReader, ControlState, Decision
from traintop.protocol.rundir import CONTROL_FILE, ensure_private_dir, new_run_dir
from traintop.protocol.safefile import open_append
from traintop.protocol.writer import EventWriter
from traintop.trainer.lock import RunLock
from traintop.trainer.replay import AckHistory
from traintop.trainer.system import SystemMonitor

Handler = Callable[[Command], dict[str, Any] | None]
SELF_HANDLED = frozenset({"pause", "resume", "stop", "set_weight"})
WHILE_PAUSED = frozenset({"resume", "stop", "save", "set_weight", "set_lr", "scale_lr", "pause"})


class EventSink(Protocol):
    """Where a run's events go: the run's ``EventWriter`` (``NullRun``: nowhere)."""

    path: Path

    @property
    def next_seq(self) -> int: ...
    def emit(self, type: str, **fields: Any) -> dict[str, Any]: ...
    def emit_final(self, type: str, **fields: Any) -> dict[str, Any]: ...
    def size(self) -> int: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...


class CommandSource(Protocol):
    """Where a run's commands come from: its ``ControlReader`` (``NullRun``: none)."""

    def poll(self) -> list[Decision]: ...
    def take_notices(self) -> list[ControlNotice]: ...
    def commit(self, decision: Decision) -> None: ...
    def snapshot(self, also: Decision | None = None) -> ControlState: ...
    def close(self) -> None: ...


class Releasable(Protocol):
    """The run directory's lock (``RunLock``)."""

    def release(self) -> None: ...


class Heartbeat(Protocol):
    """The thread that emits ``system`` events (``SystemMonitor``)."""

    def start(self) -> object: ...
    def stop(self) -> None: ...


class CommandRejected(Exception):
    """Raise from a handler to reject a command; the message becomes the ack's reason."""


class CommandPending(Exception):
    """Raise from a handler whose work finishes later (an off-loop sample).

    The command is acked ``deferred`` with the message now; its final answer comes through
    ``Run.ack_later`` (from any thread), delivered at the next ``poll``.
    """


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("torch", "TTS", "trainer"):
        m = sys.modules.get(mod)  # only report what is already imported: Run must stay light
        if m is not None and hasattr(m, "__version__"):
            out[mod] = str(m.__version__)
    try:
        from importlib.metadata import version

        out["traintop"] = version("traintop")
    except Exception:  # not installed as a distribution (running from a checkout)
        pass
    return out


class Run:
    """One training run's events and commands (rank 0 only; other ranks use ``NullRun``)."""

    weights_fixed: str | None = None  # set: set_weight is refused with this reason
    signalled = False  # a Ctrl-C / SIGTERM asked to stop; the loop says so at its next boundary

    def __init__(self, run_dir: str | Path, *, terms: dict[str, float],
                 control_state: ControlState | None = None, system_interval: float = 5.0,
                 poll_interval: float = 0.1, resume_state: dict[str, Any] | None = None) -> None:
        self.run_dir = Path(run_dir)
        ensure_private_dir(self.run_dir)
        self.lock: Releasable = RunLock.acquire(self.run_dir)  # one trainer per run directory
        try:
            os.close(open_append(self.run_dir / CONTROL_FILE))  # exists, 0600, from the start
        except OSError:
            pass  # a directory or a dangling link in its place: the reader says so, training goes on
        self.writer: EventSink = EventWriter(self.run_dir)
        self.weights: dict[str, float] = {k: float(v) for k, v in terms.items()}
        self.lr: float | None = None
        self.step = 0
        self.paused = False
        self.should_stop = False
        self.stop_reason = ""
        self.poll_interval = poll_interval
        self._handlers: dict[str, Handler] = {}
        self._deferred: list[Decision] = []
        self._deferred_at: dict[str, int] = {}  # id -> step of its deferred ack (checkpoints keep it)
        self._returned: dict[str, Decision] = {}  # handed to the caller, awaiting its ack
        self._inflight: Decision | None = None  # the command whose handler runs now (a save)
        self._previous = AckHistory()
        self._later: deque[tuple[str, str, str, dict[str, Any]]] = deque()  # appended by other threads
        # the control reader and the deferred list are shared with the busy watcher's thread
        self._lock = threading.Lock()
        self._last_poll = time.monotonic()
        self._watcher: threading.Thread | None = None
        self._watch_stop = threading.Event()
        self.confirm_stop = False  # the stop ack waits for the final checkpoint (see confirm_stopped)
        self.stop_command: str | None = None  # the id of the stop command awaiting that answer
        self.control: CommandSource = ControlReader(self.run_dir, terms=lambda: self.weights.keys(),
                                                    state=control_state)
        self.monitor: Heartbeat = SystemMonitor(self.writer.emit, interval=system_interval)
        self._ended = False
        self._resume = resume_state or {}
        if resume_state:
            self.load_state_dict(resume_state)

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def start(cls, logs: str | Path, name: str, *, terms: dict[str, float], recipe: str = "custom",
              profile: str | None = None, planned_steps: int | None = None,
              planned_epochs: int | None = None, run_dir: str | Path | None = None,
              resumed_from: dict[str, Any] | None = None,
              control_state: ControlState | None = None, system_interval: float = 5.0,
              resume_state: dict[str, Any] | None = None, **extra: Any) -> Run:
        """Create (or reopen, with ``run_dir``) a run directory, emit ``run_start`` and start stats.

        ``resume_state`` is a checkpoint's ``state_dict()``: weights, the commands handled, the
        paused state; commands after it are replayed at the first ``poll``.
        """
        directory = Path(run_dir) if run_dir is not None else new_run_dir(logs, name)
        run = cls(directory, terms=terms, control_state=control_state,
                  system_interval=system_interval, resume_state=resume_state)
        run.writer.emit("run_start", run=directory.name, recipe=recipe, profile=profile,
                        terms=dict(run.weights), planned_steps=planned_steps,
                        planned_epochs=planned_epochs, host=socket.gethostname(), pid=os.getpid(),
                        versions=_versions(), resumed_from=resumed_from, **extra)
        run.emit_state("paused" if run.paused else "running")
        run._answer_inflight()
        run.monitor.start()
        return run

    def end(self, status: str, step: int | None = None, error: str | None = None) -> None:
        """Emit ``run_end`` (``completed`` / ``stopped`` / ``failed``), stop stats, close the file."""
        if self._ended:
            return
        self._ended = True
        self.monitor.stop()
        self._watch_stop.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=5)
        for d in self._deferred:  # every command gets a final answer, even one a pause held back
            self._emit_ack(d.id, "rejected", f"the run ended ({status}) before it could run "
                           f"{d.command.cmd if d.command else 'it'}")
        self._deferred = []
        self._deliver_later()
        if self.stop_command is not None:
            self.confirm_stopped(None, f"the run ended ({status}) first")
        for cid in list(self._returned):  # handed out (or pending off the loop) and never answered
            self.ack(cid, "rejected", reason=f"the run ended ({status}) before it finished")
        try:
            self.writer.emit_final("run_end", status=status,
                                   step=self.step if step is None else step, error=error)
        finally:
            self.writer.close()
            self.control.close()
            self.lock.release()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, _tb: Any) -> None:
        if exc_type is None:
            self.end("stopped" if self.should_stop else "completed")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end("stopped", error="interrupted")
        else:
            self.end("failed", error=f"{exc_type.__name__}: {exc}")

    # -- events --------------------------------------------------------------------------------

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:
        """Append any event (see docs/run-directory.md, "Events")."""
        return self.writer.emit(type, **fields)

    def emit_state(self, state: str) -> None:
        """Emit a ``state`` event (``running`` / ``paused`` / ``stopping``)."""
        self.writer.emit("state", state=state)

    def log_step(self, step: int, epoch: int, losses: Mapping[str, float | None], *,
                 weights: dict[str, float] | None = None, total: float | None = None,
                 lr: float | None = None, grad_norm: float | None = None,
                 step_time: float | None = None, loader_time: float | None = None,
                 **extra: Any) -> None:
        """Log one step: raw (unweighted) losses, the weights beside them, and the optimized total.

        ``total`` defaults to the weighted sum of ``losses`` with ``weights`` (default: the live
        weights; a term whose value is None, one that cannot be measured this step, adds nothing).
        Pass plain floats: ``.item()`` only at your log interval (a GPU sync point).
        """
        self.step = step
        w = self.weights if weights is None else weights
        if total is None:
            total = sum(float(v) * w.get(k, 1.0) for k, v in losses.items() if v is not None)
        if lr is not None:
            self.lr = lr
        self.writer.emit("step", step=step, epoch=epoch, losses=losses, weights=dict(w),
                         total=total, lr=lr, grad_norm=grad_norm, step_time=step_time,
                         loader_time=loader_time, **extra)

    def log_eval(self, step: int, epoch: int, losses: Mapping[str, float | None],
                 total: float | None = None) -> None:
        """Log the average losses over the eval set."""
        if total is None:
            total = sum(float(v) * self.weights.get(k, 1.0) for k, v in losses.items() if v is not None)
        self.writer.emit("eval", step=step, epoch=epoch, losses=losses, total=total)

    def log_checkpoint(self, step: int, path: str | Path, *, is_best: bool = False,
                       metric: float | None = None) -> None:
        """Log a checkpoint written to ``path`` (and fsync the event file: checkpoints are durable)."""
        self.writer.emit("checkpoint", step=step, path=str(path), is_best=is_best, metric=metric)
        self.writer.sync()

    def log_sample(self, step: int, *, wav: str | Path | None = None,
                   reference: str | Path | None = None, text: str | None = None,
                   mel: str | Path | None = None, error: str | None = None, **extra: Any) -> None:
        """Log a sample written during training, or the ``error`` that prevented it."""
        fields: dict[str, Any] = {"wav": str(wav) if wav else None,
                                  "reference": str(reference) if reference else None,
                                  "text": text, "mel": str(mel) if mel else None, **extra}
        if error is not None:
            fields["error"] = error
        self.writer.emit("sample", step=step, **fields)

    def alert(self, kind: str, term: str | None, message: str) -> None:
        """Emit an ``alert`` the trainer itself acts on (non-finite loss)."""
        self.writer.emit("alert", kind=kind, term=term, message=message)

    def ack(self, command_id: str | None, status: str, *, reason: str = "",
            state: dict[str, Any] | None = None) -> None:
        """Answer a command: ``applied`` / ``rejected`` / ``deferred``.

        A final answer to a command handed back by ``poll(unhandled="return")`` marks it consumed.
        """
        self._emit_ack(command_id, status, reason, state)
        if status != "deferred" and command_id in self._returned:
            with self._lock:
                self.control.commit(self._returned.pop(command_id))

    def ack_later(self, command_id: str, status: str, *, reason: str = "",
                  state: dict[str, Any] | None = None) -> None:
        """Queue the final answer of a ``CommandPending`` command; safe from any thread."""
        self._later.append((command_id, status, reason, state or {}))

    def _deliver_later(self) -> None:
        while self._later:
            cid, status, reason, state = self._later.popleft()
            self.ack(cid, status, reason=reason, state=state)

    def _emit_ack(self, command_id: str | None, status: str, reason: str = "",
                  state: dict[str, Any] | None = None) -> None:
        extra = self._previous.replay_fields(command_id, final=status != "deferred")
        self.writer.emit("ack", id=command_id, status=status, reason=reason, step=self.step,
                         state=state or {}, **extra)

    def _answer(self, d: Decision, status: str, reason: str = "",
                state: dict[str, Any] | None = None) -> None:
        """Ack ``d`` and, when the answer is final, count its line as handled."""
        self._emit_ack(d.id, status, reason, state)
        if status != "deferred":
            with self._lock:
                self.control.commit(d)

    # -- commands ------------------------------------------------------------------------------

    def on(self, cmd: str, handler: Handler) -> None:
        """Register ``handler(command) -> state`` for ``save`` / ``eval`` / ``sample`` / lr commands."""
        self._handlers[cmd] = handler

    def set_terms(self, terms: Iterable[str], default: float = 1.0) -> None:
        """Add terms discovered after the start (their weight defaults to ``default``)."""
        for t in terms:
            self.weights.setdefault(t, default)

    def poll(self, step: int | None = None, *, unhandled: str = "reject") -> list[Command]:
        """Read new commands and apply them at this step boundary.

        A valid command with no handler (see ``on``) is rejected with a reason saying so, unless
        ``unhandled="return"``: then it is returned, and the caller applies it and calls ``ack``.
        """
        out = self._poll(step)
        if unhandled == "return":
            return out
        for c in out:
            self.ack(c.id, "rejected", reason=f"{c.cmd}: this training loop does not handle it "
                     "(no handler registered with Run.on)")
        return []

    def _poll(self, step: int | None) -> list[Command]:
        if step is not None:
            self.step = step
        self._deliver_later()  # answers finished off the loop, written from this thread only
        with self._lock:
            self._last_poll = time.monotonic()
            decisions = self._read_commands()
            pending, self._deferred = self._deferred, []
        out: list[Command] = []
        for d in pending:  # held back by a pause, or while the loop was busy, in their order
            if self.paused and d.command is not None and d.command.cmd not in WHILE_PAUSED:
                self._hold(d, None)
            else:
                out.extend(self._apply(d))
        for d in decisions:
            out.extend(self._decide(d))
        with self._lock:
            self._last_poll = time.monotonic()  # a handler (eval, save) may have run for minutes
        return out

    def _read_commands(self) -> list[Decision]:
        """New command lines (the caller holds ``_lock``); control-file problems become alerts."""
        decisions = self.control.poll()
        for notice in self.control.take_notices():  # each problem once, never fatal
            self.alert("control", None, notice.message)
        return decisions

    def _hold(self, d: Decision, reason: str | None) -> None:
        """Keep ``d`` for a later boundary; ``reason`` acks it ``deferred`` (None: acked already)."""
        with self._lock:
            self._deferred.append(d)
            self._deferred_at.setdefault(d.id or "", self.step)
        if reason is not None:
            self._emit_ack(d.id, "deferred", reason)

    def keep_answering(self, busy: Callable[[], str], *, after: float = 1.0) -> None:
        """Answer commands within a second even when the loop has no step boundary for a while.

        A thread checks every quarter second: when the loop has not polled for ``after`` seconds
        (an evaluation, a slow step, a data loader starting), new commands are acked ``deferred``
        with ``busy()`` as the reason (say what the loop is doing and when they apply); they are
        then applied, in order, at the next ``poll``.
        """
        if self._watcher is not None:
            return

        def watch() -> None:
            while not self._watch_stop.wait(0.25):
                self.defer_while_busy(busy, after=after)

        self._watcher = threading.Thread(target=watch, name="traintop-commands", daemon=True)
        self._watcher.start()

    def defer_while_busy(self, busy: Callable[[], str], *, after: float = 1.0) -> int:
        """One check of ``keep_answering``: ack new commands ``deferred`` if no poll for ``after`` s."""
        with self._lock:
            if self._ended or time.monotonic() - self._last_poll < after:
                return 0
            decisions = self._read_commands()
        if not decisions:
            return 0
        reason = busy()
        for d in decisions:
            if not d.accepted or d.command is None:
                self._answer(d, "rejected", d.reason)
            else:
                self._hold(d, reason)
        return len(decisions)

    def _decide(self, d: Decision) -> list[Command]:
        if not d.accepted or d.command is None:
            self._answer(d, "rejected", d.reason)
            return []
        if self.paused and d.command.cmd not in WHILE_PAUSED:
            self._hold(d, "paused: runs after resume")  # eval / sample wait for resume, as promised
            return []
        return self._apply(d)

    def _apply(self, d: Decision) -> list[Command]:
        c = d.command
        assert c is not None
        if c.cmd in SELF_HANDLED:
            status, reason, state = self._apply_own(c)
            if c.cmd == "stop" and self.confirm_stop:
                # handled now (a resume from the final checkpoint must not stop again); the final
                # answer says whether that checkpoint was written
                self._emit_ack(d.id, "deferred", "stopping: the answer follows once the final "
                               "checkpoint is written")
                with self._lock:
                    self.control.commit(d)
                self.stop_command = c.id
            else:
                self._answer(d, status, reason, state)
            return []
        handler = self._handlers.get(c.cmd)
        if handler is None:
            self._returned[c.id] = d
            return [c]
        self._inflight = d  # a checkpoint written by this handler counts the command as handled
        try:
            result = handler(c)
        except CommandRejected as exc:
            self._answer(d, "rejected", str(exc))
            return []
        except CommandPending as exc:
            self._returned[c.id] = d  # counted as handled once ack_later's answer is written
            self._emit_ack(d.id, "deferred", str(exc))
            return []
        except Exception as exc:  # a failing save/sample must answer, not kill training
            self._answer(d, "rejected", f"{c.cmd} failed: {type(exc).__name__}: {exc}")
            return []
        finally:
            self._inflight = None
        self._answer(d, "applied", state=result or {})
        return []

    def _apply_own(self, c: Command) -> tuple[str, str, dict[str, Any]]:
        """Apply pause / resume / stop / set_weight; return the ack's (status, reason, state)."""
        if c.cmd == "pause":
            if self.paused:
                return "applied", "already paused", {"state": "paused"}
            self.paused = True
            self.emit_state("paused")
            return "applied", "", {"state": "paused"}
        if c.cmd == "resume":
            was = self.paused
            self.paused = False
            if was:
                self.emit_state("running")
            return "applied", "" if was else "not paused", {"state": "running"}
        if c.cmd == "stop":
            self.should_stop = True
            self.paused = False
            self.stop_reason = "stop command"
            self.emit_state("stopping")
            return "applied", "", {"state": "stopping"}
        if self.weights_fixed:
            return "rejected", self.weights_fixed, {}
        term, value = c.args["term"], float(c.args["value"])
        old = self.weights.get(term)
        self.weights[term] = value
        return "applied", "", {"term": term, "weight": value, "previous": old,
                               "from_step": self.step + 1}

    def confirm_stopped(self, checkpoint: str | Path | None, error: str | None = None) -> None:
        """The final answer to a ``stop`` command (``confirm_stop``): its checkpoint, or why none."""
        cid, self.stop_command = self.stop_command, None
        if cid is None:
            return
        if checkpoint is not None:
            self._emit_ack(cid, "applied", state={"state": "stopped", "checkpoint": str(checkpoint),
                                                  "step": self.step})
        else:
            self._emit_ack(cid, "rejected", f"the run stopped at step {self.step}, but its final "
                           f"checkpoint could not be written: {error}")

    def request_stop(self, reason: str) -> None:
        """Stop from inside the trainer (Ctrl-C, non-finite policy): same path as ``stop``."""
        if not self.should_stop:
            self.should_stop = True
            self.paused = False
            self.stop_reason = reason
            self.emit_state("stopping")

    def pause(self, reason: str) -> None:
        """Pause from inside the trainer (non-finite policy ``pause``)."""
        if not self.paused:
            self.paused = True
            self.emit_state("paused")

    def wait_while_paused(self, step: int | None = None, *, unhandled: str = "reject",
                          sleep: Callable[[float], None] = time.sleep) -> list[Command]:
        """Block while paused, still answering commands (``unhandled`` as in ``poll``)."""
        out: list[Command] = []
        while self.paused and not self.should_stop:
            sleep(self.poll_interval)
            out.extend(self.poll(step, unhandled=unhandled))
        return out

    # -- checkpoint state ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must carry for an exact resume.

        Weights, lr, the commands handled (a command whose handler is writing this checkpoint counts
        as handled, and is named in ``inflight`` so its ack is written after a restart if it was
        lost), the paused state, the event ``seq`` and the size of ``events.jsonl`` (acks after it
        are looked up on resume to mark replays).
        """
        d = self._inflight
        with self._lock:
            control = self.control.snapshot(d).to_dict()
            deferred = {x.id: self._deferred_at.get(x.id or "") for x in self._deferred}
        return {"weights": dict(self.weights), "lr": self.lr,
                "control": control, "seq": self.writer.next_seq,
                "events_offset": self.writer.size(), "paused": self.paused,
                "deferred": deferred,
                "inflight": {"id": d.id, "cmd": d.command.cmd if d.command else None} if d else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore weights, the commands handled and the paused state (``seq`` continues by itself)."""
        self.weights.update({k: float(v) for k, v in (state.get("weights") or {}).items()
                             if isinstance(v, (int, float)) and math.isfinite(v)})
        self.lr = state.get("lr")
        self.paused = bool(state.get("paused"))
        self._resume = state
        if state.get("control") is not None:
            self.control.close()
            self.control = ControlReader(self.run_dir, terms=lambda: self.weights.keys(),
                                         state=ControlState.from_dict(state["control"]))
        self._previous = AckHistory.since(self.writer.path, state.get("events_offset"))
        for cid, step in (state.get("deferred") or {}).items():  # deferred before the checkpoint
            self._previous.any.setdefault(cid, step)

    def _answer_inflight(self) -> None:
        """The command a checkpoint was written for, whose ack the restart may have lost."""
        inflight = (self._resume or {}).get("inflight") or {}
        cid = inflight.get("id")
        if cid and not self._previous.has_final(cid):
            self._emit_ack(cid, "applied", "answered after a restart: the checkpoint it wrote "
                           "is the one this run resumed from", {"recovered": True})
