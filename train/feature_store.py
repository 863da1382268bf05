"""Frozen-network features cached on disk per photo file and per network, written as they come.

The frozen ImageNet pass over a shop's photos used to be one file keyed by the whole photo
list, written only at the end: a run whose budget ran out part-way kept nothing, and one photo
more or less paid for the whole pass again (issue 34). Here every chunk of features is saved
the moment it is computed, under a folder named by the network's weights and the pixels it
was fed, and each row by the file it came from (path, size, modification time), so an
interrupted pass resumes where it stopped and a changed photo is recomputed alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

CHUNK = 128  # photos per saved chunk: small enough that an interrupted pass loses little


def file_sha(path: str | Path) -> str:
    """sha1 of a file's bytes (the network's weights: features change when they do)."""
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def photo_key(path: str | Path) -> str:
    """One photo file's identity: its place and what it holds as far as stat can tell."""
    p = Path(path)
    try:
        st = p.stat()
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        stamp = "missing"
    return hashlib.sha1(f"{p.resolve()}|{stamp}".encode()).hexdigest()[:20]


class FeatureStore:
    """Features of one network fed one kind of pixels, one row per photo file."""

    def __init__(self, cache_dir: str | Path, network_key: str):
        self.folder = Path(cache_dir) / f"features-{network_key[:16]}"
        self.rows: dict[str, np.ndarray] = {}
        if self.folder.is_dir():
            for chunk in sorted(self.folder.glob("chunk-*.npz")):
                if ".tmp." in chunk.name:
                    continue  # a writer that died before its rename
                try:
                    with np.load(chunk, allow_pickle=False) as z:
                        self.rows.update(zip(z["keys"].tolist(), z["features"]))
                except (OSError, ValueError, KeyError):
                    continue  # a damaged chunk is recomputed, never trusted

    @staticmethod
    def key_for(weights_sha: str, **pixels) -> str:
        """The folder key: the weights' sha and how the photos were turned into pixels."""
        return hashlib.sha1(json.dumps([weights_sha, pixels], sort_keys=True,
                                       default=str).encode()).hexdigest()

    def missing(self, paths: Sequence[str | Path]) -> list[int]:
        """Positions of ``paths`` with no stored row."""
        return [i for i, p in enumerate(paths) if photo_key(p) not in self.rows]

    def features(self, paths: Sequence[str | Path], compute: Callable[[np.ndarray], np.ndarray],
                 before_chunk: Callable[[int, int], None] = lambda done, total: None
                 ) -> np.ndarray:
        """(len(paths), d) features; ``compute(positions)`` makes the missing ones chunk by
        chunk, each saved at once. ``before_chunk(done, total)`` may raise to stop (a spent
        budget): what was saved stays for the next run."""
        keys = [photo_key(p) for p in paths]
        todo = [i for i, k in enumerate(keys) if k not in self.rows]
        for s in range(0, len(todo), CHUNK):
            before_chunk(s, len(todo))
            part = np.asarray(todo[s : s + CHUNK])
            feats = np.asarray(compute(part), dtype=np.float32)
            self._save([keys[i] for i in part], feats)
        if not keys:
            return np.zeros((0, 0), np.float32)
        return np.stack([self.rows[k] for k in keys])

    def _save(self, keys: list[str], feats: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha1("".join(keys).encode()).hexdigest()[:16]
        tmp = self.folder / f"chunk-{name}.{os.getpid()}.tmp.npz"
        np.savez(tmp, keys=np.array(keys), features=feats)
        tmp.replace(self.folder / f"chunk-{name}.npz")
        self.rows.update(zip(keys, feats))


def cached_array(path: str | Path, make: Callable[[], np.ndarray]) -> np.ndarray:
    """One array kept in a .npy file: loaded when there, else made and written atomically
    (a temporary file renamed into place, so an interrupted run leaves no half file)."""
    path = Path(path)
    if path.is_file():
        return np.load(path)
    out = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, out)
    tmp.replace(path)
    return out
