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

from fai_infer.errors import CatalogError
from fai_infer.store.delta import Delta, is_delta_name

DATA_FILES_BY_FORMAT = {
    1: {"embeddings.npy", "labels.npy", "items.json"},
    2: {"embeddings.npy", "labels.npy", "ids.json", "paths.json", "metadata.json",
        "metadata_codes.npy"},
}
DATA_FILES = DATA_FILES_BY_FORMAT[2]
OPTIONAL_FILES = {"index.hnsw", "whitening_mean.npy", "whitening_proj.npy"}
MANIFEST_KEYS = {"format_version": int, "count": int, "dim": int, "model_sha256": str,
                 "next_label": int, "files": dict}
MAX_ITEMS = 100_000_000  # far above any shop; refuses absurd counts and capacities
UNIT_TOLERANCE = 1e-3
MAX_SCALE = 10_000  # scores in a stored match scale (a fit samples a few hundred)


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
    data_files = DATA_FILES_BY_FORMAT.get(manifest["format_version"])
    if data_files is None:
        raise CatalogError(f"{root}: catalogue format {manifest['format_version']} is not "
                           f"supported by this runtime (it reads "
                           f"{', '.join(map(str, DATA_FILES_BY_FORMAT))})")
    for name, entry in files.items():
        if (name not in data_files | OPTIONAL_FILES or not isinstance(entry, dict)
                or not _is_int(entry.get("bytes")) or not isinstance(entry.get("sha256"), str)):
            raise CatalogError(f"{root}: manifest lists {name!r} without a size and checksum, "
                               f"or a file a catalogue does not have")
    missing = data_files - set(files)
    if missing:
        raise CatalogError(f"{root}: manifest does not list {', '.join(sorted(missing))}")
    unlisted = sorted(p.name for p in gen.iterdir() if p.name != "manifest.json"
                      and p.name not in files and not is_delta_name(p.name))
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


def _strings(value: Any, count: int | None = None) -> bool:
    return (isinstance(value, list) and all(isinstance(v, str) for v in value)
            and (count is None or len(value) == count))


def _string_rows(value: Any, count: int) -> bool:
    return isinstance(value, list) and len(value) == count and all(
        isinstance(r, dict) and all(isinstance(k, str) and isinstance(v, str)
                                    for k, v in r.items()) for r in value)


def check_columns(root: Path, ids: Any, paths: Any, metadata: Any, codes: np.ndarray,
                  count: int) -> None:
    """Format 2's id, path and metadata files against each other and the count."""
    if not _strings(ids, count):
        raise CatalogError(f"{root}: ids.json does not hold {count} string ids")
    if len(set(ids)) != count:
        raise CatalogError(f"{root}: ids.json repeats an id")
    if not _strings(paths, count):
        raise CatalogError(f"{root}: paths.json does not hold {count} string paths")
    if (not isinstance(metadata, dict) or not _strings(metadata.get("columns"))
            or not isinstance(metadata.get("values"), dict)
            or set(metadata["values"]) != set(metadata["columns"])
            or not all(_strings(v) for v in metadata["values"].values())):
        raise CatalogError(f"{root}: metadata.json is not a table of string columns and values")
    columns = metadata["columns"]
    if codes.dtype != np.int32 or codes.shape != (count, len(columns)):
        raise CatalogError(f"{root}: metadata codes are {codes.dtype} {codes.shape}, expected "
                           f"int32 ({count}, {len(columns)})")
    for j, c in enumerate(columns):
        if count and (codes[:, j].min() < -1 or codes[:, j].max() >= len(metadata["values"][c])):
            raise CatalogError(f"{root}: metadata codes of column {c!r} point past its values")


def check_delta(root: Path, path: Path, header: Any, vectors: np.ndarray) -> Delta:
    """A delta's header and vectors make sense together (after its checksum passed)."""
    where = f"{root}: {path.parent.name}/{path.name}"
    if not isinstance(header, dict):
        raise CatalogError(f"{where} is not a delta (header is not an object)")
    add, update = header.get("add"), header.get("update")
    if (not _strings(header.get("remove")) or not isinstance(add, dict)
            or not isinstance(update, dict)):
        raise CatalogError(f"{where} lacks its remove/add/update lists")
    n = len(add.get("ids") or [])
    if (not _strings(add.get("ids"), n) or not _strings(add.get("paths"), n)
            or not _string_rows(add.get("rows"), n) or len(set(add["ids"])) != n):
        raise CatalogError(f"{where}: its added ids, paths and metadata do not line up")
    m = len(update.get("ids") or [])
    if not _strings(update.get("ids"), m) or not _string_rows(update.get("rows"), m):
        raise CatalogError(f"{where}: its metadata updates do not line up")
    if len(vectors) != n or not np.isfinite(vectors).all() or (
            n and np.abs(np.linalg.norm(vectors, axis=1) - 1.0).max() > UNIT_TOLERANCE):
        raise CatalogError(f"{where}: its vectors are not {n} finite unit vectors")
    return Delta(remove=header["remove"], add_ids=add["ids"], add_paths=add["paths"],
                 add_rows=add["rows"], vectors=vectors, update_ids=update["ids"],
                 update_rows=update["rows"], scale=checked_scale(where, header.get("scale")))


def checked_scale(where: str, value: Any) -> np.ndarray | None:
    """A stored match scale (sorted finite scores in [-1, 1]; absent: None), else one line."""
    if value is None:
        return None
    scores = np.asarray(value, np.float64) if isinstance(value, list) and len(value) <= \
        MAX_SCALE and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                          for x in value) else None
    if scores is None or not np.isfinite(scores).all() or np.abs(scores).max(initial=0) > 1.001 \
            or (np.diff(scores) < 0).any():
        raise CatalogError(f"{where}: its match scale is not a sorted list of scores")
    return scores
