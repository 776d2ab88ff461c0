"""Growable numpy columns and tables of them: the storage under ``RunHistory``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

NAN = float("nan")


class Column:
    """A numpy array that grows by appending batches (amortized ×1.5), read as a view."""

    __slots__ = ("_buf", "_n")

    def __init__(self, dtype: np.dtype | type, capacity: int = 256) -> None:
        self._buf = np.empty(max(capacity, 16), dtype=dtype)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @classmethod
    def adopt(cls, values: np.ndarray, dtype: np.dtype | type) -> Column:
        """A column holding ``values`` as they are (no copy when the dtype matches); the first append
        moves them to a larger buffer, so ``values`` is never written to."""
        col = cls.__new__(cls)
        col._buf = np.ascontiguousarray(values, dtype=dtype).reshape(-1)
        col._n = len(col._buf)
        return col

    @property
    def values(self) -> np.ndarray:
        """The filled part (a view: do not keep it across appends)."""
        return self._buf[: self._n]

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more values without further copies."""
        need = self._n + extra
        if need > len(self._buf):
            grown = np.empty(max(need, int(len(self._buf) * 1.5)), dtype=self._buf.dtype)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown

    def extend(self, values: Sequence[float] | np.ndarray) -> None:
        """Append a batch."""
        with np.errstate(over="ignore"):  # a float beyond float32 range is stored as ±inf, as meant
            arr = np.asarray(values, dtype=self._buf.dtype)
        self.reserve(len(arr))
        self._buf[self._n: self._n + len(arr)] = arr
        self._n += len(arr)

    def pad(self, count: int, fill: float = NAN) -> None:
        """Append ``count`` copies of ``fill`` (a term that was absent from these rows)."""
        self.reserve(count)
        self._buf[self._n: self._n + count] = fill
        self._n += count

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` values."""
        self._n = min(self._n, n)

    def compact(self, headroom: float = 0.1) -> None:
        """Drop spare capacity beyond ``headroom`` (after a cold open)."""
        keep = self._n + (max(16, int(self._n * headroom)) if headroom > 0 else 0)
        if len(self._buf) > keep:
            self._buf = self._buf[:keep].copy()

    @property
    def nbytes(self) -> int:
        """Bytes held, spare capacity included."""
        return self._buf.nbytes


class Table:
    """Rows of fixed columns plus a dynamic set of float32 term columns, all of equal length."""

    def __init__(self, fixed: Mapping[str, type[np.generic]]) -> None:
        self._fixed = {name: Column(dtype) for name, dtype in fixed.items()}
        self._terms: dict[str, Column] = {}
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, name: str) -> np.ndarray:
        return self._fixed[name].values

    @property
    def fixed_names(self) -> list[str]:
        """Names of the fixed columns."""
        return list(self._fixed)

    @property
    def terms(self) -> list[str]:
        """Term names, in order of first appearance."""
        return list(self._terms)

    def term(self, name: str) -> np.ndarray:
        """Values of one term (NaN where a row did not report it)."""
        col = self._terms.get(name)
        return col.values if col is not None else np.full(self._n, NAN, dtype=np.float32)

    def adopt_batch(self, fixed: dict[str, np.ndarray], terms: dict[str, np.ndarray], count: int) -> None:
        """Fill an empty table with these arrays as its columns (no copy: a re-open from the cache)."""
        if self._n:
            self.append_batch(fixed, terms, count)
            return
        self._fixed = {name: Column.adopt(fixed[name], col.values.dtype) for name, col in self._fixed.items()}
        self._terms = {name: Column.adopt(values, np.float32) for name, values in terms.items()}
        self._n = count

    def append_batch(self, fixed: Mapping[str, Sequence[float] | np.ndarray],
                     terms: Mapping[str, Sequence[float] | np.ndarray], count: int) -> None:
        """Append ``count`` rows: fixed columns (a missing one: NaN, or 0 for integers) and any term
        lists (missing → NaN)."""
        if count == 0:
            return
        for name, col in self._fixed.items():
            if name in fixed:
                col.extend(fixed[name])
            else:
                col.pad(count, 0 if col.values.dtype.kind in "iu" else NAN)
        for name, vals in terms.items():
            term = self._terms.get(name)
            if term is None:
                term = self._terms[name] = Column(np.float32, capacity=self._n + count)
                term.pad(self._n)
            term.extend(vals)
        for name, col in self._terms.items():
            if name not in terms:
                col.pad(count)
        self._n += count

    def append_arrays(self, other: Table) -> None:
        """Append every row of ``other`` (used to merge the parts of a parallel cold open)."""
        if len(other) == 0:
            return
        self.append_batch({k: other[k] for k in self._fixed},
                          {t: other.term(t) for t in other.terms}, len(other))

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` rows."""
        for col in [*self._fixed.values(), *self._terms.values()]:
            col.truncate(n)
        self._n = min(self._n, n)

    def reserve(self, extra: int) -> None:
        """Pre-size every column for ``extra`` more rows."""
        for col in self._fixed.values():
            col.reserve(extra)
        for col in self._terms.values():
            col.reserve(extra)

    def compact(self, headroom: float = 0.1) -> None:
        """Drop spare capacity beyond ``headroom``."""
        for col in [*self._fixed.values(), *self._terms.values()]:
            col.compact(headroom)

    @property
    def nbytes(self) -> int:
        """Bytes held by all columns."""
        return sum(c.nbytes for c in [*self._fixed.values(), *self._terms.values()])
