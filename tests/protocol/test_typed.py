"""The term-set Struct decoder reads a block exactly as the line-by-line path does.

``typed.py`` decodes a whole block with a Struct of the run's loss terms when that is provably the
same; these streams probe the proof: evaluations listing the terms in another order, term names that
are no Python identifiers, one term, a row without a term, an extra term, a mark inside a string.
"""

from __future__ import annotations

import numpy as np
import pytest

from traintop.protocol.events import encode_event
from traintop.sources import block as block_mod
from traintop.sources.block import Block, decode_block, decode_lines
from traintop.sources.lines import split_lines


@pytest.fixture(autouse=True)
def _struct_path_for_small_blocks(monkeypatch) -> None:
    monkeypatch.setattr(block_mod, "STRUCT_MIN_BYTES", 0)  # these blocks are small; a real open's are MiBs


def _step(seq: int, losses: dict, **more: object) -> bytes:
    return encode_event({"v": 1, "type": "step", "t": 100.0 + seq, "seq": seq, "step": seq, "epoch": 0,
                         "losses": losses, "weights": dict.fromkeys(losses, 1.0), "total": 1.0, "lr": 1e-3,
                         "grad_norm": 1.0, "step_time": 0.1, "loader_time": 0.0, **more})


def _eval(seq: int, losses: dict) -> bytes:
    return encode_event({"v": 1, "type": "eval", "t": 100.0 + seq, "seq": seq, "step": seq, "epoch": 0,
                         "losses": losses, "total": 1.0})


def _columns(block: Block) -> dict:
    out = {}
    for part in ("steps", "evals"):
        rows = getattr(block, part)
        out[part] = {"terms": [(k, v.tobytes()) for k, v in rows.terms.items()],
                     "fixed": [(k, v.tobytes()) for k, v in rows.fixed.items()], "event": rows.event.tobytes()}
    out["weights"] = block.weights
    out["seq"] = block.seq.tobytes()
    return out


def _reference(data: bytes) -> Block:
    lines, offsets, _ = split_lines(data, 0)
    return decode_lines(lines, offsets)


AB = {"loss_a": 1.5, "loss_b": 2.5}
STREAMS = {
    "same terms": [_step(i, AB) for i in range(5)] + [_eval(5, AB)],
    "eval lists them in another order": [_step(0, AB), _eval(1, {"loss_b": 0.5, "loss_a": 0.25}), _step(2, AB)],
    "a later step in another order": [_step(0, AB), _step(1, {"loss_b": 3.0, "loss_a": 4.0})],
    "names that are no identifiers": [_step(i, {"loss-mel": 1.0 * i, "λ kl": 2.0, "__class__": 3.0, "t0": 4.0})
                                     for i in range(3)],
    "one term": [_step(i, {"only": float(i)}) for i in range(3)],
    "a row without a term": [_step(0, AB), _step(1, {"loss_a": 1.0}), _step(2, AB)],
    "an extra term": [_step(0, AB), _step(1, {**AB, "loss_c": 9.0})],
    "a row without losses": [_step(0, AB), encode_event({"v": 1, "type": "step", "t": 1.0, "seq": 1, "step": 1}),
                             _step(2, AB)],
    "nulls": [_step(0, AB), _step(1, {"loss_a": None, "loss_b": 1.0})],
    "the mark inside a string first": [encode_event({"v": 1, "type": "note", "seq": 0, "text": '"type":"step"'}),
                                       _step(1, {"loss_b": 1.0, "loss_a": 2.0}), _step(2, AB)],
    "weights that change": [_step(0, AB), _step(1, AB, weights={"loss_a": 2.0, "loss_b": 1.0}),
                            _step(2, AB, weights={"loss_b": 1.0, "loss_a": 2.0}), _step(3, AB)],
}


@pytest.mark.parametrize("name", list(STREAMS))
def test_a_whole_block_reads_as_line_by_line(name: str) -> None:
    data = b"".join(STREAMS[name])
    for _ in range(2):  # the second time the term set's decoder already exists
        assert _columns(decode_block(data)) == _columns(_reference(data)), name


def test_term_order_is_the_first_rows_whichever_decoder() -> None:
    data = b"".join([_step(0, {"loss_b": 1.0, "loss_a": 2.0}), _step(1, {"loss_a": 3.0, "loss_b": 4.0})])
    block = decode_block(data)
    assert list(block.steps.terms) == ["loss_b", "loss_a"]
    assert np.array_equal(block.steps.terms["loss_a"], [2.0, 3.0])
