"""TensorBoard folders written by programs we did not write, judged truthfully: torch's
``SummaryWriter`` at mixed cadences, tensorboardX's non-scalar summaries, PyTorch Lightning on CPU,
and TensorFlow 2 / Keras 3 files (committed: ``foreign/make_tf2.py`` wrote them). A missing value is
no NaN, a histogram is no loss term, ``val_loss`` is an evaluation, ``epoch`` is bookkeeping."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from traintop.sources.find import find_runs
from traintop.sources.tensorboard.files import event_files
from traintop.sources.tensorboard.reader import TensorBoardReader
from traintop.sources.tensorboard.record import masked_crc

REPO = Path(__file__).resolve().parents[2]
TF2 = Path(__file__).resolve().parent / "foreign" / "tf2"


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Decoded samples go to a cache of the test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def traintop(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(cache)}
    proc = subprocess.run([sys.executable, "-m", "traintop.cli", *args], capture_output=True, text=True, env=env,
                          timeout=180)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def judged(rep: dict) -> list[dict]:
    """The alerts of a report but the ``info`` one a quiet folder gets (its files do not say it ended)."""
    return [a for a in rep["alerts"] + rep["ended_alerts"] if not (a["kind"] == "stall" and a["severity"] == "info")]


def report(path: Path, cache: Path) -> tuple[int, dict]:
    proc = traintop("report", str(path), "--json", cache=cache)
    return proc.returncode, (json.loads(proc.stdout) if proc.stdout.strip() else {})


def read(path: Path) -> TensorBoardReader:
    reader = TensorBoardReader(path, use_watchdog=False)
    reader.open()
    return reader


def tensorboard_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series as TensorBoard's own loader reads the folder (tensor or simple value)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    out = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    for tag in acc.Tags()["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name == "scalars":
            out[tag] = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
    return out


def ours(history: object, stream: str, term: str) -> list[tuple[int, float]]:
    table = history.steps if stream == "train" else history.evals  # type: ignore[attr-defined]
    values = table.term(term) if term not in table.fixed_names else table[term]
    keep = np.isfinite(values)
    return list(zip(table["step"][keep].tolist(), values[keep].astype(np.float32).tolist(), strict=True))


def same(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> bool:
    return [s for s, _ in a] == [s for s, _ in b] and np.allclose([v for _, v in a], [v for _, v in b], rtol=1e-6)


# -- 1. missing is not NaN ---------------------------------------------------------------------------------


def write_cadences(run: Path, nan_at: int | None = None) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(run))
    for s in range(1, 401):
        w.add_scalar("train/loss_mel", 10 / s ** 0.3, s)
        if s % 10 == 0:
            w.add_scalar("train/loss_dur", float("nan") if s == nan_at else 2 / s ** 0.2, s)
        if s % 50 == 0:
            w.add_scalar("eval/loss_mel", 11 / s ** 0.3, s)
    w.close()
    return run


def test_a_term_logged_every_tenth_step_is_not_nan_in_between(tmp_path: Path, cache_home: Path) -> None:
    run = write_cadences(tmp_path / "run")
    rc, rep = report(run, cache_home)
    assert rc == 0 and rep["verdict"] == "healthy"
    assert not judged(rep)
    assert rep["profile"] == "generic"  # one shared name (loss_mel) is no evidence of a VITS run
    theirs = tensorboard_scalars(run)
    h = read(run).history
    assert same(ours(h, "train", "loss_mel"), theirs["train/loss_mel"])
    assert same(ours(h, "train", "loss_dur"), theirs["train/loss_dur"]) and len(theirs["train/loss_dur"]) == 40
    assert same(ours(h, "eval", "loss_mel"), theirs["eval/loss_mel"])


def test_a_logged_nan_at_its_own_cadence_is_still_critical(tmp_path: Path, cache_home: Path) -> None:
    run = write_cadences(tmp_path / "run", nan_at=300)
    rc, rep = report(run, cache_home)
    nonfinite = [a for a in rep["alerts"] + rep["ended_alerts"] if a["kind"] == "nonfinite"]
    assert [(a["term"], a["step"], a["severity"]) for a in nonfinite] == [("loss_dur", 300, "critical")]
    assert rep["worst_so_far"]["kind"] == "nonfinite"  # ended at 310, the next value: said as the worst so far


# -- 2. only true scalars are series --------------------------------------------------------------------------


def test_tensorboardx_pr_curves_and_histograms_are_not_terms(tmp_path: Path, cache_home: Path) -> None:
    from tensorboardX import SummaryWriter

    run = tmp_path / "tbx"
    w = SummaryWriter(str(run))
    rng = np.random.default_rng(0)
    for s in range(1, 121):
        w.add_scalar("train/loss", 1 / s, s)
        if s % 40 == 0:
            w.add_pr_curve("pr/voiced", rng.integers(0, 2, 64), rng.random(64), s)
            w.add_histogram("weights/dense", rng.standard_normal(100), s)
            w.add_text("notes", f"step {s}", s)
    w.close()
    rc, rep = report(run, cache_home)
    assert rc == 0 and set(rep["terms"]) == {"loss", "total"}
    assert {m.split(":")[0] for m in rep["data"]["not_shown"]} == {"pr/voiced", "weights/dense", "notes/text_summary"}
    assert same(ours(read(run).history, "train", "loss"), tensorboard_scalars(run)["train/loss"])
    text = traintop("report", str(run), cache=cache_home).stdout
    assert "Not shown (3 tag(s)" in text and "pr/voiced: a pr_curves summary" in text


# -- 3, 4. TensorFlow 2 and Keras 3 ----------------------------------------------------------------------------


def test_tf2_summaries_scalars_audio_and_the_rest(tmp_path: Path, cache_home: Path) -> None:
    run = tmp_path / "summaries"
    shutil.copytree(TF2 / "summaries", run)
    rc, rep = report(run, cache_home)
    assert rc == 0 and not judged(rep)
    assert set(rep["terms"]) == {"loss_mel", "loss_dur", "total"}
    assert rep["samples"] == {"made": 3, "failed": 0}  # tf.summary.audio (WAV in a string tensor)
    assert sorted(m.split(":")[0] for m in rep["data"]["not_shown"]) == ["notes", "weights/dense"]
    h = read(run).history
    theirs = tensorboard_scalars(run)
    assert same(ours(h, "train", "loss_mel"), theirs["train/loss_mel"])
    assert same(ours(h, "train", "loss_dur"), theirs["train/loss_dur"])
    assert same(ours(h, "eval", "loss_mel"), theirs["eval/loss_mel"])
    assert same(ours(h, "train", "lr"), theirs["train/learning_rate"])
    assert [s["step"] for s in h.samples] == [100, 200, 300]


def test_keras_train_and_validation_folders_are_one_run(tmp_path: Path, cache_home: Path) -> None:
    root = tmp_path / "tf"
    shutil.copytree(TF2 / "keras", root / "a" / "keras")
    shutil.copytree(TF2 / "keras", root / "b" / "keras")
    assert sorted(find_runs(root)) == [root / "a" / "keras", root / "b" / "keras"]
    rc, rep = report(root / "a" / "keras", cache_home)
    assert rc == 0 and not judged(rep)
    assert set(rep["terms"]) == {"loss", "total"} and rep["profile"] == "generic"
    h = read(root / "a" / "keras").history
    theirs_train = tensorboard_scalars(root / "a" / "keras" / "train")
    theirs_eval = tensorboard_scalars(root / "a" / "keras" / "validation")
    assert same(ours(h, "train", "loss"), theirs_train["epoch_loss"])
    assert same(ours(h, "eval", "loss"), theirs_eval["epoch_loss"])  # the validation side: evaluations
    assert same(ours(h, "train", "lr"), theirs_train["epoch_learning_rate"])
    assert len(h.evals) == 12 and "evaluation_loss_vs_iterations" not in h.evals.terms  # another x-axis
    names = {m.split(":")[0] for m in rep["data"]["not_shown"]}
    assert "train/sequential/dense/kernel/histogram" in names
    listed = json.loads(traintop("runs", str(root), "--json", cache=cache_home).stdout)
    assert sorted(r["name"] for r in listed) == ["a/keras", "b/keras"]  # not train, validation, validation, train


# -- 4. Lightning's conventions ---------------------------------------------------------------------------------


def test_lightning_defaults_are_read_as_lightning_means_them(tmp_path: Path, cache_home: Path) -> None:
    script = tmp_path / "fit.py"
    script.write_text('''
import torch, pytorch_lightning as pl
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.loggers import TensorBoardLogger

class Model(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(8, 1)
        self.save_hyperparameters({"lr": 0.01})
    def training_step(self, batch, i):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss
    def validation_step(self, batch, i):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))
    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), 1e-2)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 2)}

torch.manual_seed(0)
x = torch.randn(256, 8)
data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)
trainer = pl.Trainer(max_epochs=4, logger=TensorBoardLogger("logs"), callbacks=[LearningRateMonitor()],
                     log_every_n_steps=4, enable_progress_bar=False, enable_model_summary=False,
                     enable_checkpointing=False, accelerator="cpu")
trainer.fit(Model(), data, data)
''')
    subprocess.run([sys.executable, str(script)], cwd=tmp_path, check=True, capture_output=True, timeout=300)
    root = tmp_path / "logs"
    [run] = find_runs(root)
    rc, rep = report(run, cache_home)
    assert rc == 0 and not judged(rep), judged(rep)
    assert set(rep["terms"]) == {"loss", "total"}
    assert {m.split(":")[0] for m in rep["data"]["not_shown"]} == {"epoch", "hp_metric"}
    h = read(run).history
    theirs = tensorboard_scalars(run)
    assert same(ours(h, "train", "loss"), theirs["train_loss"])
    assert same(ours(h, "eval", "loss"), theirs["val_loss"])  # Lightning's val_ is an evaluation
    assert same(ours(h, "train", "lr"), theirs["lr-Adam"])
    listed = json.loads(traintop("runs", str(root), "--json", cache=cache_home).stdout)
    assert [r["name"] for r in listed] == ["lightning_logs/version_0"]


# -- 10. resumed, torn, too long, a step jump ---------------------------------------------------------------------


def test_a_resumed_writer_replaces_the_steps_it_logs_again(tmp_path: Path, cache_home: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "run"
    w = SummaryWriter(str(run))
    for s in range(1, 1001):
        w.add_scalar("loss", 1.0 + 1 / s, s)
    w.close()
    time.sleep(1.1)  # the next file's name carries a later second
    w = SummaryWriter(str(run))  # resumed from the checkpoint at step 952
    for s in range(952, 1001):
        w.add_scalar("loss", 0.5, s)
    w.close()
    assert len(event_files(run)) == 2
    h = read(run).history
    steps = h.steps["step"]
    assert len(h.steps) == 1000 and (np.diff(steps) == 1).all() and h.segments == [0]
    assert (h.steps.term("loss")[steps >= 952] == 0.5).all() and (h.steps.term("loss")[steps < 952] > 1).all()


def test_a_torn_last_record_is_read_up_to_and_said(tmp_path: Path, cache_home: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "run"
    w = SummaryWriter(str(run))
    for s in range(1, 99):
        w.add_scalar("loss", 1 / s, s)
    w.close()
    path = event_files(run)[0]
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size - 5)  # the writer died inside step 98's record
    old = time.time() - 60
    os.utime(path, (old, old))
    h = read(run).history
    assert h.steps["step"][-1] == 97 == len(h.steps)  # every whole record, the last one's step included
    assert [n.kind for n in h.notices] == ["torn"]
    rc, rep = report(run, cache_home)
    assert rep["data"]["torn"] == 1


def test_a_huge_record_length_with_a_good_crc_is_named_so(tmp_path: Path, cache_home: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "run"
    w = SummaryWriter(str(run))
    for s in range(1, 50):
        w.add_scalar("loss", 1 / s, s)
    w.close()
    path = event_files(run)[0]
    length = struct.pack("<Q", 1 << 60)
    with open(path, "ab") as fh:
        fh.write(length + struct.pack("<I", masked_crc(length)) + b"\0" * 64)
    h = read(run).history
    assert len(h.steps) == 49
    [notice] = [n for n in h.notices if n.kind == "bad_line"]
    assert f"claims {1 << 60} bytes" in notice.message and "CRC" not in notice.message


def test_speed_after_a_step_counter_jump(tmp_path: Path, cache_home: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "jump"
    w = SummaryWriter(str(run))
    for s in range(1, 41):
        w.add_scalar("loss", 1 / s, s, walltime=1_700_000_000 + s)
    w.add_scalar("loss", 0.01, 1 << 40, walltime=1_700_000_041)
    w.close()
    [listed] = json.loads(traintop("runs", str(run), "--json", cache=cache_home).stdout)
    assert listed["step"] == 1 << 40 and listed["steps_per_s"] is None  # one row after the jump: no speed


# -- 8, 9. a folder of runs; an unreadable file --------------------------------------------------------------------


def test_report_on_a_folder_of_runs_is_a_table(tmp_path: Path, cache_home: Path) -> None:
    root = tmp_path / "runs"
    write_cadences(root / "healthy")
    write_cadences(root / "broken", nan_at=300)
    write_cadences(root / "nested" / "also")
    proc = traintop("report", str(root), cache=cache_home)
    assert proc.returncode == 0, proc.stderr  # the worst verdict (an alert that ended is no verdict of a live run)
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:2] == ["RUN", "VERDICT"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"broken", "healthy", "nested/also"}
    assert "critical: loss_dur: train value is NaN at step 300" in rows["broken"]
    listed = json.loads(traintop("report", str(root), "--json", cache=cache_home).stdout)
    assert {r["run"]: r["report"]["worst_so_far"] is None for r in listed} == {
        "broken": False, "healthy": True, "nested/also": True}
    every = traintop("report", str(root), "--all", cache=cache_home).stdout
    assert every.count("Checklist") == 3


def test_an_unreadable_event_file_is_said_in_the_report(tmp_path: Path) -> None:
    from tests.accounts import as_other, shared_folder

    with shared_folder() as shared:
        run = write_cadences(shared / "run")
        from torch.utils.tensorboard import SummaryWriter

        time.sleep(1.1)
        w = SummaryWriter(str(run))
        w.add_scalar("train/loss_mel", 1.0, 500)
        w.close()
        run.chmod(0o755)
        first, second = event_files(run)
        first.chmod(0o644)
        second.chmod(0o600)  # this account's own: another may not read it
        argv = ["python", "-m", "traintop.cli", "report", str(run)]
        text = as_other(argv)
        assert "1 file(s) could not be read" in text.stdout and "Permission denied" in text.stdout, text
        js = json.loads(as_other([*argv, "--json"]).stdout)
        assert js["data"]["unreadable"] == [f"{second.name}: Permission denied"]
        polls = as_other(["python", "-c", "from traintop.sources.tensorboard.reader import TensorBoardReader\n"
                          f"r = TensorBoardReader({str(run)!r}, use_watchdog=False)\nr.open()\n"
                          "for _ in range(5): r.poll()\n"
                          "print(sum(n.kind == 'unreadable' for n in r.history.notices))"])
        assert polls.stdout.split() == ["1"], polls  # said once, not at every poll of a live watch
        first.chmod(0o600)
        alone = as_other(argv)
        assert alone.returncode == 3 and "Permission denied" in alone.stderr, alone


# -- 5. a folder of many runs ----------------------------------------------------------------------------------


def test_peek_reads_a_bounded_head_and_tail(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "long"
    w = SummaryWriter(str(run))
    for s in range(1, 30_001):
        w.add_scalar("train/loss_mel", 5 / s ** 0.3, s, walltime=1_700_000_000 + s * 0.1)
        w.add_scalar("train/lr", 1e-4, s, walltime=1_700_000_000 + s * 0.1)
    w.close()
    whole = read(run).history
    peeked = TensorBoardReader.peek(run, tail_bytes=64 << 10)
    assert event_files(run)[0].stat().st_size > 1 << 20
    assert len(peeked.steps) < len(whole.steps) // 5  # the head and the tail, not the whole file
    assert (peeked.first_t, peeked.last_t, peeked.last_step) == (whole.first_t, whole.last_t, 30_000)
    assert peeked.steps["step"][0] == 1 and (np.diff(peeked.steps["step"]) > 0).all()
    from traintop.sources.runs import speed

    assert speed(peeked) == pytest.approx(speed(whole)) == pytest.approx(10.0)
    assert not peeked.notices


def test_the_runs_list_reads_and_judges_only_runs_that_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              cache_home: Path) -> None:
    from traintop.tui.live import default_monitor_factory
    from traintop.tui.screens import runs as runs_screen

    root = tmp_path / "runs"
    for name in ("a", "b", "c"):
        write_cadences(root / name)
    peeks: list[str] = []
    real_peek = runs_screen.peek_run
    monkeypatch.setattr(runs_screen, "peek_run", lambda run: peeks.append(run.name) or real_peek(run))
    scanner = runs_screen.RunsScanner(root, default_monitor_factory)
    now = time.time()
    parts: list[list] = []
    monkeypatch.setattr(runs_screen, "PARTS_FROM", 3)  # a folder this big is shown before it is read
    first, _ = scanner.scan(now, lambda part, note: parts.append(part))
    assert sorted(peeks) == ["a", "b", "c"] and {s.status for _, s in first} == {"running"}
    assert [sorted((s.name, s.status) for _, s in parts[0])] == [[("a", "reading"), ("b", "reading"),
                                                                  ("c", "reading")]]  # named before any is read
    parts.clear()
    write_cadences(root / "d")
    scanner.scan(now, lambda part, note: parts.append(part))
    assert parts == []  # one new run to read: the list comes whole
    peeks.clear()
    again, _ = scanner.scan(now + 1000)  # nothing changed: nothing read, but the clock moves the status
    assert peeks == [] and {s.status for _, s in again} == {"idle"} and len(again) == 4
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(root / "b"))
    w.add_scalar("train/loss_mel", 0.5, 401)
    w.close()
    scanner.scan(now + 1001)
    assert peeks == ["b"]


# -- 4. what no rule knows: the profile's ``tags:`` --------------------------------------------------------------


def test_a_profile_says_what_tags_no_rule_knows_are(tmp_path: Path, cache_home: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "custom"
    w = SummaryWriter(str(run))
    for s in range(1, 201):
        w.add_scalar("mel_l1", 3 / s ** 0.3, s)
        w.add_scalar("scratch/debug_norm", float(s), s)
        if s % 20 == 0:
            w.add_scalar("dev_mel_l1", 3.3 / s ** 0.3, s)
    w.close()
    rc, rep = report(run, cache_home)
    assert set(rep["terms"]) == {"mel_l1", "scratch/debug_norm", "dev_mel_l1", "total"}
    profile = tmp_path / "mine.yaml"
    profile.write_text('name: mine\ntags:\n  "^dev_": eval\n  "^scratch/": ignore\n')
    proc = traintop("report", str(run), "--json", "--profile", str(profile), cache=cache_home)
    rep = json.loads(proc.stdout)
    assert set(rep["terms"]) == {"mel_l1", "dev_mel_l1", "total"} and rep["profile"] == "mine"
    h = TensorBoardReader(run, use_watchdog=False, tag_rules=(("^dev_", "eval"), ("^scratch/", "ignore")))
    h.open()
    assert len(h.history.evals) == 10 and "dev_mel_l1" in h.history.evals.terms
    assert "dev_mel_l1" not in h.history.steps.terms and "scratch/debug_norm" not in h.history.steps.terms
    profile.write_text('name: mine\ntags:\n  "^dev_(": eval\n')
    bad = traintop("report", str(run), "--profile", str(profile), cache=cache_home)
    assert bad.returncode == 3 and "tags.^dev_(" in bad.stderr and "regular expression" in bad.stderr
    profile.write_text('name: mine\ntags:\n  "^dev_": validation\n')
    bad = traintop("report", str(run), "--profile", str(profile), cache=cache_home)
    assert bad.returncode == 3 and "one of train, eval" in bad.stderr and "mine.yaml" in bad.stderr


@pytest.mark.parametrize(("field", "wire"), [(5, bytes([0x28, 0x07])),  # float_val as a varint
                                             (6, bytes([0x35]) + b"\x00\x00\xc0\x3f")])  # double_val in 4 bytes
def test_a_tensor_value_with_the_wrong_wire_type_is_skipped_not_a_crash(tmp_path: Path, field: int,
                                                                         wire: bytes) -> None:
    """protobuf's own writer keeps a field it cannot type as an unknown field and writes it back: a
    tensor whose float / double values came with another wire type (its CRCs good) is one record
    said and skipped; the scalars around it are read."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    run = tmp_path / "run"
    writer = EventFileWriter(str(run))
    scalars = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    for step in range(1, 6):
        tensor = TensorProto()
        if step == 3:
            tensor.ParseFromString(bytes([0x08, 1 if field == 5 else 2]) + wire)  # dtype, then the odd field
        else:
            tensor.dtype, tensor.float_val[:] = 1, [1.0 / step]
        value = summary_pb2.Summary.Value(tag="loss", tensor=tensor, metadata=scalars)
        summary = summary_pb2.Summary(value=[value])
        writer.add_event(event_pb2.Event(wall_time=1000.0 + step, step=step, summary=summary))
    writer.close()
    reader = TensorBoardReader(run, use_watchdog=False)
    reader.open()
    h = reader.history
    assert list(h.steps["step"]) == [1, 2, 4, 5]
    assert [n.kind for n in h.notices] == ["bad_line"] and "wrong wire type" in h.notices[0].message
