"""A shop's catalogue: embeddings, ids, metadata and a search index, saved crash-safely.

``Catalog.build(folder)`` indexes photos, ``.similar(image_or_id)`` and
``.similar_to_basket(items)`` recommend, ``.add``/``.remove`` update it live (and persist when
the catalogue lives on disk). Everything is guarded by one lock, so kiosk threads can query
while another thread adds or removes items.
"""

from __future__ import annotations

import csv
import difflib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from fai_infer.encoder import Encoder
from fai_infer.preprocess import ImageInput, describe
from fai_infer.progress import Progress
from fai_infer.search import EXACT_BELOW, HnswSearch, exact_top_k
from fai_infer.store_check import check_arrays, check_items, check_manifest
from fai_infer.storage import CatalogError, read_generation, write_generation

CATALOG_FORMAT = 1
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
Where = Mapping[str, "str | Sequence[str]"]
MetadataSource = "str | os.PathLike | Mapping[str, Mapping[str, Any]] | None"


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


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Every file under ``folder`` with an image suffix (a directory named x.jpg included, so
    that it is reported rather than silently ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CatalogError(f"{folder}: not a directory of photos")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def read_metadata(source: Any, id_column: str) -> dict[str, dict[str, str]]:
    """A CSV path or a mapping id -> row -> {id: row} with string values."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return {str(k): {str(c): str(v) for c, v in row.items()} for k, row in source.items()}
    path = Path(source)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or id_column not in reader.fieldnames:
                raise CatalogError(f"{path}: no {id_column!r} column (columns: "
                                   f"{', '.join(reader.fieldnames or [])}); use --id-column")
            return {row[id_column]: {k: (v or "") for k, v in row.items() if k is not None}
                    for row in reader}
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CatalogError(f"{path}: cannot read metadata CSV ({exc})") from None


def _ids_for(paths: list[Path], root: Path) -> list[str]:
    """File stems as ids; where two files share a stem, their relative paths instead (with the
    suffix where even those collide: photo.jpg and photo.png in one folder)."""
    def clashing(names: list[str]) -> set[str]:
        return {n for n in names if names.count(n) > 1} if len(set(names)) < len(names) else set()

    ids = [p.stem for p in paths]
    dup = clashing(ids)
    ids = [str(p.relative_to(root).with_suffix("")) if i in dup else i
           for p, i in zip(paths, ids)]
    dup = clashing(ids)
    return [str(p.relative_to(root)) if i in dup else i for p, i in zip(paths, ids)]


def _looks_like_path(text: str) -> bool:
    """Whether a string that is not a catalogue id should be read as a photo file."""
    return Path(text).suffix.lower() in IMAGE_SUFFIXES or os.path.lexists(text)


MAX_FILTERS = 6
MAX_FILTER_VALUES = 150
NAME_COLUMNS = ("name", "prod_name", "product_name", "productdisplayname", "title",
                "display_name", "productname")
_CODE_SUFFIXES = ("_id", "_no", "_code", "_nr", "_num", "_sku", "id", "sku", "ean", "upc")
_NOT_DISPLAYED = {"split", "path", "file", "filename", "image", "url"}


def _is_code_column(name: str, values: list[str]) -> bool:
    """Ids and codes a shopper never filters by: *_id, *_no, *_code, numbers, unique values."""
    low = name.casefold()
    if low in _NOT_DISPLAYED or low.endswith(_CODE_SUFFIXES):
        return True
    filled = [v for v in values if v]
    if filled and all(v.replace(".", "", 1).isdigit() for v in filled):
        return True
    return len(filled) > 1 and len(set(filled)) == len(filled)


def default_display(rows: list[dict[str, str]], id_column: str = "id"
                    ) -> tuple[list[str], list[str]]:
    """(filter columns, caption columns) a shopper would want, from the metadata alone:
    filters are text columns with 2..150 values that are not ids or codes (at most 6, in
    the CSV's order); the caption is the first name-like column."""
    order: list[str] = []
    for r in rows:
        order += [c for c in r if c not in order]
    values = {c: [str(r.get(c, "") or "") for r in rows] for c in order}
    filters = [c for c in order if c != id_column and c.casefold() not in NAME_COLUMNS
               and not _is_code_column(c, values[c])
               and 1 < len(set(values[c]) - {""}) <= MAX_FILTER_VALUES][:MAX_FILTERS]
    named = [c for c in order if c.casefold() in NAME_COLUMNS]
    return filters, named[:1]


class Catalog:
    def __init__(self, encoder: Encoder, ids: list[str], paths: list[str],
                 rows: list[dict[str, str]], embeddings: np.ndarray,
                 labels: np.ndarray | None = None, exact_below: int = EXACT_BELOW,
                 search_index: HnswSearch | None = None):
        """``search_index``: an HNSW graph already built over exactly these ``labels`` and
        ``embeddings`` (skips rebuilding it, e.g. when a benchmark shares one)."""
        self.encoder = encoder
        self.ids = list(ids)
        self.paths = list(paths)
        self.rows = list(rows)
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(
            len(self.ids), encoder.dim)
        self.labels = (np.arange(len(self.ids), dtype=np.int64) if labels is None
                       else np.asarray(labels, dtype=np.int64))
        self.next_label = int(self.labels.max()) + 1 if len(self.labels) else 0
        self.exact_below = exact_below
        self.root: Path | None = None
        self.skipped: list[Skipped] = []
        self.id_column = "id"
        self._display: dict[str, list[str]] = {}
        self._lock = threading.RLock()
        self._hnsw: HnswSearch | None = None
        if search_index is not None and len(self.ids) >= exact_below:
            if search_index.index.get_current_count() != len(self.ids):
                raise ValueError("search_index does not hold exactly these embeddings")
            self._rebuild_lookups()
            self._hnsw = search_index
        else:
            self._reindex()

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def build(cls, folder: str | os.PathLike, metadata: Any = None, id_column: str = "id",
              encoder: Encoder | None = None, batch_size: int = 32, decode_threads: int = 2,
              progress: bool = False, filters: Sequence[str] | None = None,
              caption: Sequence[str] | None = None) -> "Catalog":
        """Index every photo under ``folder``. Files that cannot be used are skipped and listed
        in ``.skipped`` with their reason; the rest of the catalogue is indexed. ``filters``
        and ``caption`` name the metadata columns a page filters on and shows under each
        photo (stored with the catalogue; defaults chosen from the metadata otherwise)."""
        encoder = encoder or Encoder()
        folder = Path(folder)
        paths = list_images(folder)
        ids = _ids_for(paths, folder)
        meta = read_metadata(metadata, id_column)
        if meta and ids and not set(ids) & set(meta):
            raise CatalogError(
                f"{metadata if not isinstance(metadata, Mapping) else 'metadata'}: none of its "
                f"{len(meta)} {id_column!r} values (e.g. {next(iter(meta))!r}) is the name of a "
                f"photo under {folder} (e.g. {ids[0]!r}); pick the column that holds the file "
                f"names with --id-column")
        cat = cls(encoder, [], [], [], np.zeros((0, encoder.dim), np.float32))
        cat.id_column = id_column
        if filters is not None or caption is not None:
            cat.set_display(filters, caption, rows=list(meta.values()))
        cat._add_paths(paths, ids, meta, batch_size, decode_threads, progress)
        return cat

    @classmethod
    def open(cls, path: str | os.PathLike, encoder: Encoder | None = None) -> "Catalog":
        gen, manifest = read_generation(Path(path))
        manifest = check_manifest(Path(path), gen, manifest)
        if manifest.get("format_version") != CATALOG_FORMAT:
            raise CatalogError(f"{path}: catalogue format {manifest.get('format_version')} is "
                               f"not supported by this runtime ({CATALOG_FORMAT})")
        encoder = encoder or Encoder()
        if manifest["model_sha256"] != encoder.model_sha256:
            raise CatalogError(
                f"{path}: indexed with model {manifest.get('model_name')!r} "
                f"(weights {manifest['model_sha256'][:12]}), but the loaded model is "
                f"{encoder.info.name!r} (weights {encoder.model_sha256[:12]}); re-index with "
                f"'fai index PHOTOS_DIR --out {path}' or load the model it was built with")
        stored_spec, spec = manifest.get("preprocess"), json.loads(json.dumps(
            encoder.spec.to_dict()))  # as JSON stores it: tuples become lists
        if stored_spec is not None and stored_spec != spec:
            if not isinstance(stored_spec, dict):
                raise CatalogError(f"{path}: manifest's preprocess entry is not an object")
            changed = sorted(k for k in set(stored_spec) | set(spec)
                             if stored_spec.get(k) != spec.get(k))
            raise CatalogError(
                f"{path}: indexed with another preprocessing ({', '.join(changed)} differ) than "
                f"model {encoder.info.name!r} uses; re-index with 'fai index PHOTOS_DIR --out "
                f"{path}' or load the model it was built with")
        if manifest["dim"] != encoder.dim:
            raise CatalogError(f"{path}: catalogue is {manifest['dim']}-d, the model makes "
                               f"{encoder.dim}-d embeddings")
        try:
            emb = np.load(gen / "embeddings.npy", allow_pickle=False)
            labels = np.load(gen / "labels.npy", allow_pickle=False)
            items = json.loads((gen / "items.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CatalogError(f"{path}: catalogue data cannot be read ({exc})") from None
        check_items(Path(path), items, manifest["count"])
        check_arrays(Path(path), emb, labels, manifest["count"], encoder.dim,
                     manifest["next_label"])
        cat = cls.__new__(cls)
        cat.encoder, cat.exact_below = encoder, manifest.get("exact_below", EXACT_BELOW)
        cat.ids = [it["id"] for it in items]
        cat.paths = [it["path"] for it in items]
        cat.rows = [it["metadata"] for it in items]
        cat.embeddings, cat.labels = emb.astype(np.float32), labels.astype(np.int64)
        cat.next_label = manifest["next_label"]
        cat.root, cat.skipped = Path(path), []
        cat.id_column = manifest.get("id_column") if isinstance(
            manifest.get("id_column"), str) else "id"
        display = manifest.get("display")
        cat._display = {k: [str(c) for c in display[k]] for k in ("filters", "caption")
                        if isinstance(display, dict) and isinstance(display.get(k), list)}
        cat._lock = threading.RLock()
        cat._hnsw = None
        if "index.hnsw" in manifest["files"]:
            try:
                cat._hnsw = HnswSearch.load(gen / "index.hnsw", encoder.dim,
                                            manifest["hnsw_capacity"], manifest["hnsw_deleted"])
            except RuntimeError as exc:  # hnswlib's own complaint about the file
                raise CatalogError(f"{path}: index.hnsw cannot be loaded ({exc})") from None
            live = cat._hnsw.index.get_current_count() - cat._hnsw.deleted
            if live != len(cat.ids):
                raise CatalogError(f"{path}: index.hnsw holds {live} items, the catalogue "
                                   f"{len(cat.ids)}")
            cat._rebuild_lookups()
        else:
            cat._reindex()
        return cat

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the catalogue atomically; later add/remove calls persist to the same place."""
        with self._lock:
            root = Path(path) if path is not None else self.root
            if root is None:
                raise CatalogError("save() needs a path the first time")
            items = [{"id": i, "path": p, "metadata": r}
                     for i, p, r in zip(self.ids, self.paths, self.rows)]
            writers = {
                "embeddings.npy": lambda p: np.save(p, self.embeddings, allow_pickle=False),
                "labels.npy": lambda p: np.save(p, self.labels, allow_pickle=False),
                # ASCII-escaped: file names that are not valid UTF-8 round-trip exactly.
                "items.json": lambda p: p.write_text(json.dumps(items), encoding="ascii"),
            }
            manifest = {"format_version": CATALOG_FORMAT, "count": len(self.ids),
                        "dim": self.encoder.dim, "model_sha256": self.encoder.model_sha256,
                        "model_name": self.encoder.info.name, "next_label": self.next_label,
                        "preprocess": self.encoder.spec.to_dict(),
                        "exact_below": self.exact_below, "engine": self.engine,
                        "id_column": self.id_column, "display": self._display,
                        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            if self._hnsw is not None:
                writers["index.hnsw"] = self._hnsw.save
                manifest["hnsw_capacity"] = self._hnsw.index.get_max_elements()
                manifest["hnsw_deleted"] = self._hnsw.deleted
            write_generation(root, writers, manifest)
            self.root = root
            return root

    # -- live updates ------------------------------------------------------------------------
    def add(self, paths: Iterable[str | os.PathLike], metadata: Any = None,
            id_column: str = "id", progress: bool = False) -> list[Skipped]:
        """Encode and add photos (id = file stem; an existing id's photo is replaced and keeps
        its metadata unless new metadata is given). Two files with one stem are refused by
        name. Returns what was skipped. Persists at once when the catalogue lives on disk."""
        paths = [Path(p) for p in paths]
        by_stem: dict[str, list[str]] = {}
        for p in paths:
            by_stem.setdefault(p.stem, []).append(str(p))
        clashes = [names for names in by_stem.values() if len(names) > 1]
        if clashes:
            raise ValueError("two files would get the same id: " + "; ".join(
                " and ".join(names) for names in clashes) + " (rename one)")
        skipped = self._add_paths(paths, [p.stem for p in paths],
                                  read_metadata(metadata, id_column), 32, 2, progress)
        if self.root is not None:
            self.save()
        return skipped

    def remove(self, ids: Iterable[str]) -> list[str]:
        """Remove items by id; returns the ids that were not in the catalogue."""
        with self._lock:
            ids = [str(i) for i in ids]
            missing = [i for i in ids if i not in self._position]
            rows = sorted({self._position[i] for i in ids if i in self._position})
            if rows:
                self._delete_rows(rows)
        if rows and self.root is not None:
            self.save()
        return missing

    def _add_paths(self, paths: list[Path], ids: list[str], meta: dict[str, dict[str, str]],
                   batch_size: int, decode_threads: int, progress: bool) -> list[Skipped]:
        skipped: list[Skipped] = []
        bar = None
        if progress and paths:
            bar = Progress(len(paths), "indexing")
        for positions, emb, bad in self.encoder.embed_stream(paths, batch_size, decode_threads):
            skipped += [Skipped(str(paths[p]), reason) for p, reason in bad]
            with self._lock:
                replace = sorted({self._position[ids[p]] for p in positions
                                  if ids[p] in self._position})
                kept = {self.ids[r]: self.rows[r] for r in replace}  # metadata survives
                if replace:
                    self._delete_rows(replace)
                self._append([ids[p] for p in positions], [str(paths[p]) for p in positions],
                             [meta.get(ids[p], kept.get(ids[p], {})) for p in positions], emb)
            if bar is not None:
                bar.update(len(positions) + len(bad))
        if bar is not None:
            bar.close()
        self.skipped += skipped
        return skipped

    def _append(self, ids: list[str], paths: list[str], rows: list[dict[str, str]],
                emb: np.ndarray) -> None:
        labels = np.arange(self.next_label, self.next_label + len(ids), dtype=np.int64)
        self.next_label += len(ids)
        start = len(self.ids)
        self.ids += ids
        self.paths += paths
        self.rows += rows
        self.embeddings = np.concatenate([self.embeddings, emb.astype(np.float32)])
        self.labels = np.concatenate([self.labels, labels])
        for offset, (id_, label) in enumerate(zip(ids, labels)):
            self._position[id_] = start + offset
            self._row_of[int(label)] = start + offset
        self._columns = {}
        if self._hnsw is not None:
            self._hnsw.add(labels, emb)
        elif len(self.ids) >= self.exact_below:
            self._reindex()

    def _delete_rows(self, rows: list[int]) -> None:
        keep = np.ones(len(self.ids), dtype=bool)
        keep[rows] = False
        if self._hnsw is not None:
            self._hnsw.remove(self.labels[~keep])
        self.ids = [x for x, k in zip(self.ids, keep) if k]
        self.paths = [x for x, k in zip(self.paths, keep) if k]
        self.rows = [x for x, k in zip(self.rows, keep) if k]
        self.embeddings = self.embeddings[keep]
        self.labels = self.labels[keep]
        self._rebuild_lookups()

    def _rebuild_lookups(self) -> None:
        """id -> row, HNSW label -> row, and the per-column filter cache."""
        self._position = {id_: i for i, id_ in enumerate(self.ids)}
        self._row_of = {int(lb): i for i, lb in enumerate(self.labels)}
        self._columns = {}

    def _reindex(self) -> None:
        """Rebuild lookups, and the HNSW graph from stored embeddings (no re-encoding)."""
        self._rebuild_lookups()
        self._hnsw = None
        if len(self.ids) >= self.exact_below:
            self._hnsw = HnswSearch(self.encoder.dim, int(len(self.ids) * 1.25))
            self._hnsw.add(self.labels, self.embeddings)

    # -- queries -----------------------------------------------------------------------------
    @property
    def engine(self) -> str:
        return "hnsw" if self._hnsw is not None else "exact"

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._position

    def get(self, item_id: str) -> Hit:
        with self._lock:
            i = self._position.get(item_id)
            if i is None:
                raise NotInCatalogue(item_id)
            return Hit(item_id, 1.0, self.paths[i], dict(self.rows[i]))

    def columns(self) -> dict[str, list[str]]:
        """Metadata columns and their values, for filters in a UI."""
        with self._lock:
            names = sorted({c for r in self.rows for c in r})
            return {c: sorted({r.get(c, "") for r in self.rows} - {""}) for c in names}

    def set_display(self, filters: Sequence[str] | None = None,
                    caption: Sequence[str] | None = None,
                    rows: list[dict[str, str]] | None = None) -> None:
        """Choose the filter and caption columns (``None`` keeps the current choice or the
        default); unknown columns and more than MAX_FILTERS filters are refused by name.
        Persisted with the next save."""
        rows = self.rows if rows is None else rows
        known: list[str] = []
        for r in rows:
            known += [c for c in r if c not in known]
        for kind, cols in (("filters", filters), ("caption", caption)):
            if cols is None:
                continue
            cols = [c.strip() for c in cols if c.strip()]
            unknown = [c for c in cols if c not in known]
            if unknown:
                raise ValueError(f"--{kind} {','.join(unknown)}: no such metadata column "
                                 f"(columns: {', '.join(known) or 'none'})")
            if kind == "filters" and len(cols) > MAX_FILTERS:
                raise ValueError(f"--filters: at most {MAX_FILTERS} columns, got {len(cols)}")
            self._display[kind] = cols

    def display(self) -> dict[str, list[str]]:
        """{'filters': [...], 'caption': [...]}: the stored choice, else the defaults."""
        with self._lock:
            key = (len(self.ids), self.next_label)
            if getattr(self, "_default_display", (None,))[0] != key:
                self._default_display = (key, default_display(self.rows, self.id_column))
            filters, caption = self._default_display[1]
            return {"filters": list(self._display.get("filters", filters)),
                    "caption": list(self._display.get("caption", caption))}

    def caption(self, hit: "Hit", columns: Sequence[str] | None = None) -> str:
        """The caption columns' values of a hit, joined (the id when it has none)."""
        cols = self.display()["caption"] if columns is None else columns
        text = " · ".join(hit.metadata.get(c, "") for c in cols if hit.metadata.get(c))
        return text or hit.id

    def _mask(self, where: Where | None) -> np.ndarray | None:
        if not where:
            return None
        mask = np.ones(len(self.ids), dtype=bool)
        for col, wanted in where.items():
            if col not in self._columns and self.rows and not any(col in r for r in self.rows):
                known = sorted({c for r in self.rows for c in r})
                close = difflib.get_close_matches(col, known, n=3, cutoff=0.5) or [
                    c for c in known if c.casefold() == col.casefold()]
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ValueError(f"where {col!r}: no such metadata column (columns: "
                                 f"{', '.join(known) or 'none'}){hint}")
            if col not in self._columns:
                values = np.array([str(r.get(col, "")).casefold() for r in self.rows],
                                  dtype=object)
                self._columns[col] = values
            wanted = [wanted] if isinstance(wanted, str) else list(wanted)
            mask &= np.isin(self._columns[col], [str(w).casefold() for w in wanted])
        return mask

    def _search(self, query: np.ndarray, k: int, where: Where | None,
                exclude: set[str]) -> list[Hit]:
        """Top k under an optional filter; excluded ids are over-fetched and dropped."""
        with self._lock:
            mask = self._mask(where)
            candidates = len(self.ids) if mask is None else int(mask.sum())
            fetch = min(k + len(exclude), candidates)
            if fetch <= 0 or k <= 0:
                return []
            rows = np.zeros(0, np.int64)
            scores = np.zeros(0, np.float32)
            if self._hnsw is not None and candidates > self.exact_below:
                allowed = None
                if mask is not None:
                    ok = np.zeros(self.next_label, dtype=bool)
                    ok[self.labels[mask]] = True
                    allowed = lambda label: bool(ok[label])  # noqa: E731
                labels, scores = self._hnsw.query(query, fetch, allowed)
                rows = np.array([self._row_of[int(lb)] for lb in labels], dtype=np.int64)
            if len(rows) < fetch:  # small catalogue, selective filter, or HNSW came up short
                rows, scores = exact_top_k(self.embeddings, query, fetch,
                                           None if mask is None else np.flatnonzero(mask))
            hits = [Hit(self.ids[r], float(s), self.paths[r], dict(self.rows[r]))
                    for r, s in zip(rows, scores) if self.ids[r] not in exclude]
            return hits[:k]

    def _vector(self, item: ImageInput | str) -> tuple[np.ndarray, str | None]:
        """A catalogue id's stored embedding, else the photo's. Looked up under the lock, so
        an id removed meanwhile is "not in the catalogue", never a KeyError or a file search."""
        if isinstance(item, str):
            with self._lock:
                row = self._position.get(item)
                if row is not None:
                    return self.embeddings[row].copy(), item
            if not _looks_like_path(item):
                raise NotInCatalogue(item)
        return self.encoder.embed([item])[0], None

    def similar(self, image_or_id: ImageInput | str, k: int = 10,
                where: Where | None = None) -> list[Hit]:
        """The k catalogue items most like a photo (path, bytes, array) or a catalogue id (which
        is itself left out). Filters like {'gender': 'Women'} still give k hits if k match."""
        vector, own = self._vector(image_or_id)
        return self._search(vector, k, where, {own} if own else set())

    def similar_to_vector(self, vector: np.ndarray, k: int = 10, where: Where | None = None,
                          exclude: Iterable[str] = ()) -> list[Hit]:
        """The k items nearest an embedding made elsewhere by the same model (e.g. cached by a
        web back end); it is L2-normalised here, so any positive scale works."""
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != self.encoder.dim:
            raise ValueError(f"vector has {v.shape[0]} values; this catalogue's model "
                             f"makes {self.encoder.dim}")
        norm = float(np.linalg.norm(v))
        if not np.isfinite(norm) or norm == 0.0:
            raise ValueError("vector is zero or not finite")
        return self._search(v / norm, k, where, set(exclude))

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
        if len(items) == 0:
            raise ValueError("the basket is empty")
        if mode not in ("cover", "centroid"):
            raise ValueError(f"mode must be 'cover' or 'centroid', not {mode!r}")
        if not 0.0 <= float(diversity) <= 1.0:
            raise ValueError(f"diversity must be between 0 and 1, not {diversity}")
        vectors, own = zip(*(self._vector(it) for it in items))
        names = [o if o else describe(it) for it, o in zip(items, own)]
        exclude = {o for o in own if o}
        photos = [v for v, o in zip(vectors, own) if not o]

        def usable(hits: list[Hit]) -> list[Hit]:
            # A basket photo that is not a catalogue id still must not come back as its twin.
            if not photos:
                return hits
            with self._lock:
                return [h for h in hits if h.id in self._position and not any(
                    float(self.embeddings[self._position[h.id]] @ v) > 0.9999 for v in photos)]

        basket = np.stack(vectors)
        if mode == "centroid":
            query = basket.mean(axis=0)
            query /= max(float(np.linalg.norm(query)), 1e-12)
            hits = usable(self._search(query, k + len(vectors), where, exclude))[:k]
            with self._lock:
                for h in hits:
                    row = self._position.get(h.id)
                    if row is not None:
                        h.source = names[int(np.argmax(basket @ self.embeddings[row]))]
            return hits
        return self._cover(basket, names, k, where, exclude, usable, float(diversity))

    def _cover(self, basket: np.ndarray, names: list[str], k: int, where: Where | None,
               exclude: set[str], usable, diversity: float) -> list[Hit]:
        """Round-robin over the basket items' own neighbour lists with an MMR pick per turn."""
        pool = min(len(self.ids), 2 * k + 10 + len(exclude))
        lists: list[list[Hit]] = []
        for vector in basket:
            lists.append(usable(self._search(vector, pool, where, exclude)))
        with self._lock:
            vec = {h.id: self.embeddings[self._position[h.id]] for hits in lists for h in hits
                   if h.id in self._position}
        chosen: list[Hit] = []
        taken: set[str] = set()
        picked = np.zeros((0, basket.shape[1]), np.float32)
        while len(chosen) < k:
            progressed = False
            for i, hits in enumerate(lists):
                if len(chosen) >= k:
                    break
                left = [h for h in hits if h.id not in taken and h.id in vec]
                if not left:
                    continue
                rel = np.array([h.score for h in left], np.float32)
                if diversity > 0 and len(picked):
                    red = (np.stack([vec[h.id] for h in left]) @ picked.T).max(axis=1)
                    best = int(np.argmax((1 - diversity) * rel - diversity * red))
                else:
                    best = 0  # nearest first (lists are sorted by similarity)
                h = left[best]
                chosen.append(Hit(h.id, h.score, h.path, h.metadata, source=names[i]))
                taken.add(h.id)
                picked = np.vstack([picked, vec[h.id][None]])
                progressed = True
            if not progressed:
                break
        return chosen

    def info(self) -> dict:
        return {"count": len(self), "dim": self.encoder.dim, "engine": self.engine,
                "model": self.encoder.info.summary(), "root": str(self.root or ""),
                "columns": sorted({c for r in self.rows for c in r}), **self.display()}
