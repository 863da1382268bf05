"""Every item's nearest *other* items, once: what the merchandiser's tools (tag, audit,
duplicates) read.

Why a table: the three tools ask the same question of every item ("who looks like you?") and
differ only in what they do with the answer. It is built through the contract's search
primitive, so it works over any back end; ``from_vectors`` builds the same table from vectors a
benchmark made another way (raw pixels), so the tools are measured with the very code they run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fai_infer.progress import Progress

if TYPE_CHECKING:
    from fai_infer.catalog.contract import BaseCatalog

SEARCH_BATCH = 256  # items per search_vectors call
PROGRESS_ABOVE = 2000  # items: below this the table takes well under a few seconds


@dataclass
class Neighbours:
    """Row i: item ``ids[i]`` with metadata ``rows[i]``; ``index[i]`` its nearest other items
    (positions in ``ids``, best first, -1 where fewer exist) and ``scores[i]`` their scores."""

    ids: list[str]
    rows: list[dict[str, str]]
    index: np.ndarray
    scores: np.ndarray
    vectors: np.ndarray | None = None  # row i's unit embedding (the audit's label centroids)

    @classmethod
    def of_catalogue(cls, cat: "BaseCatalog", k: int = 10, progress: bool = False,
                     deadline: float | None = None) -> "Neighbours":
        """Searches the catalogue for every item (its own id left out), a batch of items per
        ``search_vectors`` call: one lock turn or one service request per batch. ``deadline``:
        a ``time.monotonic()`` after which TimeoutError is raised (a server's bound on one
        request's work)."""
        if not 1 <= k <= 100:
            raise ValueError(f"neighbours must be from 1 to 100, got {k}")
        ids: list[str] = []
        rows: list[dict[str, str]] = []
        vectors: list[np.ndarray] = []
        for batch_ids, batch_vectors, _, batch_rows in cat.iter_batches():
            ids += batch_ids
            rows += batch_rows
            vectors.append(batch_vectors)
        position = {item: n for n, item in enumerate(ids)}
        index = np.full((len(ids), k), -1, np.int64)
        scores = np.full((len(ids), k), -np.inf, np.float32)
        bar = Progress(len(ids), "neighbours") if progress and len(ids) > PROGRESS_ABOVE else None
        n = 0
        for batch in vectors:
            for start in range(0, len(batch), SEARCH_BATCH):
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"the neighbour table was not done after {n} of "
                                       f"{len(ids)} items")
                chunk = batch[start:start + SEARCH_BATCH]
                found = cat.search_vectors(chunk, k, exclude=[[i] for i in
                                                              ids[n:n + len(chunk)]])
                for hits in found:
                    for j, hit in enumerate(hits[:k]):
                        if hit.id in position:  # an item added meanwhile is not in the table
                            index[n, j], scores[n, j] = position[hit.id], hit.score
                    n += 1
                if bar is not None:
                    bar.update(len(chunk))
        if bar is not None:
            bar.update(len(ids) - bar.done)
            bar.close()
        dim = cat.encoder.dim
        return cls(ids, rows, index, scores,
                   np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32))

    @classmethod
    def from_vectors(cls, ids: list[str], vectors: np.ndarray, rows: list[dict[str, str]],
                     k: int = 10, block: int = 1024) -> "Neighbours":
        """Exact nearest others of unit ``vectors`` (for measuring other embeddings)."""
        v = np.asarray(vectors, np.float32)
        k = min(k, len(ids) - 1)
        index = np.empty((len(ids), k), np.int64)
        scores = np.empty((len(ids), k), np.float32)
        for start in range(0, len(v), block):
            sims = v[start:start + block] @ v.T
            sims[np.arange(len(sims)), np.arange(start, start + len(sims))] = -np.inf
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            part = np.take_along_axis(sims, top, axis=1)
            order = np.argsort(-part, axis=1, kind="stable")
            index[start:start + block] = np.take_along_axis(top, order, axis=1)
            scores[start:start + block] = np.take_along_axis(part, order, axis=1)
        return cls(list(ids), list(rows), index, scores, v)
