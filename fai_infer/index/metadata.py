"""The metadata table: one integer code per row and column, a posting list per column.

A shop's CSV has a handful of columns with few distinct values each (gender, colour, type), so
storing codes instead of a dict per row costs 4 bytes a cell, and a filter lists its rows from
a posting list (``fai_infer/index/postings.py``) instead of a Python scan: a 2.5% filter at a million
rows is a slice of one array, not 12 ms of string compares per 100k rows. Rows are never deleted here: the
vector index tombstones them, and compaction writes a fresh table of the live rows.
"""

from __future__ import annotations

import difflib
from typing import Iterable, Mapping, Sequence

import numpy as np

from fai_infer.buffers import Growable
from fai_infer.index.filters import RANGE_OPS, Clause, compare_array, number
from fai_infer.index.postings import (CodePostings, NumberOrder, Run, Selection, number_test, stale,
                                tail_rows)
from fai_infer.text import shorten

ABSENT = -1  # the row has no value in this column (shown as "")
MAX_LISTED = 12
# A filter keeping at most 1/SPARSE_SHARE of the rows is listed as row numbers, else a mask.
SPARSE_SHARE = 4
_NO_KEEP = np.zeros(0, dtype=bool)


class MetadataTable:
    def __init__(self, columns: Sequence[str] = (), values: Mapping[str, Sequence[str]] | None
                 = None, codes: np.ndarray | None = None):
        self.columns: list[str] = list(columns)
        self.values: dict[str, list[str]] = {c: list((values or {}).get(c, [])) for c in
                                             self.columns}
        self._code_of = {c: {v: i for i, v in enumerate(self.values[c])} for c in self.columns}
        self._codes = Growable((len(self.columns),), np.int32,
                               np.zeros((0, len(self.columns)), np.int32) if codes is None
                               else codes, fill=ABSENT)
        self._lists: dict[str, CodePostings] = {}
        self._fold_index: dict[str, tuple[int, dict[str, list[int]]]] = {}
        self._orders: dict[str, NumberOrder] = {}
        self._numeric: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._codes)

    @property
    def codes(self) -> np.ndarray:
        return self._codes.view()

    # -- changes -----------------------------------------------------------------------------
    def _code(self, column: str, value: str) -> int:
        if column not in self._code_of:
            self.columns.append(column)
            self.values[column], self._code_of[column] = [], {}
            self._codes.add_columns(1)
        codes = self._code_of[column]
        if value not in codes:
            codes[value] = len(self.values[column])
            self.values[column].append(value)
        return codes[value]

    def _encode(self, rows: Sequence[Mapping[str, str]]) -> np.ndarray:
        block = []
        for row in rows:
            cells = {c: self._code(c, str(v)) for c, v in row.items()}
            block.append(cells)
        out = np.full((len(rows), len(self.columns)), ABSENT, np.int32)
        index = {c: j for j, c in enumerate(self.columns)}
        for i, cells in enumerate(block):
            for c, code in cells.items():
                out[i, index[c]] = code
        return out

    def append(self, rows: Sequence[Mapping[str, str]]) -> None:
        self._codes.extend(self._encode(rows))
        # Posting lists stay valid for the rows they cover; later rows are compared directly.

    def update(self, row_numbers: Sequence[int], rows: Sequence[Mapping[str, str]]) -> None:
        """Set the given columns of existing rows (other columns keep their values)."""
        if not len(row_numbers):
            return
        block = self._encode(rows)
        table = self.codes
        for r, new in zip(row_numbers, block):
            given = new != ABSENT
            table[r, given] = new[given]
        touched = {c for row in rows for c in row}
        for cache in (self._lists, self._orders, self._numeric):
            for column in touched & set(cache):
                del cache[column]

    # -- reads -------------------------------------------------------------------------------
    def row(self, r: int) -> dict[str, str]:
        codes = self._codes.view()[r]
        return {c: self.values[c][code] for c, code in zip(self.columns, codes)
                if code != ABSENT}

    def rows(self, numbers: Iterable[int]) -> list[dict[str, str]]:
        return [self.row(int(r)) for r in numbers]

    def distinct(self, alive: np.ndarray) -> dict[str, list[str]]:
        """Each column's values among the live rows (sorted, "" left out)."""
        out = {}
        codes = self.codes[alive[:len(self)]]
        for j, c in enumerate(self.columns):
            used = np.unique(codes[:, j])
            out[c] = sorted({self.values[c][k] for k in used if k != ABSENT} - {""})
        return dict(sorted(out.items()))

    def column_stats(self, alive: np.ndarray) -> dict[str, tuple[list[str], int]]:
        """{column: (distinct non-empty values, live rows with a non-empty value)} in column
        order, for choosing default filters and captions."""
        codes = self.codes[alive[:len(self)]]
        out = {}
        for j, c in enumerate(self.columns):
            used, counts = np.unique(codes[:, j], return_counts=True)
            values = [self.values[c][k] for k in used if k != ABSENT]
            filled = int(sum(n for k, n in zip(used, counts)
                             if k != ABSENT and self.values[c][k] != ""))
            out[c] = ([v for v in values if v], filled)
        return out

    def compacted(self, keep: np.ndarray) -> "MetadataTable":
        """A new table of the rows in ``keep`` (bool), values no live row uses dropped."""
        codes = self.codes[keep]
        columns, values, new_codes = [], {}, []
        for j, c in enumerate(self.columns):
            used = np.unique(codes[:, j])
            used = used[used != ABSENT]
            if not len(used):
                continue
            remap = np.full(len(self.values[c]) + 1, ABSENT, np.int32)
            remap[used] = np.arange(len(used), dtype=np.int32)
            columns.append(c)
            values[c] = [self.values[c][k] for k in used]
            new_codes.append(np.where(codes[:, j] == ABSENT, ABSENT, remap[codes[:, j]]))
        stacked = (np.stack(new_codes, axis=1).astype(np.int32) if new_codes
                   else np.zeros((int(keep.sum()), 0), np.int32))
        return MetadataTable(columns, values, stacked)

    # -- filters -----------------------------------------------------------------------------
    def mask(self, clauses: Sequence[Clause], alive: np.ndarray | None = None
             ) -> np.ndarray | None:
        """Rows passing every clause as a mask (None when there are none); see ``select``."""
        chosen = self.select(clauses, alive)
        return None if chosen is None else chosen.as_mask()

    def select(self, clauses: Sequence[Clause], alive: np.ndarray | None = None
               ) -> Selection | None:
        """The rows passing every clause (and ``alive``, when given), None when there are no
        clauses. The most selective equality or range clause hands over its rows from a
        posting list and the other clauses are tested on those rows only, so a 0.1% filter
        costs 0.1% of the table; a filter with no selective clause becomes a mask.

        Unknown columns and values are errors that name them and the closest matches: a typo
        must not silently return nothing. With ``alive``, a value only removed rows have is
        unknown too, so a filter means the same before and after a compaction drops the
        value (issue 23)."""
        if not clauses:
            return None
        n = len(self)
        plans = [self._plan(clause, alive) for clause in clauses]
        enumerable = [p for p in plans if p[0] is not None]
        if enumerable:
            size, clause, column, codes = min(enumerable, key=lambda p: p[0])
            if size <= n // SPARSE_SHARE:
                run = self._run(column, clause, codes)
                candidates = run.candidates
                keep = np.ones(len(candidates), dtype=bool) if alive is None \
                    else alive[candidates]
                for other in plans:
                    if other[1] is not clause and len(candidates):
                        keep &= self._test_rows(other[2], other[1], other[3], candidates)
                run.keep = keep
                rows = candidates[keep]
                return Selection(len(rows), n, rows=rows, run=run)
        mask = np.ones(n, dtype=bool) if alive is None else alive[:n].copy()
        for _, clause, column, codes in plans:
            mask &= self._clause_mask(column, clause, codes)
        return Selection(int(np.count_nonzero(mask)), n, mask=mask)

    def _plan(self, clause: Clause, alive: np.ndarray | None
              ) -> tuple[int | None, Clause, str, list[int]]:
        """(rows the clause lets through, or None when it cannot list them cheaply, the
        clause, its column, the codes it names)."""
        column = self._column(clause.column)
        if clause.op in RANGE_OPS:
            order = self._number_order(column)
            numbers = self._numbers(column)
            if not len(order.order) and np.isnan(numbers[order.covered:]).all():
                raise ValueError(f"where {clause}: column {column!r} holds no numbers")
            lo, hi = order.span(clause.op, float(clause.values))
            return hi - lo + len(self) - order.covered, clause, column, []
        postings = self._postings(column)
        codes: dict[int, None] = {}  # each code once: "Coat", "coat", "Coat" name one set
        for wanted in dict.fromkeys(clause.values):
            these = self._codes_for(column, wanted)
            if alive is not None and wanted != "" and not self._any_alive(column, these, alive):
                self._codes_for(column, wanted, live=self.distinct(alive)[column])
            codes.update(dict.fromkeys(these))
        size = len(self) - postings.covered + sum(postings.count(c) for c in codes)
        return (size if clause.op == "in" else None), clause, column, list(codes)

    def _any_alive(self, column: str, codes: list[int], alive: np.ndarray) -> bool:
        for code in codes:
            rows = self._rows_of_code(column, code)
            if alive[rows[:64]].any() or alive[rows].any():
                return True
        return False

    def _rows_of_code(self, column: str, code: int) -> np.ndarray:
        postings = self._postings(column)
        j = self.columns.index(column)
        tail = tail_rows(self.codes[:, j], postings.covered, lambda v: v == code)
        own = postings.rows(code)
        return own if not len(tail) else np.concatenate([own, tail])

    def _run(self, column: str, clause: Clause, codes: list[int]) -> Run:
        """The rows one equality or range clause lets through, as spans of its column's
        posting order plus the rows appended since (``keep`` is filled in by ``select``)."""
        j = self.columns.index(column)
        if clause.op in RANGE_OPS:
            order = self._number_order(column)
            test = number_test(clause.op, float(clause.values))
            tail = tail_rows(self._numbers(column), order.covered, test)
            return Run(order.order, [order.span(clause.op, float(clause.values))], tail,
                       _NO_KEEP)
        postings = self._postings(column)
        tail = tail_rows(self.codes[:, j], postings.covered, lambda v: np.isin(v, codes))
        return Run(postings.order, [postings.span(c) for c in codes], tail, _NO_KEEP)

    def _test_rows(self, column: str, clause: Clause, codes: list[int], rows: np.ndarray
                   ) -> np.ndarray:
        """Which of ``rows`` pass one clause (a bool per row)."""
        if clause.op in RANGE_OPS:
            return compare_array(self._numbers(column)[rows], clause.op, float(clause.values))
        hit = np.isin(self.codes[rows, self.columns.index(column)], codes)
        return hit if clause.op == "in" else ~hit

    def _clause_mask(self, column: str, clause: Clause, codes: list[int]) -> np.ndarray:
        if clause.op in RANGE_OPS:
            return compare_array(self._numbers(column), clause.op, float(clause.values))
        hit = np.zeros(len(self), dtype=bool)
        for code in codes:
            hit[self._rows_of_code(column, code)] = True
        return hit if clause.op == "in" else ~hit

    def _column(self, name: str) -> str:
        if name in self._code_of:
            return name
        folded = [c for c in self.columns if c.casefold() == name.casefold()]
        close = folded or difflib.get_close_matches(name, self.columns, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(shorten(c) for c in close)}?" if close else ""
        raise ValueError(f"where {shorten(name)!r}: no such metadata column (columns: "
                         f"{', '.join(shorten(c) for c in self.columns[:40]) or 'none'}){hint}")

    def _codes_for(self, column: str, wanted: str, live: list[str] | None = None) -> list[int]:
        """Codes whose value equals ``wanted`` case-insensitively ("" matches absent too).
        ``live``: the values live rows have; ``wanted`` is then checked against those only."""
        values = self.values[column] if live is None else live
        codes = list(self._folded(column).get(wanted, ())) if live is None else [
            k for k, v in enumerate(values) if v.casefold() == wanted]
        if wanted == "":
            codes.append(ABSENT)
        if not codes:
            known = sorted(set(values) - {""})
            folded = {v.casefold(): v for v in known}
            close = [folded[c] for c in difflib.get_close_matches(wanted, list(folded), n=3,
                                                                  cutoff=0.6)]
            shown = ", ".join(shorten(v) for v in known[:MAX_LISTED]) + (
                ", ..." if len(known) > MAX_LISTED else "")
            hint = f"; did you mean {', '.join(shorten(c) for c in close)}?" if close else ""
            raise ValueError(f"where {shorten(column)}={shorten(wanted)!r}: no item has this "
                             f"value (values: {shown}){hint}")
        return codes

    def _folded(self, column: str) -> dict[str, list[int]]:
        """casefolded value -> its codes, so naming a value costs one look-up, not a pass over
        every distinct value (8,000 values named at once took 8.6 s that way)."""
        values = self.values[column]
        cached = self._fold_index.get(column)
        if cached is None or cached[0] != len(values):
            index: dict[str, list[int]] = {}
            for code, value in enumerate(values):
                index.setdefault(value.casefold(), []).append(code)
            cached = (len(values), index)
            self._fold_index[column] = cached
        return cached[1]

    def _postings(self, column: str) -> CodePostings:
        """Rows per value of ``column``, rebuilt once rows appended since outgrow it."""
        cached = self._lists.get(column)
        if cached is None or stale(cached.covered, len(self)):
            cached = CodePostings(self.codes[:, self.columns.index(column)],
                                  len(self.values[column]))
            self._lists[column] = cached
        return cached

    def _number_order(self, column: str) -> NumberOrder:
        cached = self._orders.get(column)
        if cached is None or stale(cached.covered, len(self)):
            cached = NumberOrder(self._numbers(column))
            self._orders[column] = cached
        return cached

    def _numbers(self, column: str) -> np.ndarray:
        n = len(self)
        cached = self._numeric.get(column)
        if cached is None or len(cached) != n:
            per_code = np.array([np.nan if (x := number(v)) is None else x
                                 for v in self.values[column]] + [np.nan], np.float64)
            codes = self.codes[:, self.columns.index(column)]
            cached = per_code[codes]  # ABSENT (-1) picks the trailing NaN
            self._numeric[column] = cached
        return cached
