"""Retrieval precision: how often the nearest catalogue items share the query's labels."""

from __future__ import annotations

import numpy as np


def label_codes(*columns: list[str]) -> np.ndarray:
    """Rows of one or more label columns -> one integer per distinct combination."""
    keys = list(zip(*columns))
    vocab = {k: i for i, k in enumerate(sorted(set(keys)))}
    return np.array([vocab[k] for k in keys], dtype=np.int64)


def top_k_neighbours(gallery: np.ndarray, queries: np.ndarray, k: int,
                     chunk: int = 512, query_vectors: np.ndarray | None = None) -> np.ndarray:
    """Indices into ``gallery`` of the k nearest (cosine) neighbours of each query index,
    the query itself left out. ``gallery`` rows must be L2-normalised. ``query_vectors``
    (one per query, normalised) searches with other views of the query photos instead."""
    k = min(k, len(gallery) - 1)
    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), chunk):
        q = queries[s : s + chunk]
        vecs = gallery[q] if query_vectors is None else query_vectors[s : s + chunk]
        sims = vecs @ gallery.T
        sims[np.arange(len(q)), q] = -np.inf
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1, kind="stable")
        out[s : s + chunk] = np.take_along_axis(part, order, 1)
    return out


def precision_at(neighbours: np.ndarray, queries: np.ndarray, labels: np.ndarray,
                 k: int) -> float:
    """Mean fraction of the first k neighbours whose label equals the query's."""
    same = labels[neighbours[:, :k]] == labels[queries][:, None]
    return float(same.mean())


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def retrieval_table(emb: np.ndarray, queries: np.ndarray,
                    label_sets: dict[str, np.ndarray]) -> dict[str, float]:
    """P@1 and P@10 for each named label set, e.g. {'articleType': codes, ...}."""
    nn = top_k_neighbours(l2_normalise(emb), queries, 10)
    res: dict[str, float] = {}
    for name, codes in label_sets.items():
        res[f"P@1 {name}"] = precision_at(nn, queries, codes, 1)
        res[f"P@10 {name}"] = precision_at(nn, queries, codes, 10)
    return res


def own_item_rank(gallery: np.ndarray, queries: np.ndarray,
                  query_vectors: np.ndarray) -> np.ndarray:
    """0-based rank of each query's own catalogue photo among all gallery items when searching
    with ``query_vectors`` (e.g. a shopper's photo of that item). Ties count against it."""
    own = np.einsum("ij,ij->i", query_vectors, gallery[queries])
    ranks = np.empty(len(queries), dtype=np.int64)
    for s in range(0, len(queries), 512):
        sims = query_vectors[s : s + 512] @ gallery.T
        sims[np.arange(len(sims)), queries[s : s + 512]] = -np.inf
        ranks[s : s + 512] = (sims >= own[s : s + 512, None]).sum(axis=1)
    return ranks


def shopper_table(emb: np.ndarray, queries: np.ndarray, query_emb: np.ndarray,
                  label_sets: dict[str, np.ndarray]) -> dict[str, float]:
    """Search with distorted views of the queries: is the item itself found (item@k, its
    catalogue photo kept in the gallery), and are the other neighbours alike (P@k, the
    catalogue photo left out, as in :func:`retrieval_table`)?"""
    gallery, q_vecs = l2_normalise(emb), l2_normalise(query_emb)
    ranks = own_item_rank(gallery, queries, q_vecs)
    res = {"item@1": float((ranks < 1).mean()), "item@10": float((ranks < 10).mean())}
    nn = top_k_neighbours(gallery, queries, 10, query_vectors=q_vecs)
    for name, codes in label_sets.items():
        res[f"P@1 {name}"] = precision_at(nn, queries, codes, 1)
        res[f"P@10 {name}"] = precision_at(nn, queries, codes, 10)
    return res


def pixel_baseline(squares_u8: np.ndarray, size: int = 32,
                   reference_u8: np.ndarray | None = None) -> np.ndarray:
    """The raw-pixel baseline: padded squares resized to 32x32, dataset mean removed (the
    mean of ``reference_u8`` when given, so distorted queries share the gallery's centring)."""
    import cv2

    def small(stack: np.ndarray) -> np.ndarray:
        return np.stack([cv2.resize(s, (size, size), interpolation=cv2.INTER_AREA)
                         for s in stack]).reshape(len(stack), -1).astype(np.float32)

    feats = small(squares_u8)
    ref = feats if reference_u8 is None else small(reference_u8)
    return l2_normalise(feats - ref.mean(axis=0, keepdims=True))
