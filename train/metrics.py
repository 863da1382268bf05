"""Retrieval precision: how often the nearest catalogue items share the query's labels."""

from __future__ import annotations

import numpy as np


def label_codes(*columns: list[str]) -> np.ndarray:
    """Rows of one or more label columns -> one integer per distinct combination."""
    keys = list(zip(*columns))
    vocab = {k: i for i, k in enumerate(sorted(set(keys)))}
    return np.array([vocab[k] for k in keys], dtype=np.int64)


def _masked_similarities(gallery: np.ndarray, queries: np.ndarray,
                         query_vectors: np.ndarray | None, chunk: int = 512):
    """Yield (start, query rows, query vectors, sims) per chunk of queries: cosine against the
    whole gallery, each query's own photo set to -inf."""
    for s in range(0, len(queries), chunk):
        q = queries[s : s + chunk]
        vecs = gallery[q] if query_vectors is None else query_vectors[s : s + chunk]
        sims = vecs @ gallery.T
        sims[np.arange(len(q)), q] = -np.inf
        yield s, q, vecs, sims


def _own_rank(gallery: np.ndarray, q: np.ndarray, vecs: np.ndarray,
              sims: np.ndarray) -> np.ndarray:
    """How many other gallery items score at least as high as each query's own photo."""
    own = np.einsum("ij,ij->i", vecs, gallery[q])
    return (sims >= own[:, None]).sum(axis=1)


def _top_k(sims: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1)


def top_k_neighbours(gallery: np.ndarray, queries: np.ndarray, k: int,
                     chunk: int = 512, query_vectors: np.ndarray | None = None) -> np.ndarray:
    """Indices into ``gallery`` of the k nearest (cosine) neighbours of each query index,
    the query itself left out. ``gallery`` rows must be L2-normalised. ``query_vectors``
    (one per query, normalised) searches with other views of the query photos instead."""
    k = min(k, len(gallery) - 1)
    out = np.empty((len(queries), k), dtype=np.int64)
    for s, q, _, sims in _masked_similarities(gallery, queries, query_vectors, chunk):
        out[s : s + len(q)] = _top_k(sims, k)
    return out


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _per_query(nn: np.ndarray, queries: np.ndarray,
               label_sets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    res: dict[str, np.ndarray] = {}
    for name, codes in label_sets.items():
        same = codes[nn[:, :10]] == codes[queries][:, None]
        res[f"P@1 {name}"] = same[:, 0].astype(np.float64)
        res[f"P@10 {name}"] = same.mean(axis=1)
    return res


def _precisions(nn: np.ndarray, queries: np.ndarray,
                label_sets: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(v.mean()) for k, v in _per_query(nn, queries, label_sets).items()}


def per_query_table(emb: np.ndarray, queries: np.ndarray,
                    label_sets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each query's own P@1 and P@10 per label set: what :func:`retrieval_table` averages, kept
    apart so that two models scored on the same queries can be compared pairwise."""
    return _per_query(top_k_neighbours(l2_normalise(emb), queries, 10), queries, label_sets)


def retrieval_table(emb: np.ndarray, queries: np.ndarray,
                    label_sets: dict[str, np.ndarray]) -> dict[str, float]:
    """P@1 and P@10 for each named label set, e.g. {'articleType': codes, ...}."""
    return {k: float(v.mean()) for k, v in per_query_table(emb, queries, label_sets).items()}


def paired_margin(a: np.ndarray, b: np.ndarray, resamples: int = 2000,
                  seed: int = 0) -> tuple[float, float, float]:
    """mean(a - b) over the same queries with a 95% paired bootstrap interval: whether a
    difference of 0.01 between two models is a difference or the luck of these queries."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    means = np.array([d[rng.integers(0, len(d), len(d))].mean() for _ in range(resamples)])
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(d.mean()), float(lo), float(hi)


def own_item_rank(gallery: np.ndarray, queries: np.ndarray,
                  query_vectors: np.ndarray) -> np.ndarray:
    """0-based rank of each query's own catalogue photo among all gallery items when searching
    with ``query_vectors`` (e.g. a shopper's photo of that item). Ties count against it."""
    ranks = np.empty(len(queries), dtype=np.int64)
    for s, q, vecs, sims in _masked_similarities(gallery, queries, query_vectors):
        ranks[s : s + len(q)] = _own_rank(gallery, q, vecs, sims)
    return ranks


def shopper_table(emb: np.ndarray, queries: np.ndarray, query_emb: np.ndarray,
                  label_sets: dict[str, np.ndarray]) -> dict[str, float]:
    """Search with distorted views of the queries: is the item itself found (item@k, its
    catalogue photo kept in the gallery), and are the other neighbours alike (P@k, the
    catalogue photo left out, as in :func:`retrieval_table`)? One pass over the similarities."""
    gallery, q_vecs = l2_normalise(emb), l2_normalise(query_emb)
    k = min(10, len(gallery) - 1)
    ranks = np.empty(len(queries), dtype=np.int64)
    nn = np.empty((len(queries), k), dtype=np.int64)
    for s, q, vecs, sims in _masked_similarities(gallery, queries, q_vecs):
        ranks[s : s + len(q)] = _own_rank(gallery, q, vecs, sims)
        nn[s : s + len(q)] = _top_k(sims, k)
    res = {"item@1": float((ranks < 1).mean()), "item@10": float((ranks < 10).mean())}
    return res | _precisions(nn, queries, label_sets)


def pixel_features(squares_u8: np.ndarray, size: int = 32) -> np.ndarray:
    """Padded squares resized to size x size, flattened to float32 (not yet centred)."""
    import cv2

    return np.stack([cv2.resize(s, (size, size), interpolation=cv2.INTER_AREA)
                     for s in squares_u8]).reshape(len(squares_u8), -1).astype(np.float32)


def pixel_baseline(squares_u8: np.ndarray, size: int = 32,
                   centre: np.ndarray | None = None) -> np.ndarray:
    """The raw-pixel baseline: padded squares resized to 32x32, dataset mean removed (``centre``
    when given: the gallery's mean features, so distorted queries share its centring)."""
    feats = pixel_features(squares_u8, size)
    return l2_normalise(feats - (feats.mean(axis=0) if centre is None else centre))
