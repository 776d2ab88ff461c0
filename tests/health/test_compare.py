"""The comparison maths over real ``EventWriter`` runs: changes and forks, alignment, who is ahead,
what differs, and a run's ``run.yaml`` read as untrusted data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.tui.fixtures import append_events, weight_run
from traintop.health.compare import (
    Member,
    changes,
    compare_term,
    diff_rows,
    diff_sentences,
    fork,
    member_stats,
    pieces,
    read_config,
    run_facts,
    series_of,
)
from traintop.health.streams import debiased_ema
from traintop.sources.history import RunHistory
from traintop.sources.jsonl.load import load_history


def _history(run: Path) -> RunHistory:
    return load_history(run / "events.jsonl")[0]


def test_a_weight_change_and_an_lr_command_are_the_forks_cuts(tmp_path: Path) -> None:
    run = weight_run(tmp_path, "a", steps=200, change_at=120, end=False)
    append_events(run, ("ack", {"id": "lr1", "status": "applied", "reason": "", "step": 200,
                                "state": {"lr": 5e-5, "factor": 0.5, "from_step": 201}}),
                  ("step", {"step": 201, "epoch": 2, "losses": {"loss_mel": 0.2}, "weights": {}, "total": 0.2,
                            "lr": 5e-5, "grad_norm": 1.0, "step_time": 0.2, "loader_time": 0.01}))
    h = _history(run)
    found = changes(h)
    assert [(c.step, c.row, c.what, c.term) for c in found] == [
        (120, 119, "speaker 0.8 → 1.2", "speaker"), (201, 200, "scale_lr 0.5 (lr → 5e-05)", None)]
    before, after = fork("a", found[0])
    assert after.rows(h) == (119, 201) and before.rows(h) == (37, 119)  # 82 rows on each side
    x_before = pieces(h, before, "start")[0].aligned
    x_after = pieces(h, after, "start")[0].aligned
    assert x_before[0] == x_after[0] == 0 and x_before[-1] == x_after[-1] == 81  # both from 0, same length


def test_the_common_step_and_who_is_ahead(tmp_path: Path) -> None:
    slow = _history(weight_run(tmp_path, "slow", speed=150.0, steps=400))
    fast = _history(weight_run(tmp_path, "fast", speed=40.0, steps=250))
    parts = []
    for h, label in ((slow, "A"), (fast, "B")):
        raw = series_of(h, "loss_mel")
        parts.append(member_stats(h, Member(label, label), raw, debiased_ema(raw, 0.9), "good", "step"))
    cmp = compare_term("loss_mel", parts)
    assert cmp.common_x == 250 and cmp.ahead_common == 1 and cmp.ahead_now == 1
    a, b = cmp.stats
    assert a.end_step == 400 and b.end_step == 250 and a.best_step is not None and a.best_step > 300
    assert a.at_common is not None and a.ema is not None and a.at_common > a.ema  # A fell further after 250
    assert b.change is not None and b.change < -1.5


def test_a_term_missing_from_a_run_is_not_present(tmp_path: Path) -> None:
    h = _history(weight_run(tmp_path, "a"))
    stats, _, _ = member_stats(h, Member("A", "a"), series_of(h, "loss_dur"), None, None, "step")
    assert not stats.present
    nan_total = np.full(len(h.steps), np.nan, dtype=np.float32)  # a TensorBoard run logs no total
    stats, _, _ = member_stats(h, Member("A", "a"), nan_total, None, None, "step")
    assert not stats.present


def test_what_differs_reads_as_sentences(tmp_path: Path) -> None:
    a = weight_run(tmp_path, "a", mel_weight=45.0, batch_size=4)
    b = weight_run(tmp_path, "b", mel_weight=30.0, batch_size=8, change_at=100)
    ha, hb = _history(a), _history(b)
    rows = diff_rows([run_facts(ha, read_config(a)), run_facts(hb, read_config(b))])
    assert [(r.key, r.values) for r in rows] == [("weight loss_mel", ("45", "30")),
                                                 ("run.yaml:training.batch_size", ("4", "8"))]
    sentences = diff_sentences([Member("A", "a"), Member("B", "b")], [ha, hb], rows)
    assert sentences == ["loss_mel 45 → 30 at step 0 in B", "run.yaml:training.batch_size 4 → 8 in B",
                         "speaker 0.8 → 1.2 at step 100 in B"]
    one_sided = diff_sentences([Member("A", "a"), Member("B", "b")], [ha, hb],
                               diff_rows([{"lr": "1e-4"}, {}]))
    assert one_sided[0] == "lr 1e-4 in A (none in B)"
    only_b = diff_sentences([Member("A", "a"), Member("B", "b")], [ha, hb], diff_rows([{}, {"weight loss_kl": "1"}]))
    assert only_b[0] == "weight loss_kl 1 in B (none in A)"  # one side only: the key says it is a weight


def test_run_yaml_is_read_as_untrusted_data(tmp_path: Path) -> None:
    run = weight_run(tmp_path, "a")
    assert read_config(run) == {"recipe": "xtts_tiny", "training": {"lr": 0.0001, "batch_size": 4}}
    (run / "run.yaml").write_text("a: &x [1, 2]\nb: *x\n")  # aliases can multiply a small file
    assert read_config(run) is None
    (run / "run.yaml").write_text("!!python/object/apply:os.system ['true']\n")
    assert read_config(run) is None
    (run / "run.yaml").write_bytes(b"k: " + b"x" * (2 << 20))
    assert read_config(run) is None
    (run / "run.yaml").unlink()
    secret = tmp_path / "secret.yaml"
    secret.write_text("token: hunter2\n")
    (run / "run.yaml").symlink_to(secret)
    assert read_config(run) is None  # a link is never followed
    (run / "run.yaml").unlink()
    os.mkfifo(run / "run.yaml")
    assert read_config(run) is None  # a FIFO never blocks


@pytest.mark.parametrize("align", ["step", "start", "resume", "time"])
def test_every_alignment_rises_along_each_piece(tmp_path: Path, align: str) -> None:
    h = _history(weight_run(tmp_path, "a", steps=120))
    (piece,) = pieces(h, Member("A", "a"), align)
    x = piece.aligned
    assert (piece.a, piece.b) == (0, 120) and np.all(np.diff(x) > 0) and piece.reach == x[-1]
    assert piece.upto(x[10]) == 10 and piece.upto(x[0] - 1) == -1
    assert x[0] == {"step": 1.0, "start": 0.0, "resume": 0.0, "time": 0.0}[align]
