"""The rows a filter lets through, kept per filter until the catalogue changes.

Why: a kiosk asks for the same few filters again and again, and at a million items gathering a
selective filter's vectors costs more than searching them once gathered.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence


from fai_infer.index.filters import Clause
from fai_infer.index.metadata import MetadataTable
from fai_infer.index.postings import Selection
from fai_infer.index.vector_index import VectorIndex

FILTER_CACHE_ENTRIES = 16
FILTER_CACHE_BYTES = 256 << 20


class FilterCache:
    """LRU of filter -> (its Selection, (rows, their vectors) or None), all dropped together
    when the catalogue's version changes; bounded by entries and bytes."""

    def __init__(self, entries: int = FILTER_CACHE_ENTRIES, budget: int = FILTER_CACHE_BYTES):
        self.entries, self.budget = entries, budget
        self._cache: OrderedDict[tuple, tuple] = OrderedDict()

    def clear(self) -> None:
        self._cache.clear()

    def get(self, clauses: Sequence[Clause], version: int, table: MetadataTable,
            index: VectorIndex) -> tuple[Selection, tuple | None]:
        key = tuple(clauses)
        cached = self._cache.get(key)
        if cached is not None and cached[0] == version:
            self._cache.move_to_end(key)
            return cached[1], cached[2]
        chosen = table.select(clauses, index.alive)  # one meaning before and after compaction
        subset = index.exact_subset(chosen)
        if self._cache and next(iter(self._cache.values()))[0] != version:
            self._cache.clear()  # all stale together
        self._cache[key] = (version, chosen, subset)
        budget = self.budget
        for old_key in reversed(list(self._cache)):
            entry = self._cache[old_key]
            budget -= entry[1].nbytes + (entry[2][1].nbytes if entry[2] is not None else 0)
            if budget < 0 or len(self._cache) > self.entries:
                del self._cache[old_key]
        return chosen, subset
