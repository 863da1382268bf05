"""Retrieval precision: how often the nearest catalogue items share the query's labels."""

from __future__ import annotations

import numpy as np


def label_codes(*columns: list[str]) -> np.ndarray:
    """Rows of one or more label columns -> one integer per distinct combination."""
    keys = list(zip(*columns))
    vocab = {k: i for i, k in enumerate(sorted(set(keys)))}
    return np.array([vocab[k] for k in keys], dtype=np.int64)


def top_k_neighbours(gallery: np.ndarray, queries: np.ndarray, k: int,
                     chunk: int = 512) -> np.ndarray:
    """Indices into ``gallery`` of the k nearest (cosine) neighbours of each query index,
    the query itself left out. ``gallery`` rows must be L2-normalised."""
    k = min(k, len(gallery) - 1)
    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), chunk):
        q = queries[s : s + chunk]
        sims = gallery[q] @ gallery.T
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


def pixel_baseline(squares_u8: np.ndarray, size: int = 32) -> np.ndarray:
    """The raw-pixel baseline: padded squares resized to 32x32, dataset mean removed."""
    import cv2

    small = np.stack([cv2.resize(s, (size, size), interpolation=cv2.INTER_AREA)
                      for s in squares_u8]).reshape(len(squares_u8), -1).astype(np.float32)
    return l2_normalise(small - small.mean(axis=0, keepdims=True))
