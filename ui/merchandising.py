"""The merchandiser's tools over the served catalogue, without any web framework: what
``POST /api/tag``, ``/api/audit``, ``/api/duplicates`` and the merchandiser page answer.

Why a service of its own: the three tools share one neighbour table (every item's nearest
others), which costs a search per item; it is built once per catalogue state and reused by
every request until the catalogue changes. Read-only: suggestions are never written from here
(``fai tag --apply`` does that, where the shop's operator runs it).
"""

from __future__ import annotations

import threading
from typing import Any

from fai_infer.catalog.contract import BaseCatalog
from fai_infer.merch.duplicates import THRESHOLD, duplicates
from fai_infer.merch.labels import SEARCHED, audit, tag
from fai_infer.merch.neighbours import Neighbours
from ui.photos import photo_url
from ui.service import parse_filters

MAX_LIMIT = 500  # findings per answer


def bounded_limit(value: Any) -> int:
    """A client's ``limit``: a whole number 1..MAX_LIMIT, else a one-line error naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return value


def text_list(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a non-empty list of column names")
    return value


class MerchService:
    """Tag, audit and duplicates over one catalogue, sharing a cached neighbour table."""

    def __init__(self, cat: BaseCatalog):
        self.cat = cat
        self._lock = threading.Lock()
        self._table: tuple[Any, Neighbours] | None = None

    def neighbours(self) -> Neighbours:
        """The table for the catalogue as it is now (rebuilt after any change)."""
        with self._lock:
            self.cat._before_read()
            generation = self.cat._generation()
            if self._table is None or self._table[0] != generation:
                self._table = (generation, Neighbours.of_catalogue(self.cat, SEARCHED,
                                                                   progress=True))
            return self._table[1]

    def answer_tag(self, columns: Any, where: Any, limit: Any) -> list[dict]:
        cols = self.cat.display()["filters"] if columns is None else text_list(columns,
                                                                              "columns")
        if not cols:
            raise ValueError("columns: this catalogue has no filter columns to default to; "
                             "name the label columns")
        found = tag(self.cat, cols, parse_filters(where) or None,
                    neighbours=self.neighbours())
        return [s.to_dict() | {"photo": photo_url(s.id)} for s in found[:bounded_limit(limit)]]

    def answer_audit(self, column: Any, where: Any, limit: Any) -> list[dict]:
        if not isinstance(column, str) or not column:
            raise ValueError("column must name the label column to check")
        found = audit(self.cat, column, parse_filters(where) or None,
                      neighbours=self.neighbours())
        return [f.to_dict() | {"photo": photo_url(f.id)} for f in found[:bounded_limit(limit)]]

    def answer_duplicates(self, threshold: Any, limit: Any) -> list[dict]:
        if threshold is None:
            threshold = THRESHOLD
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
                or not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be a number from 0 to 1")
        found = duplicates(self.cat, float(threshold), neighbours=self.neighbours())
        return [g.to_dict() | {"photos": [photo_url(i) for i in g.ids]}
                for g in found[:bounded_limit(limit)]]
