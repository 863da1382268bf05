"""Per-value row lists and per-column number order, so a filter costs what it lets through.

Why: at a million items a filter evaluated as boolean masks touches every row per clause
(~1 ms each), and a mask cached per value costs a megabyte per value (a thousand brands: a
gigabyte). A posting list per column costs 8 bytes a row in all and hands a 0.1% filter its
thousand rows directly. Numbers are kept in sorted order so a range is one binary search.

Rows appended after a list was built (the deltas since the last compaction) are compared
directly; the owner rebuilds a list once that tail grows past a thirty-second of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from fai_infer.index.filters import compare_array

_EMPTY = np.zeros(0, np.int64)


@dataclass
class Run:
    """Where a selection's candidates lie in one column's posting order: ``order[lo:hi]`` for
    each span, then ``tail`` (rows appended since the order was built); ``keep`` says which
    candidates pass every clause and are alive. A scan can then read a copy of the vectors
    laid out in that order as contiguous slices instead of gathering scattered rows."""

    order: np.ndarray
    spans: list[tuple[int, int]]
    tail: np.ndarray
    keep: np.ndarray

    @cached_property
    def candidates(self) -> np.ndarray:
        """The rows of the spans and the tail, in that order (``keep`` is aligned with them);
        computed once per selection, not once per query that scans it."""
        parts = [self.order[lo:hi] for lo, hi in self.spans] + [self.tail]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


@dataclass
class Selection:
    """The rows a filter lets through: row numbers (unique, any order) when few, else a mask
    over every row. ``count`` is exact either way; conversions are computed once. ``run``:
    where the rows lie in a posting order, when one clause listed them."""

    count: int
    size: int  # rows in the table the selection was made over
    rows: np.ndarray | None = None
    mask: np.ndarray | None = None
    run: Run | None = None

    def as_rows(self) -> np.ndarray:
        if self.rows is None:
            self.rows = np.flatnonzero(self.mask).astype(np.int64)
        return self.rows

    def as_mask(self) -> np.ndarray:
        if self.mask is None:
            mask = np.zeros(self.size, dtype=bool)
            mask[self.rows] = True
            self.mask = mask
        return self.mask

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.rows, self.mask) if a is not None)


class CodePostings:
    """Rows per code of one column: rows of code ``k`` are ``order[starts[k+1]:starts[k+2]]``
    (code -1, absent, first), ascending within each code (a stable sort)."""

    def __init__(self, codes: np.ndarray, n_values: int):
        shifted = codes.astype(np.int64) + 1
        self.covered = len(codes)
        self.order = np.argsort(shifted, kind="stable").astype(np.int64)
        self.starts = np.concatenate([[0], np.cumsum(np.bincount(shifted,
                                                                 minlength=n_values + 1))])

    def span(self, code: int) -> tuple[int, int]:
        """[lo, hi) of ``order`` holding the rows of ``code`` (empty for a value first seen
        after this list was built)."""
        k = code + 1
        if k + 1 >= len(self.starts):
            return 0, 0
        return int(self.starts[k]), int(self.starts[k + 1])

    def rows(self, code: int) -> np.ndarray:
        lo, hi = self.span(code)
        return self.order[lo:hi]

    def count(self, code: int) -> int:
        k = code + 1
        return 0 if k + 1 >= len(self.starts) else int(self.starts[k + 1] - self.starts[k])


class NumberOrder:
    """The rows of one column that hold numbers, sorted by their number."""

    def __init__(self, numbers: np.ndarray):
        self.covered = len(numbers)
        finite = np.flatnonzero(~np.isnan(numbers))
        self.order = finite[np.argsort(numbers[finite], kind="stable")].astype(np.int64)
        self.sorted = numbers[self.order]

    def span(self, op: str, bound: float) -> tuple[int, int]:
        """[lo, hi) of ``order`` whose numbers pass ``op bound``."""
        left = int(np.searchsorted(self.sorted, bound, "left"))
        right = int(np.searchsorted(self.sorted, bound, "right"))
        return {"<": (0, left), "<=": (0, right), ">": (right, len(self.order)),
                ">=": (left, len(self.order))}[op]

    def rows(self, op: str, bound: float) -> np.ndarray:
        lo, hi = self.span(op, bound)
        return self.order[lo:hi]


def stale(covered: int, total: int) -> bool:
    """Whether a list covering ``covered`` of ``total`` rows is worth rebuilding (rows after
    it are compared one by one, and a scan gathers theirs)."""
    return total - covered > max(4096, covered // 32)


def tail_rows(values: np.ndarray, start: int, test) -> np.ndarray:
    """Row numbers from ``start`` on whose value passes ``test`` (a vectorised predicate)."""
    if start >= len(values):
        return _EMPTY
    return start + np.flatnonzero(test(values[start:])).astype(np.int64)


def number_test(op: str, bound: float):
    return lambda values: compare_array(values, op, bound)
