"""Deterministic synthetic data for checks that must run without any: 'product photos', and
big catalogues of embeddings grown from a few real ones.

numpy only, so runtime tests can use it without torch.
"""

from __future__ import annotations

import numpy as np


def generated_squares(size: int, n: int, seed: int = 0) -> np.ndarray:
    """n uint8 RGB squares: a coloured, textured blob on white, like a catalogue photo."""
    rng = np.random.default_rng(seed)
    out = np.full((n, size, size, 3), 255, dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size] / size
    for i in range(n):
        cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.35)
        mask = (xx - cx) ** 2 + ((yy - cy) * rng.uniform(0.6, 1.6)) ** 2 < r * r
        out[i][mask] = rng.integers(0, 256, 3)
        noisy = out[i].astype(np.float32) + rng.normal(0, 6, out[i].shape)
        out[i] = np.clip(noisy, 0, 255).astype(np.uint8)
    return out


def scale_embeddings(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Real embeddings padded to n rows with jittered copies (the catalogue stays realistic)."""
    rng = np.random.default_rng(seed)
    reps = [real]
    while sum(len(r) for r in reps) < n:
        base = real[rng.integers(0, len(real), min(len(real), n - sum(len(r) for r in reps)))]
        jitter = base + rng.normal(0, 0.03, base.shape).astype(np.float32)
        reps.append(jitter / np.linalg.norm(jitter, axis=1, keepdims=True))
    return np.concatenate(reps)[:n].astype(np.float32)
