"""How a FAI catalogue lies in a Milvus collection, and how its filters become Milvus expressions.

Why typed fields and not one JSON column: Milvus (the server and Milvus Lite alike) filters typed
scalar fields natively, with an inverted index, while JSON paths are parsed row by row (2.7 s a
query at 100k rows in Milvus Lite). Each metadata column ``i`` gets ``c{i}_t`` (its casefolded text,
"" when the row has none) and ``c{i}_n`` (its value as a number, null when it is not one), so
``fai_infer.filters.passes`` holds exactly: equality is case-insensitive, a missing value is "",
and a row whose value is not a number never passes a range.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from fai_infer.filters import RANGE_OPS, Clause, number
from fai_infer.metadata import MAX_LISTED

FORMAT = 1
MANIFEST_KEY = "fai.manifest"
MAX_COLUMNS = 30          # 2 fields each + 4: under Milvus's default limit of 64 fields
MAX_VALUES = 200          # distinct values remembered per column (UI filters, value checks)
ID_BYTES = 2048           # Milvus VARCHAR limits are in bytes
TEXT_BYTES = 65535
HNSW_BUILD = {"M": 32, "efConstruction": 200}   # as fai_infer.search.HnswSearch
MAX_TOPK = 16384          # Milvus's limit on one search's top-k


@dataclass
class Manifest:
    """What a collection stores about itself (in its properties): model identity, preprocessing,
    the filterable columns (their order gives the field numbers), display and column values."""

    model_sha256: str
    model_name: str
    preprocess: dict
    dim: int
    id_column: str = "id"
    columns: list[str] = field(default_factory=list)
    display: dict[str, list[str]] = field(default_factory=dict)
    values: dict[str, list[str]] = field(default_factory=dict)
    complete: dict[str, bool] = field(default_factory=dict)
    numeric: dict[str, bool] = field(default_factory=dict)  # any value a number
    unfiltered: list[str] = field(default_factory=list)   # columns beyond MAX_COLUMNS
    format_version: int = FORMAT

    def to_json(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("manifest is not an object")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def note_values(self, rows: Sequence[Mapping[str, str]]) -> None:
        """Remember up to MAX_VALUES distinct values per column (original spelling)."""
        for col in self.columns + self.unfiltered:
            have = self.values.setdefault(col, [])
            seen = {v.casefold() for v in have}
            for row in rows:
                v = str(row.get(col, "") or "")
                if v and not self.numeric.get(col) and number(v) is not None:
                    self.numeric[col] = True
                if v and v.casefold() not in seen:
                    if len(have) >= MAX_VALUES:
                        self.complete[col] = False
                        continue
                    have.append(v)
                    seen.add(v.casefold())
            self.complete.setdefault(col, True)
            have.sort()


def columns_of(rows: Sequence[Mapping[str, str]], first: Sequence[str] = ()) -> list[str]:
    """Every column in first-seen order, the display filters first (they must stay filterable)."""
    order = [c for c in first]
    for row in rows:
        order += [c for c in row if c not in order]
    return order


def literal(text: str) -> str:
    """A Milvus string literal; only the escapes both Milvus and Milvus Lite read."""
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def float_literal(x: float) -> str:
    """A float without an exponent (not every Milvus expression parser reads 1e+20)."""
    return np.format_float_positional(float(x), trim="0")


def expression(clauses: Sequence[Clause], columns: Sequence[str]) -> str:
    """Clauses (already checked against the columns) -> one Milvus boolean expression."""
    parts = []
    for c in clauses:
        i = columns.index(c.column)
        if c.op in RANGE_OPS:
            parts.append(f"c{i}_n {c.op} {float_literal(float(c.values))}")
            continue
        any_of = " or ".join(f"c{i}_t == {literal(v)}" for v in c.values)
        parts.append(f"({any_of})" if c.op == "in" else f"not ({any_of})")
    return " and ".join(parts)


def check_clauses(clauses: Sequence[Clause], man: Manifest, has_value) -> None:
    """Unknown columns and values, and ranges on a column without numbers, are refused by name
    with the close matches, in the local catalogue's words (fai_infer/metadata.py).
    ``has_value(column, folded)`` asks Milvus when a column has more values than remembered."""
    known = man.columns + man.unfiltered
    for c in clauses:
        if c.column not in known:
            close = [k for k in known if k.casefold() == c.column.casefold()] or \
                difflib.get_close_matches(c.column, known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"where {c.column!r}: no such metadata column (columns: "
                             f"{', '.join(known) or 'none'}){hint}")
        if c.column in man.unfiltered:
            raise ValueError(f"where {c.column!r}: this Milvus collection keeps at most "
                             f"{MAX_COLUMNS} filterable columns and {c.column!r} is not one; "
                             f"push again with it among --filters")
        if c.op in RANGE_OPS:
            if not man.numeric.get(c.column):
                raise ValueError(f"where {c}: column {c.column!r} holds no numbers")
            continue
        values = man.values.get(c.column, [])
        folded = {v.casefold(): v for v in values}
        for v in c.values:
            if v == "" or v in folded:
                continue
            if not man.complete.get(c.column, True) and has_value(c.column, v):
                continue
            close = [folded[x] for x in difflib.get_close_matches(v, list(folded), n=3,
                                                                   cutoff=0.6)]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            shown = ", ".join(values[:MAX_LISTED]) + (", ..." if len(values) > MAX_LISTED else "")
            raise ValueError(f"where {c.column}={v!r}: no item has this value (values: "
                             f"{shown}){hint}")


def row_fields(item_id: str, vector: np.ndarray, path: str, meta: Mapping[str, Any],
               man: Manifest) -> dict:
    """One catalogue item as a Milvus row."""
    if len(item_id.encode("utf-8", "surrogateescape")) > ID_BYTES:
        raise ValueError(f"item id {item_id[:60]!r}...: longer than {ID_BYTES} bytes")
    row: dict[str, Any] = {"id": item_id, "vector": np.asarray(vector, np.float32),
                           "path": _fit(path), "meta": {str(k): str(v) for k, v in meta.items()}}
    for i, col in enumerate(man.columns):
        value = str(meta.get(col, "") or "")
        row[f"c{i}_t"] = _fit(value.casefold())
        row[f"c{i}_n"] = number(value)
    return row


def _fit(text: str) -> str:
    """Text within a VARCHAR field's byte limit (paths and values are never that long in a
    real shop; a filter on a cut value still matches nothing it should not)."""
    data = text.encode("utf-8", "surrogateescape")
    if len(data) <= TEXT_BYTES:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return data[:TEXT_BYTES].decode("utf-8", "ignore")
