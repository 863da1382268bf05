"""Structure checks for a catalogue generation, after its checksums and before anything uses it.

A checksum says a file is the one that was written, not that it makes sense: a manifest that is
a list, labels shorter than the items, NaN embeddings or an index file the manifest never listed
all passed before and failed later as KeyErrors, IndexErrors, wrong results or a crash inside
hnswlib. Every problem here is one ``CatalogError`` line naming the catalogue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fai_infer.storage import CatalogError

DATA_FILES = {"embeddings.npy", "labels.npy", "items.json"}
OPTIONAL_FILES = {"index.hnsw"}
MANIFEST_KEYS = {"format_version": int, "count": int, "dim": int, "model_sha256": str,
                 "next_label": int, "files": dict}
MAX_ITEMS = 100_000_000  # far above any shop; refuses absurd counts and capacities
UNIT_TOLERANCE = 1e-3


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_manifest(root: Path, gen: Path, manifest: Any) -> dict:
    """The manifest's shape, and that every file in the generation is listed (and only those)."""
    if not isinstance(manifest, dict):
        raise CatalogError(f"{root}: manifest is a {type(manifest).__name__}, not an object")
    for key, kind in MANIFEST_KEYS.items():
        value = manifest.get(key)
        if value is None or (not _is_int(value) if kind is int else not isinstance(value, kind)):
            raise CatalogError(f"{root}: manifest key {key!r} is missing or not "
                               f"{'an integer' if kind is int else 'a ' + kind.__name__}")
    count, dim, next_label = manifest["count"], manifest["dim"], manifest["next_label"]
    if not 0 <= count <= MAX_ITEMS or not 0 < dim <= 65_536 or not count <= next_label <= 2**62:
        raise CatalogError(f"{root}: manifest numbers are out of range (count {count}, dim "
                           f"{dim}, next_label {next_label})")
    files = manifest["files"]
    for name, entry in files.items():
        if (name not in DATA_FILES | OPTIONAL_FILES or not isinstance(entry, dict)
                or not _is_int(entry.get("bytes")) or not isinstance(entry.get("sha256"), str)):
            raise CatalogError(f"{root}: manifest lists {name!r} without a size and checksum, "
                               f"or a file a catalogue does not have")
    missing = DATA_FILES - set(files)
    if missing:
        raise CatalogError(f"{root}: manifest does not list {', '.join(sorted(missing))}")
    unlisted = sorted(p.name for p in gen.iterdir() if p.name != "manifest.json"
                      and p.name not in files)
    if unlisted:
        raise CatalogError(f"{root}: {gen.name} holds files its manifest does not list "
                           f"({', '.join(unlisted)}); restore a backup or re-index")
    if "index.hnsw" in files:
        capacity, deleted = manifest.get("hnsw_capacity"), manifest.get("hnsw_deleted")
        if (not _is_int(capacity) or not _is_int(deleted) or not count <= capacity <= 4 * MAX_ITEMS
                or capacity > 16 * max(next_label, 16) or not 0 <= deleted <= next_label):
            raise CatalogError(f"{root}: HNSW capacity {capacity!r} / deleted {deleted!r} are "
                               f"absurd for {count} items")
    return manifest


def check_items(root: Path, items: Any, count: int) -> None:
    if not isinstance(items, list) or len(items) != count:
        raise CatalogError(f"{root}: items.json does not hold {count} items")
    for it in items:
        if (not isinstance(it, dict) or not isinstance(it.get("id"), str)
                or not isinstance(it.get("path"), str) or not isinstance(it.get("metadata"), dict)
                or not all(isinstance(k, str) and isinstance(v, str)
                           for k, v in it["metadata"].items())):
            raise CatalogError(f"{root}: items.json has an item without a string id, path and "
                               f"string metadata")
    ids = [it["id"] for it in items]
    if len(set(ids)) != len(ids):
        raise CatalogError(f"{root}: items.json repeats an id")


def check_arrays(root: Path, embeddings: np.ndarray, labels: np.ndarray, count: int, dim: int,
                 next_label: int) -> None:
    if embeddings.dtype != np.float32 or embeddings.shape != (count, dim):
        raise CatalogError(f"{root}: embeddings are {embeddings.dtype} {embeddings.shape}, "
                           f"expected float32 ({count}, {dim})")
    if labels.ndim != 1 or labels.shape[0] != count or labels.dtype.kind not in "iu":
        raise CatalogError(f"{root}: labels are {labels.dtype} {labels.shape}, expected "
                           f"{count} integers")
    if count and (labels.min() < 0 or labels.max() >= next_label):
        raise CatalogError(f"{root}: labels fall outside 0..{next_label - 1}")
    if len(np.unique(labels)) != count:
        raise CatalogError(f"{root}: labels repeat (two items would share one index entry)")
    if not np.isfinite(embeddings).all():
        raise CatalogError(f"{root}: embeddings hold NaN or infinite values")
    norms = np.linalg.norm(embeddings, axis=1)
    if count and np.abs(norms - 1.0).max() > UNIT_TOLERANCE:
        raise CatalogError(f"{root}: embeddings are not unit vectors (norms "
                           f"{norms.min():.3f}..{norms.max():.3f})")
