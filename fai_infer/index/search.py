"""Nearest-neighbour search over unit vectors: exact numpy for small catalogues, HNSW above.

Scores are cosine similarities (inner products of L2-normalised rows) from both engines, so a
catalogue can cross the threshold without its scores changing meaning.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import hnswlib
import numpy as np

EXACT_BELOW = 20_000  # exact search costs ~1 ms at this size on 2 cores; HNSW above
# OpenBLAS splits a matrix-vector product over its threads from about 700k elements, and on a
# busy machine (a kiosk whose encoder is running) each product then waits ~8 ms for the other
# core: 8.0 ms instead of 0.07 ms for 25k x 32, measured on 2 AVX2 cores under load. Blocks
# below that size stay on the calling thread, where a single query belongs.
BLOCK_ELEMENTS = 1 << 19


def scores_of(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``matrix @ query`` computed on the calling thread, in row blocks."""
    per = max(1, BLOCK_ELEMENTS // max(int(np.prod(matrix.shape[1:])), 1))
    if len(matrix) <= per:
        return matrix @ query
    out = np.empty(len(matrix), np.result_type(matrix.dtype, query.dtype))
    for start in range(0, len(matrix), per):
        np.matmul(matrix[start:start + per], query, out=out[start:start + per])
    return out


def exact_top_k(matrix: np.ndarray, query: np.ndarray, k: int,
                rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(row indices, scores) of the k best rows of ``matrix`` (optionally among ``rows``)."""
    candidates = matrix if rows is None else matrix[rows]
    if len(candidates) == 0 or k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    scores = scores_of(candidates, query)
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    order = part[np.argsort(-scores[part], kind="stable")]
    picked = order if rows is None else rows[order]
    return picked.astype(np.int64), scores[order].astype(np.float32)


class HnswSearch:
    """hnswlib over integer labels that stay stable across adds and removes.

    M=32: catalogues are clustered (many near-copies of a product), and at M=16 the graph
    capped recall@10 near 0.95 at 100k however wide the search; M=32 reaches 0.996 at ef=64
    (``python -m bench``, search-engine table)."""

    def __init__(self, dim: int, capacity: int, m: int = 32, ef_construction: int = 200,
                 index: hnswlib.Index | None = None, deleted: int = 0):
        self.dim = dim
        if index is None:
            index = hnswlib.Index(space="ip", dim=dim)
            index.init_index(max_elements=max(capacity, 16), M=m,
                             ef_construction=ef_construction, allow_replace_deleted=True)
        self.index = index
        self.index.set_num_threads(1)
        self.deleted = deleted  # graph nodes marked deleted and not yet reused

    @property
    def count(self) -> int:
        """Live (searchable) items."""
        return self.index.get_current_count() - self.deleted

    @property
    def m(self) -> int:
        """The graph's degree parameter M."""
        return self.index.M

    @property
    def capacity(self) -> int:
        return self.index.get_max_elements()

    @property
    def slots(self) -> int:
        """Graph nodes in use, live or marked deleted."""
        return self.index.get_current_count()

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Insert; nodes of deleted items are reused first (tombstones cost no memory for
        long), and capacity grows by half when full."""
        if len(labels) == 0:
            return
        reused = min(self.deleted, len(labels))
        needed = self.index.get_current_count() + len(labels) - reused
        if needed > self.index.get_max_elements():
            self.index.resize_index(max(needed, int(self.index.get_max_elements() * 1.5)))
        # Bulk inserts use every core; queries stay on one thread (a kiosk serves one shopper
        # per thread and hnswlib's per-query threading only adds overhead).
        self.index.set_num_threads((os.cpu_count() or 1) if len(labels) > 64 else 1)
        try:
            self.index.add_items(np.asarray(vectors, np.float32), np.asarray(labels, np.int64),
                                 replace_deleted=reused > 0)
        finally:
            self.index.set_num_threads(1)
        self.deleted -= reused

    def remove(self, labels: np.ndarray) -> None:
        for label in labels:
            self.index.mark_deleted(int(label))
            self.deleted += 1

    def query(self, vector: np.ndarray, k: int, allowed: Callable[[int], bool] | None = None,
              ef: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(labels, cosine scores); may return fewer than k when a filter is very selective.
        ``ef`` sets the search breadth (default max(2k, 64))."""
        k = min(k, self.count)
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        self.index.set_ef(max(ef, k) if ef > 0 else max(2 * k, 64))
        try:
            labels, dist = self.index.knn_query(vector[None, :], k=k, filter=allowed)
        except RuntimeError:  # hnswlib raises when fewer than k items pass the filter
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return labels[0].astype(np.int64), (1.0 - dist[0]).astype(np.float32)

    def save(self, path: Path) -> None:
        self.index.save_index(str(path))

    @classmethod
    def load(cls, path: Path, dim: int, capacity: int, deleted: int) -> "HnswSearch":
        index = hnswlib.Index(space="ip", dim=dim)
        index.load_index(str(path), max_elements=max(capacity, 16), allow_replace_deleted=True)
        return cls(dim, capacity, index=index, deleted=deleted)
