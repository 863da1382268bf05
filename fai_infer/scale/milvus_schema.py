"""How a FAI catalogue lies in a Milvus collection, and how its filters become Milvus expressions.

Why typed fields and not one JSON column: Milvus (the server and Milvus Lite alike) filters typed
scalar fields natively, with an inverted index, while JSON paths are parsed row by row (2.7 s a
query at 100k rows in Milvus Lite). Each metadata column ``i`` gets ``c{i}_t`` (its casefolded text,
"" when the row has none) and ``c{i}_n`` (its value as a number, null when it is not one), so
``fai_infer.index.filters.passes`` holds exactly: equality is case-insensitive, a missing value is "",
and a row whose value is not a number never passes a range. A server without nullable fields
(Milvus before 2.5, e.g. the 2.3 standalone of ``milvus_server``) stores NaN instead of null:
every comparison with NaN is false, so the expressions do not change.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from fai_infer.index.filters import RANGE_OPS, Clause, number
from fai_infer.index.metadata import MAX_LISTED

FORMAT = 1
MANIFEST_KEY = "fai.manifest"
DELTA_PREFIX = "fai.manifest.w."   # + a writer's id: what that writer added (see Manifest)
MAX_COLUMNS = 30          # 2 fields each + 4: under Milvus's default limit of 64 fields
MAX_VALUES = 200          # distinct values remembered per column (UI filters, value checks)
ID_BYTES = 2048           # Milvus VARCHAR limits are in bytes
TEXT_BYTES = 65535
HNSW_BUILD = {"M": 32, "efConstruction": 200}   # as fai_infer.index.search.HnswSearch
MAX_TOPK = 16384          # Milvus's limit on one search's top-k


@dataclass
class Manifest:
    """What a collection stores about itself (in its properties): model identity, preprocessing,
    the filterable columns (their order gives the field numbers), display and column values.

    Several processes write to one collection (``fai add``, the shop page, a feed importer) and
    Milvus has no compare-and-set on properties, so nobody rewrites the whole manifest after
    ``fai push``: each writer keeps what it added (new columns, values, number flags) under its
    own property key ``DELTA_PREFIX + writer id``, which only it writes. The manifest a reader
    sees is the pushed one plus every writer's additions, merged by union (``from_properties``):
    order-independent and idempotent, so no writer's change is lost, whatever the interleaving.
    """

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
    nulls: bool = True        # "not a number" is null (False: NaN, for servers before 2.5)
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
            self._add_values(col, (str(row.get(col, "") or "") for row in rows))

    def _add_values(self, col: str, values: Iterable[str]) -> list[str]:
        """Add values to a column (capped, case-insensitively distinct); the ones that are new."""
        have = self.values.setdefault(col, [])
        seen = {v.casefold() for v in have}
        new = []
        for v in values:
            if v and not self.numeric.get(col) and number(v) is not None:
                self.numeric[col] = True
            if v and v.casefold() not in seen:
                if len(have) >= MAX_VALUES:
                    self.complete[col] = False
                    continue
                have.append(v)
                new.append(v)
                seen.add(v.casefold())
        self.complete.setdefault(col, True)
        have.sort()
        return new

    def absorb(self, delta: Mapping[str, Any]) -> None:
        """Merge one writer's additions (a ``WriterDelta.to_json`` object): union only."""
        for col in delta.get("unfiltered", []):
            if isinstance(col, str) and col not in self.columns + self.unfiltered:
                self.unfiltered.append(col)
        for col, values in (delta.get("values") or {}).items():
            if col in self.columns + self.unfiltered and isinstance(values, list):
                self._add_values(col, [str(v) for v in values])
        for col, flag in (delta.get("numeric") or {}).items():
            if flag and col in self.columns + self.unfiltered:
                self.numeric[col] = True
        for col, flag in (delta.get("complete") or {}).items():
            if flag is False and col in self.columns + self.unfiltered:
                self.complete[col] = False

    @classmethod
    def from_properties(cls, props: Mapping[str, Any]) -> "Manifest":
        """The pushed manifest plus every writer's additions (in key order: deterministic)."""
        man = cls.from_json(props[MANIFEST_KEY])
        for key in sorted(k for k in props if str(k).startswith(DELTA_PREFIX)):
            try:
                delta = json.loads(props[key])
            except (TypeError, ValueError):
                continue  # a damaged delta loses its values, never the catalogue
            if isinstance(delta, dict):
                man.absorb(delta)
        return man


@dataclass
class WriterDelta:
    """What one writer (one ``MilvusCatalog``) added to the manifest: columns first seen in its
    rows, values the manifest did not have, number flags. Cumulative: each write stores the
    whole delta under the writer's own key, so a lost or repeated write loses nothing."""

    unfiltered: list[str] = field(default_factory=list)
    values: dict[str, list[str]] = field(default_factory=dict)
    numeric: dict[str, bool] = field(default_factory=dict)
    complete: dict[str, bool] = field(default_factory=dict)

    def note(self, man: Manifest, rows: Sequence[Mapping[str, str]]) -> None:
        """Record (and apply to ``man``, this writer's view) what ``rows`` add to ``man``."""
        for col in columns_of(rows):
            if col not in man.columns + man.unfiltered:
                man.unfiltered.append(col)  # kept in each row's metadata, not filterable
                self.unfiltered.append(col)
        for col in man.columns + man.unfiltered:
            was_numeric, was_complete = man.numeric.get(col, False), man.complete.get(col, True)
            new = man._add_values(col, (str(row.get(col, "") or "") for row in rows))
            if new:
                have = self.values.setdefault(col, [])
                have += [v for v in new if len(have) < MAX_VALUES]
            if man.numeric.get(col) and not was_numeric:
                self.numeric[col] = True
            if was_complete and man.complete.get(col) is False:
                self.complete[col] = False

    def empty(self) -> bool:
        return not (self.unfiltered or self.values or self.numeric or self.complete)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False)


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
    with the close matches, in the local catalogue's words (fai_infer/index/metadata.py).
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
        n = number(value)
        row[f"c{i}_n"] = n if n is not None or man.nulls else float("nan")
    return row


def _fit(text: str) -> str:
    """Text within a VARCHAR field's byte limit (paths and values are never that long in a
    real shop; a filter on a cut value still matches nothing it should not)."""
    data = text.encode("utf-8", "surrogateescape")
    if len(data) <= TEXT_BYTES:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return data[:TEXT_BYTES].decode("utf-8", "ignore")
