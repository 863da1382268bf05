"""The merchandiser's tools over the served catalogue, without any web framework: what
``POST /api/tag``, ``/api/audit``, ``/api/duplicates`` and the merchandiser page answer.

Why a service of its own: the three tools share one neighbour table (every item's nearest
others), which costs a search per item; it is built once per catalogue state and reused by
every request until the catalogue changes. Read-only: suggestions are never written from here
(``fai tag --apply`` does that, where the shop's operator runs it).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from typing import Any, Callable

from fai_infer.catalog.contract import BaseCatalog
from fai_infer.merch.duplicates import THRESHOLD, duplicates
from fai_infer.merch.labels import SEARCHED, audit, tag
from fai_infer.merch.neighbours import Neighbours
from ui.api_checks import Busy
from ui.photos import photo_url
from ui.service import parse_filters

MAX_LIMIT = 500  # findings per answer
MAX_COLUMNS = 16  # distinct label columns in one tag request
DEADLINE_S = 300.0  # the neighbour table must be built within this, else one line
CACHED = 32  # answers kept per catalogue generation


def bounded_limit(value: Any) -> int:
    """A client's ``limit``: a whole number 1..MAX_LIMIT, else a one-line error naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return value


def text_list(value: Any, key: str) -> list[str]:
    """Distinct column names in the client's order: a repeated name is voted once (20,000
    copies of one column ran the vote 20,000 times; issue 33), and at most MAX_COLUMNS."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a non-empty list of column names")
    distinct = list(dict.fromkeys(value))
    if len(distinct) > MAX_COLUMNS:
        raise ValueError(f"{key} names {len(distinct)} columns; at most {MAX_COLUMNS} at once")
    return distinct


class MerchService:
    """Tag, audit and duplicates over one catalogue, sharing a cached neighbour table.

    Each answer costs a search per item when the catalogue has changed, so the work is
    bounded: one such job at a time (another request meanwhile is told the tools are busy,
    rather than queueing CPU behind it), the table within a deadline, and every answer kept
    until the catalogue's generation changes, so repeating a request costs nothing."""

    def __init__(self, cat: BaseCatalog, deadline_s: float = DEADLINE_S):
        self.cat = cat
        self.deadline_s = deadline_s
        self._job = threading.Lock()
        self._generation: Any = object()
        self._table: Neighbours | None = None
        self._answers: OrderedDict[tuple, list] = OrderedDict()

    def _once(self, key: tuple, compute: Callable[[], list]) -> list:
        """``compute()``'s answer for the catalogue as it is now, computed at most once per
        generation; Busy while another request holds the tools."""
        if not self._job.acquire(blocking=False):
            raise Busy("the merchandiser's tools are busy with another request; try again "
                       "when it has finished")
        try:
            generation = self.cat.version  # after catching up with other writers
            if generation != self._generation:
                self._generation, self._table = generation, None
                self._answers.clear()
            if key not in self._answers:
                self._answers[key] = compute()
                while len(self._answers) > CACHED:
                    self._answers.popitem(last=False)
            self._answers.move_to_end(key)
            return self._answers[key]
        finally:
            self._job.release()

    def neighbours(self) -> Neighbours:
        """The table for the current generation (call inside :meth:`_once`)."""
        if self._table is None:
            try:
                self._table = Neighbours.of_catalogue(
                    self.cat, SEARCHED, progress=True,
                    deadline=time.monotonic() + self.deadline_s)
            except TimeoutError:
                raise Busy(f"the neighbour table took longer than {self.deadline_s:.0f} s; "
                           "run 'fai audit', 'fai tag' or 'fai duplicates' on the shop's "
                           "machine instead") from None
        return self._table

    def answer_tag(self, columns: Any, where: Any, limit: Any) -> list[dict]:
        cols = self.cat.display()["filters"] if columns is None else text_list(columns,
                                                                              "columns")
        if not cols:
            raise ValueError("columns: this catalogue has no filter columns to default to; "
                             "name the label columns")
        limit, filters = bounded_limit(limit), parse_filters(where) or None
        found = self._once(("tag", tuple(cols), _key(filters)), lambda: tag(
            self.cat, cols, filters, neighbours=self.neighbours()))
        return [s.to_dict() | {"photo": photo_url(s.id)} for s in found[:limit]]

    def answer_audit(self, column: Any, where: Any, limit: Any) -> list[dict]:
        if not isinstance(column, str) or not column:
            raise ValueError("column must name the label column to check")
        limit, filters = bounded_limit(limit), parse_filters(where) or None
        found = self._once(("audit", column, _key(filters)), lambda: audit(
            self.cat, column, filters, neighbours=self.neighbours()))
        return [f.to_dict() | {"photo": photo_url(f.id)} for f in found[:limit]]

    def answer_duplicates(self, threshold: Any, limit: Any) -> list[dict]:
        if threshold is None:
            threshold = THRESHOLD
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
                or not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be a number from 0 to 1")
        limit = bounded_limit(limit)
        found = self._once(("duplicates", float(threshold)), lambda: duplicates(
            self.cat, float(threshold), neighbours=self.neighbours()))
        return [g.to_dict() | {"photos": [photo_url(i) for i in g.ids]} for g in found[:limit]]


def _key(filters: Any) -> str:
    """A parsed filter as a cache key (parsed filters are plain JSON values)."""
    return json.dumps(filters, sort_keys=True, default=str)
