"""The local catalogue's match scale, fitted by the writer of a change (never on a query).

Why at write time: a scale is a few hundred searches (seconds at a million items). Fitted when
a change is committed and stored with it (in the delta, in a base's manifest), every process
that opens or refreshes the catalogue has it at once: a fresh ``fai query`` process answers its
first query as fast as its tenth. The fit reads the state as it is *before* the delta is
applied plus the delta's own vectors, so a write that fails leaves nothing half-changed.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import numpy as np

from fai_infer.catalog.confidence import MIN_ITEMS, NEIGHBOUR_RANK, sample_rows
from fai_infer.store.delta import Delta
from fai_infer.store.state import CatalogState

CHUNK = 32  # sampled HNSW searches per turn of the lock: queries from other threads interleave
BLOCK = 32_768  # rows per matrix product when the sample is ranked exactly
EXACT_ABOVE_GONE = 64  # more removed rows than this: rank the kept rows exactly


def scale_after(state: CatalogState, delta: Delta | None,
                lock: ContextManager | None = None) -> np.ndarray:
    """Sorted ``NEIGHBOUR_RANK``-th nearest-other scores of an evenly spread sample of the
    items ``state`` holds once ``delta`` is applied (empty: too few items for a scale). The
    caller keeps ``state`` from changing meanwhile (the writer lock); ``lock`` (the
    catalogue's own) is taken one chunk of work at a time."""
    lock = lock or contextlib.nullcontext()
    dim = state.dim
    with lock:
        live = state.live_rows()
        gone_ids = set(delta.remove) | set(delta.add_ids) if delta is not None else set()
        gone = np.array(sorted(state.row_of[i] for i in gone_ids if i in state.row_of), np.int64)
        kept = live[~np.isin(live, gone)] if len(gone) else live
        added = (np.asarray(delta.vectors, np.float32).reshape(-1, dim)
                 if delta is not None and delta.vectors is not None
                 else np.zeros((0, dim), np.float32))
        positions = sample_rows(len(kept) + len(added))
        if len(positions) < MIN_ITEMS:
            return np.zeros(0, np.float64)
        old = kept[positions[positions < len(kept)]]
        new = positions[positions >= len(kept)] - len(kept)
        queries = np.concatenate([state.index.vectors[old], added[new]])
        hnsw = (state.index.hnsw is not None and len(kept) > state.index.exact_below
                and len(gone) <= EXACT_ABOVE_GONE)
    own = np.concatenate([old, -1 - new])  # a kept row, or -1 - its place in the delta
    best = np.full((len(queries), NEIGHBOUR_RANK), -np.inf)
    if hnsw:
        best = _merge(best, _searched(state, queries, own, gone, lock))
    else:
        for start in range(0, len(kept), BLOCK):
            rows = kept[start:start + BLOCK]
            with lock:
                block = state.index.vectors[rows]
            best = _merge(best, _ranked(queries @ block.T, own[:, None] == rows[None, :]))
    if len(added):
        places = np.arange(len(added))
        best = _merge(best, _ranked(queries @ added.T, own[:, None] == -1 - places[None, :]))
    scores = np.sort(best[:, -1][np.isfinite(best[:, -1])])
    return scores if len(scores) >= MIN_ITEMS else np.zeros(0, np.float64)


def _ranked(sims: np.ndarray, itself: np.ndarray) -> np.ndarray:
    """Each row's ``NEIGHBOUR_RANK`` best scores (descending), a query's own item left out."""
    sims = np.where(itself, -np.inf, sims)
    if sims.shape[1] > NEIGHBOUR_RANK:
        sims = np.partition(sims, sims.shape[1] - NEIGHBOUR_RANK, axis=1)[:, -NEIGHBOUR_RANK:]
    return -np.sort(-sims, axis=1)


def _merge(best: np.ndarray, more: np.ndarray) -> np.ndarray:
    both = np.concatenate([best, more], axis=1)
    return -np.sort(-both, axis=1)[:, :NEIGHBOUR_RANK]


def _searched(state: CatalogState, queries: np.ndarray, own: np.ndarray, gone: np.ndarray,
              lock: ContextManager) -> np.ndarray:
    """The HNSW graph's best kept others of each query (removed rows and itself left out)."""
    out = np.full((len(queries), NEIGHBOUR_RANK), -np.inf)
    skip = set(gone.tolist())
    for start in range(0, len(queries), CHUNK):
        with lock:
            for n in range(start, min(start + CHUNK, len(queries))):
                rows, scores = state.index.search(queries[n], NEIGHBOUR_RANK + 1 + len(skip))
                kept = [float(s) for r, s in zip(rows, scores)
                        if int(r) != own[n] and int(r) not in skip][:NEIGHBOUR_RANK]
                out[n, :len(kept)] = kept
    return out
