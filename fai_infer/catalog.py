"""A shop's catalogue: the thin layer that joins an encoder, a vector index, a metadata table
and a store on disk.

``Catalog.build(folder)`` indexes photos, ``.similar(image_or_id)`` and
``.similar_to_basket(items)`` recommend, ``.add``/``.remove``/``.add_embeddings``/
``.update_metadata`` change it. On disk every change is a small delta committed under a
cross-process writer lock (``fai_infer/store.py``), and ``compact()`` folds the deltas into a
new base. ``refresh()`` picks up what other processes committed; ``live=True`` does so before
every search. One in-process lock guards the state, so kiosk threads can query while another
thread changes the catalogue.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections import OrderedDict
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from fai_infer.basket import prepare_basket, round_robin
from fai_infer.buffers import load_with_headroom
from fai_infer.display import checked_display, choose_display, column_order
from fai_infer.encoder import Encoder
from fai_infer.filters import Where, parse_where
from fai_infer.metadata import MetadataTable
from fai_infer.preprocess import ImageInput
from fai_infer.progress import Progress
from fai_infer.search import EXACT_BELOW, HnswSearch, exact_top_k
from fai_infer.sources import (ids_for, join_metadata, join_report, list_images, looks_like_path,
                               normalise_id, photos_by_stem, read_metadata, shorten,
                               stored_path)
from fai_infer.store import (DELTA_PREFIX, Delta, delta_name, delta_path, is_delta_name,
                             read_delta, write_delta, writer_lock)
from fai_infer.store_check import (check_arrays, check_columns, check_items, check_manifest)
from fai_infer.storage import (CatalogError, current_generation_name, peek_manifest,
                               read_generation, write_generation)
from fai_infer.vector_index import VectorIndex
from fai_infer import safe_json
from fai_infer.hnsw_check import check_hnsw_file
from fai_infer.model_identity import file_sha256_or_none, remembered_path
from fai_infer.store_files import check_npy, load_npy, read_bounded

CATALOG_FORMAT = 2
COMPACT_RATIO = 0.25  # fold deltas into a new base once they change this share of the items
COMPACT_MIN_ROWS = 4_096
COMPACT_MAX_DELTAS = 512  # ... or once this many delta files (or items / 256) pile up
OPEN_RETRIES = 5
FILTER_CACHE_ENTRIES = 16
FILTER_CACHE_BYTES = 256 << 20


class NotInCatalogue(ValueError):
    """An item id that is not (or no longer) in the catalogue."""

    def __init__(self, item_id: str):
        super().__init__(f"not in the catalogue: {item_id}")
        self.item_id = item_id


@dataclass
class Hit:
    """One result. ``source``: for basket results, the basket item it was found for (its id,
    or the photo's name for a basket photo that is not a catalogue item); else ""."""

    id: str
    score: float
    path: str
    metadata: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def to_dict(self) -> dict:
        out = {"id": self.id, "score": round(float(self.score), 6), "path": self.path,
               "metadata": self.metadata}
        if self.source:
            out["source"] = self.source
        return out


@dataclass
class Skipped:
    path: str
    reason: str

    def to_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason}


def remembered_model(path: str | os.PathLike) -> str | None:
    """The model file a stored catalogue was built with, if it still exists. Read without
    verifying checksums (``open`` does that next, with the model's weights checked too): at a
    million items hashing twice would double the start-up time."""
    try:
        manifest = peek_manifest(Path(path))
    except CatalogError:
        return None
    return remembered_path(manifest)  # only a file whose bytes match what was recorded


def _unit_rows(vectors: Any, dim: int, what: str = "vector") -> np.ndarray:
    """(n, dim) float32 unit rows, or one ValueError naming the first bad row."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or v.shape[1] != dim:
        raise ValueError(f"{what} has shape {tuple(np.shape(vectors))}; this catalogue's model "
                         f"makes {dim}-d embeddings")
    norms = np.linalg.norm(v, axis=1)
    bad = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
    if len(bad):
        raise ValueError(f"{what} {int(bad[0])} is zero or not finite")
    return np.ascontiguousarray(v / norms[:, None], dtype=np.float32)


def query_vector(vector: Any, dim: int) -> np.ndarray:
    """A query embedding made elsewhere, checked and L2-normalised (any positive scale)."""
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    if v.shape[0] != dim:
        raise ValueError(f"vector has {v.shape[0]} values; this catalogue's model makes {dim}")
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("vector is zero or not finite")
    return v / norm


def checked_embeddings(ids: Sequence[str], vectors: Any, paths: Sequence[str] | None,
                       dim: int) -> tuple[list[str], np.ndarray, list[str]]:
    """``add_embeddings``' input, checked for every back end: unique non-empty ids, one finite
    non-zero ``dim``-d vector each (returned L2-normalised), one path each (stored form)."""
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"id {dup!r} appears twice in one add_embeddings call")
    if any(not i for i in ids):
        raise ValueError("an id is empty")
    units = _unit_rows(vectors, dim, "vector") if len(ids) else np.zeros((0, dim), np.float32)
    if len(units) != len(ids):
        raise ValueError(f"{len(units)} vectors for {len(ids)} ids")
    paths = [stored_path(p) for p in paths] if paths is not None else [""] * len(ids)
    if len(paths) != len(ids):
        raise ValueError(f"{len(paths)} paths for {len(ids)} ids")
    return ids, units, paths


def rows_for(ids: Sequence[str], metadata: Any) -> list[dict[str, str]]:
    """Metadata rows aligned with ``ids`` from a list of rows or a mapping id -> row."""
    if metadata is None:
        return [{} for _ in ids]
    if isinstance(metadata, Mapping):
        return [{str(c): str(v) for c, v in metadata.get(i, {}).items()} for i in ids]
    rows = list(metadata)
    if len(rows) != len(ids):
        raise ValueError(f"{len(rows)} metadata rows for {len(ids)} ids")
    return [{str(c): str(v) for c, v in (r or {}).items()} for r in rows]


def model_label(source) -> str:
    """'fai-lite0 v2 (int8, id 5250904ce839)' for an Encoder or a catalogue's manifest (older
    manifests know only the name): what a shop needs to tell two models apart. The id is the
    hash of weights + quantisation that a catalogue remembers."""
    if isinstance(source, dict):
        name, version = source.get("model_name"), source.get("model_version")
        quant, ident = source.get("model_quantization"), str(source.get("model_sha256", ""))
    else:
        name, version = source.info.name, source.info.version
        quant, ident = source.info.quantization, source.model_sha256
    label = shorten(str(name)) + (f" v{shorten(str(version))}" if version else "")
    return label + f" ({shorten(str(quant)) + ', ' if quant else ''}id {ident[:12]})"


class Catalog:
    """``Catalog(encoder)`` is an empty in-memory catalogue; ``build`` and ``open`` make one
    from photos or from disk. ``live=True``: refresh from disk before every search."""

    def __init__(self, encoder: Encoder | None = None, exact_below: int = EXACT_BELOW,
                 live: bool = False, lock_timeout: float | None = None):
        self.encoder = encoder or Encoder()
        self.index = VectorIndex(self.encoder.dim, exact_below)
        self.table = MetadataTable()
        self._ids: list[str] = []  # per row, tombstoned rows included
        self._paths: list[str] = []
        self._row_of: dict[str, int] = {}  # live id -> row
        self.root: Path | None = None
        self.skipped: list[Skipped] = []
        self.warnings: list[str] = []
        self.id_column = "id"
        self.id_normalise = False  # ids also found ignoring case, spaces and leading zeros
        self._normal: tuple[int, dict[str, str]] = (-1, {})
        self.live = live
        self.lock_timeout = lock_timeout
        self._display: dict[str, list[str]] = {}
        self._lock = threading.RLock()
        self._compacting = False  # this object is writing a base without holding _lock
        self._gen: str | None = None  # the stored generation this state is based on
        self._applied = 0  # deltas of that generation applied
        self._delta_rows = 0  # rows those deltas touched (for automatic compaction)
        self._version = 0  # bumped by every change (cache key)
        self._filter_cache: OrderedDict[tuple, tuple] = OrderedDict()

    # -- views -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.index.live

    def __contains__(self, item_id: object) -> bool:
        self._maybe_refresh()
        return self._resolve(item_id) is not None

    @property
    def exact_below(self) -> int:
        return self.index.exact_below

    @property
    def engine(self) -> str:
        return self.index.engine

    def _live_rows(self) -> np.ndarray:
        return np.flatnonzero(self.index.alive)

    @property
    def ids(self) -> list[str]:
        """Live ids in insertion order (a copy)."""
        with self._lock:
            return [self._ids[r] for r in self._live_rows()]

    @property
    def paths(self) -> list[str]:
        with self._lock:
            return [self._paths[r] for r in self._live_rows()]

    @property
    def rows(self) -> list[dict[str, str]]:
        with self._lock:
            return self.table.rows(self._live_rows())

    @property
    def embeddings(self) -> np.ndarray:
        with self._lock:
            return self.index.vectors[self.index.alive].copy()

    def iter_batches(self, size: int = 10_000
                     ) -> Iterator[tuple[list[str], np.ndarray, list[str], list[dict[str, str]]]]:
        """(ids, unit vectors, paths, metadata rows) of the live items, ``size`` at a time."""
        with self._lock:
            live = self._live_rows()
            for start in range(0, len(live), size):
                rows = live[start:start + size]
                yield ([self._ids[r] for r in rows], self.index.vectors[rows].copy(),
                       [self._paths[r] for r in rows], self.table.rows(rows))

    def get(self, item_id: str) -> Hit:
        self._maybe_refresh()
        with self._lock:
            found = self._resolve(item_id)
            if found is None:
                raise NotInCatalogue(item_id)
            r = self._row_of[found]
            return Hit(found, 1.0, self._paths[r], self.table.row(r))

    def vector(self, item_id: str) -> np.ndarray:
        """The stored embedding of a catalogue item."""
        with self._lock:
            found = self._resolve(item_id)
            if found is None:
                raise NotInCatalogue(item_id)
            return self.index.vectors[self._row_of[found]].copy()

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def build(cls, folder: str | os.PathLike, metadata: Any = None, id_column: str = "id",
              encoder: Encoder | None = None, batch_size: int = 32, decode_threads: int = 2,
              progress: bool = False, filters: Sequence[str] | None = None,
              caption: Sequence[str] | None = None, id_normalise: bool = False) -> "Catalog":
        """Index every photo under ``folder``. Files that cannot be used are skipped and listed
        in ``.skipped``; a metadata CSV that matches few photos is reported in ``.warnings``
        (none at all is an error). ``filters``/``caption`` name the columns a page filters on
        and shows under each photo (defaults are chosen from the metadata otherwise).
        ``id_normalise``: join CSV ids ignoring case and leading zeros."""
        encoder = encoder or Encoder()
        folder = Path(folder)
        paths = list_images(folder)
        ids = ids_for(paths, folder)
        meta = read_metadata(metadata, id_column)
        source = "metadata" if isinstance(metadata, Mapping) else str(metadata)
        join = join_metadata(ids, meta, source, id_column, id_normalise)
        cat = cls(encoder)
        cat.id_column, cat.id_normalise = id_column, id_normalise
        if filters is not None or caption is not None:
            cat.set_display(filters, caption, known=column_order(meta.values()))
        cat._encode_and_add(paths, ids, join.rows, batch_size, decode_threads, progress)
        if join.warning:  # counted again over what was indexed, without the skipped files
            report = join_report(cat.ids, meta, source, id_column, id_normalise)
            if report:
                cat.warnings.append(report)
        return cat

    @classmethod
    def open(cls, path: str | os.PathLike, encoder: Encoder | None = None, live: bool = False,
             lock_timeout: float | None = None) -> "Catalog":
        """Open a stored catalogue (base + deltas). Without ``encoder`` the model file it was
        built with is loaded when it still exists, else the default model. A reader racing a
        compaction that removes what it was reading retries with the new generation."""
        root = Path(path)
        if encoder is None:
            remembered = remembered_model(root)
            encoder = Encoder(remembered) if remembered else Encoder()
        cat = cls(encoder, live=live, lock_timeout=lock_timeout)
        cat.root = root
        cat.refresh()  # nothing loaded yet: reads the current generation, retrying on a race
        return cat

    def _load(self, root: Path) -> None:
        """Read the current base and apply its deltas (self is fresh)."""
        gen, manifest = read_generation(root)
        manifest = check_manifest(root, gen, manifest)
        self._check_model(root, manifest)
        dim, count = manifest["dim"], manifest["count"]
        try:
            check_npy(gen / "embeddings.npy")  # a forged shape must not allocate terabytes
            emb = load_with_headroom(gen / "embeddings.npy")  # the next add copies nothing
            labels = load_npy(gen / "labels.npy")
            if manifest["format_version"] == 1:
                items = safe_json.loads(read_bounded(gen / "items.json", 1 << 40))
                check_items(root, items, count)
                ids = [it["id"] for it in items]
                paths = [it["path"] for it in items]
                table = MetadataTable()
                table.append([it["metadata"] for it in items])
            else:
                ids = safe_json.loads(read_bounded(gen / "ids.json", 1 << 40))
                paths = safe_json.loads(read_bounded(gen / "paths.json", 1 << 40))
                meta = safe_json.loads(read_bounded(gen / "metadata.json", 1 << 40))
                codes = load_npy(gen / "metadata_codes.npy")
                check_columns(root, ids, paths, meta, codes, count)
                table = MetadataTable(meta["columns"], meta["values"], codes)
        except (OSError, ValueError) as exc:
            raise CatalogError(f"{root}: catalogue data cannot be read ({exc})") from None
        check_arrays(root, emb, labels, count, dim, manifest["next_label"])
        order = np.argsort(labels, kind="stable")  # rows sorted by label (always, when we wrote it)
        if not (order == np.arange(count)).all():
            emb, labels = emb[order], labels[order]
            ids, paths = [ids[i] for i in order], [paths[i] for i in order]
            table = MetadataTable(table.columns, table.values, table.codes[order])
        hnsw = None
        if "index.hnsw" in manifest["files"]:
            try:  # hnswlib trusts the file: a bad link or entry point crashed the first query
                check_hnsw_file(gen / "index.hnsw", dim, count, manifest["hnsw_deleted"], labels)
            except (OSError, ValueError) as exc:
                raise CatalogError(f"{root}: index.hnsw is damaged ({exc}); restore a backup "
                                   f"or re-index") from None
            try:
                hnsw = HnswSearch.load(gen / "index.hnsw", dim, manifest["hnsw_capacity"],
                                       manifest["hnsw_deleted"])
            except RuntimeError as exc:  # hnswlib's own complaint about the file
                raise CatalogError(f"{root}: index.hnsw cannot be loaded ({exc})") from None
            if hnsw.count != count:
                raise CatalogError(f"{root}: index.hnsw holds {hnsw.count} items, the "
                                   f"catalogue {count}")
        self.index = VectorIndex(dim, manifest.get("exact_below", EXACT_BELOW)
                                 if isinstance(manifest.get("exact_below"), int) else EXACT_BELOW,
                                 emb, labels.astype(np.int64),
                                 manifest["next_label"], hnsw)
        self.table = table
        self._ids, self._paths = list(ids), list(paths)
        self._row_of = {id_: r for r, id_ in enumerate(self._ids)}
        self.root, self._gen, self._applied, self._delta_rows = root, gen.name, 0, 0
        self.id_column = manifest.get("id_column") if isinstance(
            manifest.get("id_column"), str) else "id"
        self.id_normalise = manifest.get("id_normalise") is True
        display = manifest.get("display")
        self._display = {k: [str(c) for c in display[k]] for k in ("filters", "caption")
                         if isinstance(display, dict) and isinstance(display.get(k), list)}
        self._replay(gen)
        self._check_no_gap(gen)

    def _check_no_gap(self, gen: Path) -> None:
        """Replay stops at the first missing delta; one numbered past it (a deleted file, a
        partial copy) would be dropped silently, and the next commit would fill the hole with
        other content. Checked on open only (one directory listing)."""
        later = [int(p.name[len(DELTA_PREFIX):]) for p in gen.iterdir()
                 if is_delta_name(p.name) and int(p.name[len(DELTA_PREFIX):]) > self._applied]
        if later and not delta_path(gen, self._applied + 1).exists():  # else: just committed
            raise CatalogError(f"{self.root}: {gen.name}/{delta_name(self._applied + 1)} is "
                               f"missing but {delta_name(min(later))} follows it; restore a "
                               f"backup or re-index")

    def _check_model(self, root: Path, manifest: dict) -> None:
        encoder = self.encoder
        if manifest["model_sha256"] != encoder.model_sha256:
            raise CatalogError(
                f"{root}: indexed with model {model_label(manifest)}, but the loaded model is "
                f"{model_label(encoder)}; re-index with 'fai index PHOTOS_DIR --out {root}' "
                f"or load the model file it was built with (--model; it was "
                f"{shorten(str(manifest.get('model_path', '?')))})")
        recorded, current = manifest.get("model_file_sha256"), file_sha256_or_none(encoder.path)
        if isinstance(recorded, str) and current is not None and recorded != current:
            raise CatalogError(
                f"{root}: indexed with another model file than {shorten(str(encoder.path))} "
                f"(its metadata matches, its bytes do not: sha256 {recorded[:12]} vs "
                f"{current[:12]}); load the model file it was built with (--model) or re-index")
        stored_spec, spec = manifest.get("preprocess"), json.loads(json.dumps(
            encoder.spec.to_dict()))  # as JSON stores it: tuples become lists
        if stored_spec is not None and stored_spec != spec:
            if not isinstance(stored_spec, dict):
                raise CatalogError(f"{root}: manifest's preprocess entry is not an object")
            changed = sorted(k for k in set(stored_spec) | set(spec)
                             if stored_spec.get(k) != spec.get(k))
            raise CatalogError(
                f"{root}: indexed with another preprocessing ({', '.join(changed)} differ) "
                f"than model {encoder.info.name!r} uses; re-index with 'fai index PHOTOS_DIR "
                f"--out {root}' or load the model it was built with")
        if manifest["dim"] != encoder.dim:
            raise CatalogError(f"{root}: catalogue is {manifest['dim']}-d, the model makes "
                               f"{encoder.dim}-d embeddings")

    # -- keeping up with other processes -----------------------------------------------------
    def _replay(self, gen: Path, upto: int | None = None) -> int:
        """Apply the deltas committed to ``gen`` after the last one applied (up to number
        ``upto``); returns how many."""
        applied = 0
        while upto is None or self._applied < upto:
            path = delta_path(gen, self._applied + 1)
            try:
                delta = read_delta(self.root, path, self.index.dim)
            except FileNotFoundError:
                return applied
            self._apply(delta)
            self._applied += 1
            self._delta_rows += delta.size()
            applied += 1
        return applied

    def refresh(self) -> bool:
        """Pick up what other processes committed since this catalogue was opened or last
        refreshed: only the new deltas, or the whole new base after a compaction. Returns
        whether anything changed."""
        if self.root is None or self._compacting:  # our own compaction: nothing to pick up
            return False
        with self._lock:
            if self._compacting:
                return False
            for attempt in range(OPEN_RETRIES):
                name = current_generation_name(self.root)
                try:
                    if name is not None and name == self._gen:
                        return self._replay(self.root / name) > 0
                    if self._follow_compaction(name):
                        return True
                    fresh = type(self)(self.encoder, live=self.live,
                                       lock_timeout=self.lock_timeout)
                    fresh._load(self.root)
                    self._adopt(fresh)
                    return True
                except (CatalogError, FileNotFoundError):
                    if current_generation_name(self.root) == name or attempt == OPEN_RETRIES - 1:
                        raise
        return False

    def _follow_compaction(self, name: str) -> bool:
        """When generation ``name`` is a compaction of ours (its manifest says which deltas it
        folded) and we have applied, or can still read, every one of them, our state already
        equals its base: switch to it without reloading (a million items reload in seconds,
        and every writer would do it under the lock)."""
        folded = peek_manifest(self.root, name).get("folded")
        if (not isinstance(folded, dict) or folded.get("generation") != self._gen
                or not isinstance(folded.get("deltas"), int)
                or folded["deltas"] < self._applied):
            return False
        # The previous generation is kept one compaction longer: read what we have not seen.
        self._replay(self.root / str(self._gen), upto=folded["deltas"])
        if self._applied < folded["deltas"]:
            return False  # collected meanwhile: the caller reloads (state stays consistent)
        self._gen, self._applied, self._delta_rows = name, 0, 0
        self._replay(self.root / name)
        self._version += 1
        return True

    def _adopt(self, other: "Catalog") -> None:
        for name in ("index", "table", "_ids", "_paths", "_row_of", "_gen", "_applied",
                     "_delta_rows", "id_column", "id_normalise", "_display"):
            setattr(self, name, getattr(other, name))
        self._version += 1

    def _resolve(self, item_id: object) -> str | None:
        """The stored id ``item_id`` names: itself, or (for a catalogue indexed with
        ``id_normalise``) the one equal to it ignoring case, spaces and leading zeros."""
        if not isinstance(item_id, str):
            return None
        if item_id in self._row_of or not self.id_normalise:
            return item_id if item_id in self._row_of else None
        with self._lock:
            if self._normal[0] != self._version:
                self._normal = (self._version, {normalise_id(i): i for i in self._row_of})
            return self._normal[1].get(normalise_id(item_id))

    def _maybe_refresh(self) -> None:
        if self.live and self.root is not None:
            self.refresh()

    # -- changes -----------------------------------------------------------------------------
    def _apply(self, d: Delta) -> None:
        """The one way state changes, for live changes and replayed deltas alike."""
        gone = [self._row_of.pop(i) for i in d.remove if i in self._row_of]
        self.index.remove(np.array(gone, np.int64))
        if d.add_ids:
            rows = []
            replaced = []
            for id_, row in zip(d.add_ids, d.add_rows):
                old = self._row_of.get(id_)
                if old is not None:
                    replaced.append(old)
                    if not row:  # a new photo for an item keeps its metadata
                        row = self.table.row(old)
                rows.append(row)
            self.index.remove(np.array(replaced, np.int64))
            new_rows = self.index.add(d.vectors)
            self.table.append(rows)
            self._ids += d.add_ids
            self._paths += d.add_paths
            for id_, r in zip(d.add_ids, new_rows):
                self._row_of[id_] = int(r)
        if d.update_ids:
            pairs = [(self._row_of[i], row) for i, row in zip(d.update_ids, d.update_rows)
                     if i in self._row_of]
            self.table.update([r for r, _ in pairs], [row for _, row in pairs])
        self._version += 1

    def _commit(self, make: Callable[[], Delta | None]) -> Delta | None:
        """Make a delta against the newest state and commit it: under the writer lock (after
        catching up with other writers) when stored, else in memory. A failed write changes
        nothing."""
        if self.root is None:
            with self._lock:
                delta = make()
                if delta is not None and delta.size():
                    self._apply(delta)
                return delta
        # Catch up first without the lock (the heavy part after another process compacted),
        # then again under it. The process lock before this object's: searches in this
        # process go on while another process holds the catalogue (and the order never
        # inverts: no deadlock).
        self.refresh()
        with writer_lock(self.root, self.lock_timeout):
            with self._lock:
                self.refresh()
                delta = make()
                if delta is None or not delta.size():
                    return delta
                write_delta(self.root, self.root / self._gen, self._applied + 1, delta,
                            self.index.dim)
                self._apply(delta)
                self._applied += 1
                self._delta_rows += delta.size()
                due = (self._delta_rows > max(COMPACT_MIN_ROWS, COMPACT_RATIO * len(self))
                       or self._applied >= max(COMPACT_MAX_DELTAS, len(self) // 256))
            if due:  # written without this object's lock: searches go on meanwhile
                try:
                    self._write_base(self.root, hold_lock_while_writing=False)
                except CatalogError as exc:
                    # The change is committed; only the housekeeping failed (and changed
                    # nothing). Raising would tell the caller it was not; the next commit
                    # tries again.
                    self.warnings.append(f"automatic compaction failed, will retry: {exc}")
            return delta

    def add_embeddings(self, ids: Sequence[str], vectors: np.ndarray,
                       paths: Sequence[str] | None = None, metadata: Any = None) -> None:
        """Add vectors made elsewhere by the same model (a batch job, another machine), checked
        like ``similar_to_vector`` and L2-normalised. An existing id is replaced (keeping its
        metadata unless a row is given). ``metadata``: rows aligned with ``ids`` or a mapping
        id -> row."""
        ids, v, paths = checked_embeddings(ids, vectors, paths, self.encoder.dim)
        rows = rows_for(ids, metadata)
        self._commit(lambda: Delta(add_ids=ids, add_paths=paths, add_rows=rows, vectors=v))

    def update_metadata(self, ids: Sequence[str], rows: Sequence[Mapping[str, str]]) -> list[str]:
        """Set metadata columns of existing items without re-encoding (given columns change,
        others stay). Returns the ids that are not in the catalogue."""
        ids = [str(i) for i in ids]
        rows = rows_for(ids, rows)
        missing: list[str] = []

        def make() -> Delta:
            found = [self._resolve(i) for i in ids]
            missing[:] = [i for i, f in zip(ids, found) if f is None]
            keep = [(f, r) for f, r in zip(found, rows) if f is not None]
            return Delta(update_ids=[i for i, _ in keep], update_rows=[r for _, r in keep])

        self._commit(make)
        return missing

    def add(self, paths: Iterable[str | os.PathLike], metadata: Any = None,
            id_column: str = "id", progress: bool = False) -> list[Skipped]:
        """Encode and add photos (id = file stem; an existing id's photo is replaced and keeps
        its metadata unless new metadata is given). Two files with one stem are refused by
        name. Returns what was skipped. Commits at once when the catalogue lives on disk."""
        paths = photos_by_stem(paths)
        return self._encode_and_add(paths, [p.stem for p in paths],
                                    read_metadata(metadata, id_column), 32, 2, progress)

    def remove(self, ids: Iterable[str]) -> list[str]:
        """Remove items by id; returns the ids that were not in the catalogue."""
        ids = list(dict.fromkeys(str(i) for i in ids))
        missing: list[str] = []

        def make() -> Delta:
            found = [self._resolve(i) for i in ids]
            missing[:] = [i for i, f in zip(ids, found) if f is None]
            return Delta(remove=list(dict.fromkeys(f for f in found if f is not None)))

        self._commit(make)
        return missing

    def _encode_and_add(self, paths: list[Path], ids: list[str],
                        meta: dict[str, dict[str, str]], batch_size: int, decode_threads: int,
                        progress: bool) -> list[Skipped]:
        """Encode outside every lock (seconds to minutes), commit one delta per ~4k photos."""
        skipped: list[Skipped] = []
        bar = Progress(len(paths), "indexing") if progress and paths else None
        pending_ids: list[str] = []
        pending_paths: list[str] = []
        pending_vecs: list[np.ndarray] = []

        def flush() -> None:
            if pending_ids:
                self.add_embeddings(pending_ids, np.concatenate(pending_vecs), pending_paths,
                                    [meta.get(i, {}) for i in pending_ids])
                pending_ids.clear(), pending_paths.clear(), pending_vecs.clear()

        for positions, emb, bad in self.encoder.embed_stream(paths, batch_size, decode_threads):
            skipped += [Skipped(str(paths[p]), reason) for p, reason in bad]
            pending_ids += [ids[p] for p in positions]
            pending_paths += [str(paths[p]) for p in positions]
            pending_vecs.append(emb)
            if len(pending_ids) >= 4096:
                flush()
            if bar is not None:
                bar.update(len(positions) + len(bad))
        flush()
        if bar is not None:
            bar.close()
        self.skipped += skipped
        return skipped

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the catalogue as a new base at ``path`` (later changes commit there), or
        compact it where it lives."""
        root = Path(path) if path is not None else self.root
        if root is None:
            raise CatalogError("save() needs a path the first time")
        if self.root is not None and root.resolve() == self.root.resolve():
            # Its own store, however spelled (a symlink, ".."): compact, which catches up
            # first; writing this possibly stale state as a base would erase other writers.
            self.compact()
            return root
        with writer_lock(root, self.lock_timeout), self._lock:
            self._write_base(root)
        return root

    def compact(self) -> Path:
        """Fold every committed delta into a new base generation (under the writer lock, after
        catching up), and drop tombstoned rows from memory."""
        if self.root is None:
            raise CatalogError("compact() is for a catalogue stored on disk; save() it first")
        with writer_lock(self.root, self.lock_timeout), self._lock:
            self.refresh()
            self._write_base(self.root)
        return self.root

    def _write_base(self, root: Path, hold_lock_while_writing: bool = True) -> None:
        """The live rows as a complete, checksummed generation; then this state is based on
        it. The caller holds the writer lock of ``root`` (so nothing else changes the store)
        and, unless ``hold_lock_while_writing`` is False, ``self._lock``. Without it the
        snapshot and the switch take the lock and the writing (seconds at a million items)
        does not: searches in this process go on, and ``refresh`` waits for the switch."""
        with self._lock:
            vectors, labels, keep, table, ids, paths, writers, manifest, hnsw = \
                self._base_snapshot(root)
            self._compacting = True
        try:
            with self._lock if hold_lock_while_writing else contextlib.nullcontext():
                gen = write_generation(root, writers, manifest)
            with self._lock:
                self.index = VectorIndex(self.encoder.dim, self.index.exact_below, vectors,
                                         labels, self.index.next_label, hnsw)
                self.table = table
                self._ids, self._paths = ids, paths
                self._row_of = {id_: r for r, id_ in enumerate(ids)}
                self.root, self._gen, self._applied, self._delta_rows = root, gen.name, 0, 0
                self._version += 1
        finally:
            self._compacting = False

    def _base_snapshot(self, root: Path) -> tuple:
        """Copies of the live state and the writers and manifest of a base (under the lock)."""
        vectors, labels = self.index.compacted()
        keep = self.index.alive.copy()
        table = self.table.compacted(keep)
        rows = np.flatnonzero(keep)
        ids = [self._ids[r] for r in rows]
        paths = [self._paths[r] for r in rows]
        meta = {"columns": table.columns, "values": table.values}
        writers = {
            "embeddings.npy": lambda p: np.save(p, vectors, allow_pickle=False),
            "labels.npy": lambda p: np.save(p, labels, allow_pickle=False),
            # ASCII-escaped: file names that are not valid UTF-8 round-trip exactly.
            "ids.json": lambda p: p.write_text(json.dumps(ids), encoding="ascii"),
            "paths.json": lambda p: p.write_text(json.dumps(paths), encoding="ascii"),
            "metadata.json": lambda p: p.write_text(json.dumps(meta), encoding="ascii"),
            "metadata_codes.npy": lambda p: np.save(p, table.codes, allow_pickle=False),
        }
        manifest = {"format_version": CATALOG_FORMAT, "count": len(ids),
                    "dim": self.encoder.dim, "model_sha256": self.encoder.model_sha256,
                    "model_name": self.encoder.info.name,
                    "model_version": self.encoder.info.version,
                    "model_quantization": self.encoder.info.quantization,
                    "model_path": str(Path(self.encoder.path).absolute()),
                    "model_file_sha256": file_sha256_or_none(self.encoder.path),
                    "next_label": self.index.next_label,
                    "preprocess": self.encoder.spec.to_dict(),
                    "exact_below": self.index.exact_below, "engine": self.engine,
                    "id_column": self.id_column, "id_normalise": self.id_normalise,
                    "display": self._display,
                    "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if self.root is not None and self._gen and root.resolve() == self.root.resolve():
            manifest["folded"] = {"generation": self._gen, "deltas": self._applied}
        hnsw = self.index.hnsw
        if hnsw is not None:
            writers["index.hnsw"] = hnsw.save
            manifest["hnsw_capacity"] = hnsw.capacity
            manifest["hnsw_deleted"] = hnsw.deleted
        return vectors, labels, keep, table, ids, paths, writers, manifest, hnsw

    # -- display -----------------------------------------------------------------------------
    def columns(self) -> dict[str, list[str]]:
        """Metadata columns and their values among live items, for filters in a UI."""
        self._maybe_refresh()
        with self._lock:
            return self.table.distinct(self.index.alive)

    def set_display(self, filters: Sequence[str] | None = None,
                    caption: Sequence[str] | None = None,
                    known: Sequence[str] | None = None) -> None:
        """Choose the filter and caption columns (``None`` keeps the current choice or the
        default); unknown columns and more than MAX_FILTERS filters are refused by name.
        Stored with the next base (``save``/``compact``)."""
        known = list(self.table.columns) if known is None else list(known)
        self._display.update(checked_display(filters, caption, known))

    def display(self) -> dict[str, list[str]]:
        """{'filters': [...], 'caption': [...]}: the stored choice, else the defaults."""
        with self._lock:
            if getattr(self, "_default_display", (None,))[0] != self._version:
                stats = self.table.column_stats(self.index.alive)
                self._default_display = (self._version, choose_display(stats, self.id_column))
            filters, caption = self._default_display[1]
            return {"filters": list(self._display.get("filters", filters)),
                    "caption": list(self._display.get("caption", caption))}

    def caption(self, hit: "Hit", columns: Sequence[str] | None = None) -> str:
        """The caption columns' values of a hit, joined (the id when it has none)."""
        cols = self.display()["caption"] if columns is None else columns
        text = " · ".join(hit.metadata.get(c, "") for c in cols if hit.metadata.get(c))
        return text or hit.id

    def info(self) -> dict:
        with self._lock:
            return {"count": len(self), "dim": self.encoder.dim, "engine": self.engine,
                    "model": self.encoder.info.summary(), "root": str(self.root or ""),
                    "columns": list(self.table.distinct(self.index.alive)),
                    "deltas": self._applied, **self.display()}

    # -- queries -----------------------------------------------------------------------------
    def matching(self, where: Where, limit: int | None = None) -> list[str]:
        """Ids of live items passing a filter, in insertion order (a UI's catalogue browser)."""
        self._maybe_refresh()
        with self._lock:
            mask = self.table.mask(parse_where(where), self.index.alive)
            allowed = self.index.alive if mask is None else self.index.alive & mask
            rows = np.flatnonzero(allowed)[:limit]
            return [self._ids[r] for r in rows]

    def _search(self, query: np.ndarray, k: int, where: Where | None,
                exclude: set[str]) -> list[Hit]:
        """Top k under an optional filter; excluded ids are over-fetched and dropped."""
        if k <= 0:
            return []
        clauses = parse_where(where)
        with self._lock:
            fetch = k + len(exclude)
            subset = self._filtered(clauses) if clauses else None
            if subset is None:
                rows, scores = self.index.search(query, fetch)
            elif subset[1] is not None:  # an exact filter: its rows, gathered once
                found, scores = exact_top_k(subset[1][1], query, fetch)
                rows = subset[1][0][found]
            else:
                rows, scores = self.index.search(query, fetch, subset[0])
            hits = [Hit(self._ids[r], float(s), self._paths[r], self.table.row(r))
                    for r, s in zip(rows, scores) if self._ids[r] not in exclude]
            return hits[:k]

    def _filtered(self, clauses: list) -> tuple[np.ndarray, tuple | None]:
        """(mask, (rows, their vectors) or None) of a filter, cached per filter until the
        catalogue changes: a kiosk asks for the same few filters again and again, and at a
        million items gathering a 2.5% filter's rows costs more than searching them."""
        key = tuple(clauses)
        cached = self._filter_cache.get(key)
        if cached is not None and cached[0] == self._version:
            self._filter_cache.move_to_end(key)
            return cached[1], cached[2]
        mask = self.table.mask(clauses, self.index.alive)
        subset = self.index.exact_subset(mask)
        if self._filter_cache and next(iter(self._filter_cache.values()))[0] != self._version:
            self._filter_cache.clear()  # all stale together
        self._filter_cache[key] = (self._version, mask, subset)
        budget = FILTER_CACHE_BYTES
        for old_key in reversed(list(self._filter_cache)):
            entry = self._filter_cache[old_key]
            budget -= entry[1].nbytes + (entry[2][1].nbytes if entry[2] is not None else 0)
            if budget < 0 or len(self._filter_cache) > FILTER_CACHE_ENTRIES:
                del self._filter_cache[old_key]
        return mask, subset

    def _vector(self, item: ImageInput | str) -> tuple[np.ndarray, str | None]:
        """A catalogue id's stored embedding, else the photo's. Looked up under the lock, so
        an id removed meanwhile is "not in the catalogue", never a KeyError or a file search."""
        if isinstance(item, str):
            with self._lock:
                found = self._resolve(item)
                if found is not None:
                    return self.index.vectors[self._row_of[found]].copy(), found
            if not looks_like_path(item):
                raise NotInCatalogue(item)
        return self.encoder.embed([item])[0], None

    def similar(self, image_or_id: ImageInput | str, k: int = 10,
                where: Where | None = None) -> list[Hit]:
        """The k catalogue items most like a photo (path, bytes, array) or a catalogue id (which
        is itself left out). ``where`` filters on metadata (``fai_infer.filters``: equality,
        ``!=``, ranges) and still gives k hits if k items match."""
        self._maybe_refresh()
        vector, own = self._vector(image_or_id)
        return self._search(vector, k, where, {own} if own else set())

    def similar_to_vector(self, vector: np.ndarray, k: int = 10, where: Where | None = None,
                          exclude: Iterable[str] = ()) -> list[Hit]:
        """The k items nearest an embedding made elsewhere by the same model (e.g. cached by a
        web back end); it is L2-normalised here, so any positive scale works."""
        query = query_vector(vector, self.encoder.dim)
        self._maybe_refresh()
        return self._search(query, k, where, set(exclude))

    def similar_to_basket(self, items: Sequence[ImageInput | str], k: int = 10,
                          where: Where | None = None, mode: str = "cover",
                          diversity: float = 0.3) -> list[Hit]:
        """Items that go with the whole basket; basket items themselves are never returned, and
        each hit's ``source`` names the basket item it was found for.

        ``mode="cover"`` (default): every basket item gets its own neighbours, merged
        round-robin, so a shirt + shoes + watch basket brings shirts, shoes and watches rather
        than whatever lies nearest their average. Within an item's turn the next pick is
        maximal-marginal-relevance: ``(1 - diversity) * similarity to that basket item -
        diversity * similarity to the closest hit already picked``, so near-duplicates of one
        another collapse (``diversity=0``: plain nearest-first). ``score`` is the similarity to
        ``source``, so scores interleave rather than fall monotonically.

        ``mode="centroid"``: ranked by mean cosine similarity to every basket item (the
        normalised mean embedding), the earlier behaviour."""
        self._maybe_refresh()
        basket, names, exclude, photos = prepare_basket(items, mode, diversity, self._vector)

        def usable(hits: list[Hit]) -> list[Hit]:
            # A basket photo that is not a catalogue id still must not come back as its twin.
            if not photos:
                return hits
            with self._lock:
                return [h for h in hits if h.id in self._row_of and not any(
                    float(self.index.vectors[self._row_of[h.id]] @ v) > 0.9999 for v in photos)]

        if mode == "centroid":
            query = basket.mean(axis=0)
            query /= max(float(np.linalg.norm(query)), 1e-12)
            hits = usable(self._search(query, k + len(basket), where, exclude))[:k]
            with self._lock:
                for h in hits:
                    row = self._row_of.get(h.id)
                    if row is not None:
                        h.source = names[int(np.argmax(basket @ self.index.vectors[row]))]
            return hits
        return self._cover(basket, names, k, where, exclude, usable, float(diversity))

    def _cover(self, basket: np.ndarray, names: list[str], k: int, where: Where | None,
               exclude: set[str], usable, diversity: float) -> list[Hit]:
        """Round-robin over the basket items' own neighbour lists with an MMR pick per turn."""
        pool = min(len(self), 2 * k + 10 + len(exclude))
        lists: list[list[Hit]] = []
        for vector in basket:
            lists.append(usable(self._search(vector, pool, where, exclude)))
        with self._lock:
            vec = {h.id: self.index.vectors[self._row_of[h.id]] for hits in lists for h in hits
                   if h.id in self._row_of}
        return round_robin(lists, vec, names, k, diversity, basket.shape[1])
