"""The vector index: unit vectors in rows, stable integer labels, tombstones, exact/HNSW search.

It knows nothing of photos, ids, encoders or files. Rows are append-only: removing a row
tombstones it (``alive`` false, hnswlib ``mark_deleted``), and ``compacted`` returns the live
rows for a fresh base. Labels only ever grow and are sorted along the rows, so a label found
by HNSW maps back to its row by binary search, with no dictionary of a million entries.
"""

from __future__ import annotations

import numpy as np

from fai_infer.buffers import Growable
from fai_infer.search import EXACT_BELOW, HnswSearch, exact_top_k

# A filter leaving at most this many live rows is searched exactly (a gather and one matrix
# product); a broader one through HNSW with the filter as a callback.
EXACT_FILTER_BELOW = 60_000
# A filtered HNSW search only keeps the nodes that pass, so its breadth is scaled by the share
# that passes: ef = max(2k, 64) / share, at most this (recall 0.31 at 2.5% with a fixed ef).
MAX_FILTER_EF = 4096


class VectorIndex:
    def __init__(self, dim: int, exact_below: int = EXACT_BELOW,
                 vectors: np.ndarray | None = None, labels: np.ndarray | None = None,
                 next_label: int = 0, hnsw: HnswSearch | None = None):
        """``vectors``/``labels``: live rows of a stored base; ``hnsw``: its graph, already
        holding exactly those labels (else one is built when the index is large enough)."""
        self.dim, self.exact_below = dim, exact_below
        self.exact_filter_below = EXACT_FILTER_BELOW
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
    def search(self, query: np.ndarray, k: int, mask: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cosine scores) of the k best live rows, optionally only among ``mask``."""
        allowed = self.alive if mask is None else (self.alive & mask[:self.rows])
        candidates = self.live if mask is None else int(np.count_nonzero(allowed))
        k = min(k, candidates)
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        plan = self._plan(candidates, mask is not None)
        if plan == "hnsw":
            rows, scores = self._search_hnsw(query, k, None if mask is None else allowed,
                                             share=candidates / max(self.live, 1))
            if len(rows) >= k:
                return rows, scores
            plan = self._plan(candidates, mask is not None, graph=False)
        if plan == "gather":
            return exact_top_k(self.vectors, query, k, np.flatnonzero(allowed))
        if mask is None and self.live == self.rows:
            return exact_top_k(self.vectors, query, k)
        scores = self.vectors @ query
        scores[~allowed] = -np.inf
        part = np.argpartition(-scores, k - 1)[:k]
        order = part[np.argsort(-scores[part], kind="stable")]
        return order.astype(np.int64), scores[order].astype(np.float32)

    def exact_subset(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(live rows passing ``mask``, their vectors) when ``search`` would answer this filter
        exactly by gathering them; None when it would use HNSW or score every row."""
        allowed = self.alive & mask[:self.rows]
        if self._plan(int(np.count_nonzero(allowed)), filtered=True) != "gather":
            return None
        rows = np.flatnonzero(allowed)
        return rows, np.ascontiguousarray(self.vectors[rows])

    def _plan(self, candidates: int, filtered: bool, graph: bool = True) -> str:
        """How ``search`` answers: "hnsw" (large, broad enough), "gather" (score only the
        candidates: a selective filter or many tombstones) or "scan" (score every row)."""
        if graph and self.hnsw is not None and candidates > self.exact_below and (
                not filtered or candidates > self.exact_filter_below):
            return "hnsw"
        return "gather" if candidates * 4 < self.rows else "scan"

    def _search_hnsw(self, query: np.ndarray, k: int, allowed: np.ndarray | None,
                     share: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        check, ef = None, 0
        if allowed is not None:
            ok = np.zeros(self.next_label, dtype=bool)
            ok[self.labels[allowed]] = True
            check = ok.__getitem__
            ef = min(MAX_FILTER_EF, int(np.ceil(max(2 * k, 64) / max(share, 1e-6))))
        labels, scores = self.hnsw.query(query, k, check, ef=ef)
        return self.rows_of_labels(labels), scores
