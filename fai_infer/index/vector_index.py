"""The vector index: unit vectors in rows, stable integer labels, tombstones, exact/HNSW search.

It knows nothing of photos, ids, encoders or files. Rows are append-only: removing a row
tombstones it (``alive`` false, hnswlib ``mark_deleted``), and ``compacted`` returns the live
rows for a fresh base. Labels only ever grow and are sorted along the rows, so a label found
by HNSW maps back to its row by binary search, with no dictionary of a million entries.
"""

from __future__ import annotations

import numpy as np

from fai_infer.buffers import Growable
from fai_infer.index.postings import Selection
from fai_infer.index.scan_copy import ScanCopies
from fai_infer.index.search import EXACT_BELOW, HnswSearch, exact_top_k, scores_of

# How a filter is searched, by the live rows it leaves (``filter_plan``; figures from
# ``python -m bench.filters`` at 200k items, 459-d, 2 AVX2 cores): at most EXACT_FILTER_BELOW,
# gathered and scored at full width (~0.45 us a scattered row: 2k rows 0.93 ms); up to
# SCAN_BELOW, scanned in a narrow copy (``fai_infer/index/scan_copy.py``: 2k rows 0.22 ms, 20k rows
# 0.36 ms) once the catalogue has SCAN_FROM items; broader, the graph (100k rows: 0.49 ms).
EXACT_FILTER_BELOW = 1_500
SCAN_BELOW = 200_000
SCAN_FROM = 20_000
# A filtered graph search asks for OVERFETCH * k / share neighbours (share: the part of the
# catalogue the filter keeps), growing 4x while fewer than k pass, up to MAX_FILTER_FETCH;
# past that the filter's rows are scored exactly.
OVERFETCH = 2.0
MAX_FILTER_FETCH = 16_384
_NONE = (np.zeros(0, np.int64), np.zeros(0, np.float32))


class VectorIndex:
    def __init__(self, dim: int, exact_below: int = EXACT_BELOW,
                 vectors: np.ndarray | None = None, labels: np.ndarray | None = None,
                 next_label: int = 0, hnsw: HnswSearch | None = None):
        """``vectors``/``labels``: live rows of a stored base; ``hnsw``: its graph, already
        holding exactly those labels (else one is built when the index is large enough)."""
        self.dim, self.exact_below = dim, exact_below
        self.exact_filter_below = EXACT_FILTER_BELOW
        self.scan_below = SCAN_BELOW
        self.scan_copies = ScanCopies()
        self._vectors = Growable((dim,), np.float32, vectors)
        n = len(self._vectors)
        self._labels = Growable((), np.int64, np.arange(n) if labels is None else labels)
        self._alive = Growable((), bool, np.ones(n, bool))
        self.next_label = max(next_label, int(self._labels.view().max()) + 1 if n else 0)
        self.live = n
        self.hnsw = hnsw
        if hnsw is None and n >= exact_below:
            self._build_hnsw()

    # -- shape -------------------------------------------------------------------------------
    @property
    def rows(self) -> int:
        """Rows including tombstones (row numbers run 0..rows-1)."""
        return len(self._vectors)

    @property
    def vectors(self) -> np.ndarray:
        return self._vectors.view()

    @property
    def labels(self) -> np.ndarray:
        return self._labels.view()

    @property
    def alive(self) -> np.ndarray:
        return self._alive.view()

    @property
    def engine(self) -> str:
        return "hnsw" if self.hnsw is not None else "exact"

    # -- changes -----------------------------------------------------------------------------
    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Append unit vectors; returns their row numbers."""
        vectors = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        start = self.rows
        labels = np.arange(self.next_label, self.next_label + len(vectors), dtype=np.int64)
        self.next_label += len(vectors)
        self._vectors.extend(vectors)
        self._labels.extend(labels)
        self._alive.extend(np.ones(len(vectors), bool))
        self.live += len(vectors)
        if self.hnsw is not None:
            self.hnsw.add(labels, vectors)
        elif self.live >= self.exact_below:
            self._build_hnsw()
        return np.arange(start, self.rows, dtype=np.int64)

    def remove(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, np.int64)
        rows = rows[self.alive[rows]]
        if not len(rows):
            return
        self.alive[rows] = False
        self.live -= len(rows)
        if self.hnsw is not None:
            self.hnsw.remove(self.labels[rows])

    def _build_hnsw(self) -> None:
        self.hnsw = HnswSearch(self.dim, int(max(self.live, 1) * 1.25))
        keep = self.alive
        self.hnsw.add(self.labels[keep], self.vectors[keep])

    def compacted(self) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, labels) of the live rows, for a new base (the HNSW graph carries over:
        its tombstones are reused by later inserts)."""
        keep = self.alive
        return np.ascontiguousarray(self.vectors[keep]), self.labels[keep].copy()

    def rows_of_labels(self, labels: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.labels, labels).astype(np.int64)

    # -- search ------------------------------------------------------------------------------
    def search(self, query: np.ndarray, k: int, chosen: Selection | np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cosine scores) of the k best live rows, optionally only among ``chosen``
        (a ``Selection`` of live rows, or a mask over rows)."""
        if chosen is None:
            k = min(k, self.live)
            if k <= 0:
                return _NONE
            if self.hnsw is not None and self.live > self.exact_below:
                rows, scores = self._search_hnsw(query, k)
                if len(rows) >= k:
                    return rows, scores
            return self._scan(query, k, self.alive)
        chosen = self.selection(chosen)
        k = min(k, chosen.count)
        if k <= 0:
            return _NONE
        plan = self.filter_plan(chosen)
        if plan == "scan":
            return self.scan_copies.top_k(self.vectors, query, k, chosen.run)
        if plan == "graph":
            rows, scores = self._search_hnsw_filtered(query, k, chosen)
            if len(rows) >= k:
                return rows, scores
        return exact_top_k(self.vectors, query, k, chosen.as_rows())

    def selection(self, chosen: Selection | np.ndarray) -> Selection:
        """A mask over rows (live or not) as a Selection of live rows."""
        if isinstance(chosen, Selection):
            return chosen
        mask = self.alive & np.asarray(chosen, bool)[:self.rows]
        return Selection(int(np.count_nonzero(mask)), self.rows, mask=mask)

    def filter_plan(self, chosen: Selection) -> str:
        """How ``search`` answers a filter, by what each way costs for this many rows:
        "gather" (score the rows at full width: few rows, or a small catalogue), "scan"
        (narrow copies in a posting order, re-ranked: a middling filter one clause listed)
        or "graph" (HNSW, filtered after: a broad filter)."""
        count = chosen.count
        if count <= self.exact_filter_below or self.live < self.exact_below:
            return "gather"
        if chosen.run is not None and count <= self.scan_below and self.live >= SCAN_FROM:
            return "scan"
        return "graph" if self.hnsw is not None else "gather"

    def exact_subset(self, chosen: Selection) -> tuple[np.ndarray, np.ndarray] | None:
        """(live rows of ``chosen``, their vectors, contiguous) when ``search`` would gather
        them; None otherwise. A cache keeps them for a repeated filter."""
        if self.filter_plan(chosen) != "gather":
            return None
        rows = chosen.as_rows()
        return rows, np.ascontiguousarray(self.vectors[rows])

    def _scan(self, query: np.ndarray, k: int, allowed: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """Exact: every row scored, tombstones (or rows not allowed) left out."""
        if self.live == self.rows and allowed is self.alive:
            return exact_top_k(self.vectors, query, k)
        if np.count_nonzero(allowed) * 4 < self.rows:
            return exact_top_k(self.vectors, query, k, np.flatnonzero(allowed))
        scores = scores_of(self.vectors, query)
        scores[~allowed] = -np.inf
        part = np.argpartition(-scores, k - 1)[:k]
        order = part[np.argsort(-scores[part], kind="stable")]
        return order.astype(np.int64), scores[order].astype(np.float32)

    def _search_hnsw(self, query: np.ndarray, k: int, ef: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
        labels, scores = self.hnsw.query(query, k, ef=ef)
        return self.rows_of_labels(labels), scores

    def _search_hnsw_filtered(self, query: np.ndarray, k: int, chosen: Selection
                              ) -> tuple[np.ndarray, np.ndarray]:
        """The graph searched without the filter for more than k, the filter applied after.

        Why not hnswlib's filter callback: it calls back into Python for every node it
        visits (most of a search's time at a few percent), and its breadth must still grow
        as the filter narrows. Asking for ``OVERFETCH * k / share`` neighbours expects twice k
        to pass when the filter is unrelated to the photos; a filter that is related (a
        colour, a gender) may pass fewer near the query, so the fetch grows until k pass.
        The hits are then the exact top k among the graph's best ``fetch``, i.e. the filter's
        top k wherever the graph's recall at that breadth holds."""
        allowed = chosen.as_mask()
        share = chosen.count / max(self.live, 1)
        fetch = int(np.ceil(OVERFETCH * k / share))
        while fetch <= MAX_FILTER_FETCH:
            fetch = min(fetch, self.live)
            rows, scores = self._search_hnsw(query, fetch, ef=max(fetch, 64))
            keep = allowed[rows]
            if np.count_nonzero(keep) >= k or fetch >= self.live:
                return rows[keep][:k], scores[keep][:k]
            fetch *= 4
        return _NONE
