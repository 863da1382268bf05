"""A shop's catalogue on this machine: the facade that joins an encoder, an in-memory state and
its store on disk, and answers the catalogue contract (``fai_infer/catalog/contract.py``).

``Catalog.build(folder)`` indexes photos, ``.similar(image_or_id)`` and
``.similar_to_basket(items)`` recommend (implemented once in ``contract.BaseCatalog``),
``.add``/``.remove``/``.add_embeddings``/``.update_metadata`` change it. What it holds is a
``CatalogState`` (``store/state.py``: ids, paths, rows, vectors, ``apply(delta)``); where that
state stands on disk is a ``Replica`` (``store/replica.py``: open, refresh, commit, compact). Every
change is a small delta committed under a cross-process writer lock (``store/journal.py``);
``refresh()`` picks up what other processes committed, and ``live=True`` does so before every
search. One in-process lock guards the state, so kiosk threads can query while another thread
changes the catalogue.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from fai_infer.catalog.contract import (BaseCatalog, Hit, NotInCatalogue, Skipped,  # noqa: F401 (re-exported)
                                        checked_embeddings, rows_for)
from fai_infer.store.state import CatalogState
from fai_infer.store.delta import Delta
from fai_infer.catalog.display import choose_display, column_order
from fai_infer.catalog.local_scale import scale_after
from fai_infer.model.encoder import Encoder
from fai_infer.index.filter_cache import FilterCache
from fai_infer.index.filters import Where, parse_where
from fai_infer.index.metadata import MetadataTable
from fai_infer.store.replica import Replica
from fai_infer.index.search import EXACT_BELOW, exact_top_k
from fai_infer.model.identity import remembered_path
from fai_infer.catalog.sources import ids_for, join_metadata, join_report, list_images, read_metadata
from fai_infer.store.generations import CatalogError, peek_manifest
from fai_infer.store.journal import writer_lock
from fai_infer.index.vector_index import VectorIndex
from fai_infer.catalog.whiten import rewhitened, whitening_due


def remembered_model(path: str | os.PathLike) -> str | None:
    """The model file a stored catalogue was built with, if it still exists. Read without
    verifying checksums (``open`` does that next, with the model's weights checked too): at a
    million items hashing twice would double the start-up time."""
    try:
        manifest = peek_manifest(Path(path))
    except CatalogError:
        return None
    return remembered_path(manifest)  # only a file whose bytes match what was recorded


class Catalog(BaseCatalog):
    """``Catalog(encoder)`` is an empty in-memory catalogue; ``build`` and ``open`` make one
    from photos or from disk. ``live=True``: refresh from disk before every search."""

    def __init__(self, encoder: Encoder | None = None, exact_below: int = EXACT_BELOW,
                 live: bool = False, lock_timeout: float | None = None):
        self.encoder = encoder or Encoder()
        self.state = CatalogState(self.encoder.dim, exact_below)
        self.replica = Replica(self.encoder)
        self.skipped: list[Skipped] = []
        self.warnings: list[str] = []
        self.live = live
        self.lock_timeout = lock_timeout
        self._lock = threading.RLock()
        self._compacting = False  # this object is writing a base without holding _lock
        self._filters = FilterCache()
        self._defaults: tuple[int, tuple[list[str], list[str]]] = (-1, ([], []))

    # -- what the state and the replica hold -------------------------------------------------
    root = property(lambda self: self.replica.root)
    _gen = property(lambda self: self.replica.gen)
    index: VectorIndex = property(lambda self: self.state.index)  # type: ignore[assignment]
    table: MetadataTable = property(lambda self: self.state.table)  # type: ignore[assignment]
    _ids = property(lambda self: self.state.ids)
    _display = property(lambda self: self.state.display)

    @property
    def id_column(self) -> str:  # type: ignore[override]
        return self.state.id_column

    @id_column.setter
    def id_column(self, value: str) -> None:
        self.state.id_column = value

    @property
    def id_normalise(self) -> bool:
        return self.state.id_normalise

    @id_normalise.setter
    def id_normalise(self, value: bool) -> None:
        self.state.id_normalise = value

    # -- views -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.state)

    def __contains__(self, item_id: object) -> bool:
        self._before_read()
        with self._lock:
            return self.state.resolve(item_id) is not None

    @property
    def exact_below(self) -> int:
        return self.state.index.exact_below

    @property
    def engine(self) -> str:  # type: ignore[override]
        return self.state.index.engine

    @property
    def ids(self) -> list[str]:
        """Live ids in insertion order (a copy)."""
        with self._lock:
            return [self.state.ids[r] for r in self.state.live_rows()]

    @property
    def paths(self) -> list[str]:
        with self._lock:
            return [self.state.paths[r] for r in self.state.live_rows()]

    @property
    def rows(self) -> list[dict[str, str]]:
        with self._lock:
            return self.state.table.rows(self.state.live_rows())

    @property
    def embeddings(self) -> np.ndarray:
        with self._lock:
            return self.state.index.vectors[self.state.index.alive].copy()

    def iter_batches(self, size: int = 10_000
                     ) -> Iterator[tuple[list[str], np.ndarray, list[str], list[dict[str, str]]]]:
        """(ids, the model's own unit vectors, paths, metadata rows) of the live items, ``size``
        at a time, as they were when iteration started (a whitened catalogue's stored vectors
        are turned back, so what this yields can be pushed or searched like any embedding). The lock is held only to take the snapshot:
        a state's rows are append-only (a change tombstones and appends, a compaction makes a
        new state), so the row numbers, the id and path lists and the vectors' view stay
        valid; the metadata codes, which an update changes in place, are copied."""
        self._before_read()
        with self._lock:
            st = self.state
            live = st.live_rows()
            ids, paths, vectors = st.ids, st.paths, st.index.vectors
            whitening = self._whitening()  # the snapshot's: a refit meanwhile changes nothing
            table = MetadataTable(st.table.columns, st.table.values, st.table.codes[live])
        for start in range(0, len(live), size):
            rows = live[start:start + size]
            stored = vectors[rows]
            model = stored if whitening is None else whitening.undo(stored).astype(np.float32)
            yield ([ids[r] for r in rows], model,
                   [paths[r] for r in rows], table.rows(range(start, start + len(rows))))

    def get(self, item_id: str) -> Hit:
        self._before_read()
        with self._lock:
            found = self.state.resolve(item_id)
            if found is None:
                raise NotInCatalogue(item_id)
            return self.state.hit(self.state.row_of[found])

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def build(cls, folder: str | os.PathLike, metadata: Any = None, id_column: str = "id",
              encoder: Encoder | None = None, batch_size: int = 32, decode_threads: int = 2,
              progress: bool = False, filters: Sequence[str] | None = None,
              caption: Sequence[str] | None = None, id_normalise: bool = False,
              name: str | None = None) -> "Catalog":
        """Index every photo under ``folder``. Files that cannot be used are skipped and listed
        in ``.skipped``; a metadata CSV that matches few photos is reported in ``.warnings``
        (none at all is an error). ``filters``/``caption`` name the columns a page filters on
        and shows under each photo (defaults are chosen from the metadata otherwise).
        ``id_normalise``: join CSV ids ignoring case and leading zeros. ``name``: the shop's
        name (a page's title)."""
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
        if name is not None:
            cat.set_shop_name(name)
        cat._encode_and_add(paths, ids, join.rows, batch_size, decode_threads, progress)
        if encoder.info.catalogue_whitening:
            cat.rewhiten()
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
        cat.replica.root = root
        cat.refresh()  # nothing loaded yet: reads the current generation, retrying on a race
        return cat

    # -- keeping up with other processes -----------------------------------------------------
    def refresh(self) -> bool:
        """Pick up what other processes committed since this catalogue was opened or last
        refreshed: only the new deltas, or the whole new base after a compaction. Returns
        whether anything changed."""
        if self.root is None or self._compacting:  # our own compaction: nothing to pick up
            return False
        with self._lock:
            if self._compacting:
                return False
            self.state, changed = self.replica.refresh(self.state)
            return changed

    def _before_read(self) -> None:
        if self.live and self.root is not None:
            self.refresh()

    def _version_now(self) -> int:
        return self.state.version  # moves with every change, refreshes and compactions included

    def _stored_scale(self) -> tuple[np.ndarray | None, bool]:
        st = self.state
        return st.scale, st.scale_is_current

    def _vectors_at(self, positions: np.ndarray) -> tuple[list[str], np.ndarray]:
        with self._lock:  # positions were counted before the lock: another thread may have
            live = self.state.live_rows()  # removed items since, so drop what is past the end
            rows = live[positions[positions < len(live)]]
            return [self.state.ids[r] for r in rows], self.state.index.vectors[rows].copy()

    # -- changes -----------------------------------------------------------------------------
    def _commit(self, make: Callable[[], Delta | None]) -> Delta | None:
        """Make a delta against the newest state and commit it: under the writer lock (after
        catching up with other writers) when stored, else in memory. A failed write changes
        nothing."""
        if self.root is None:
            with self._lock:
                delta = make()
                if delta is not None and delta.size():
                    if delta.remove or delta.add_ids:  # metadata alone keeps the scale
                        delta.scale = scale_after(self.state, delta)
                    self.state.apply(delta)
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
            # The scale after the change, fitted before it is written (and stored in it): the
            # writer lock keeps the state as it is; searches here take turns with the fit.
            if delta.remove or delta.add_ids:
                delta.scale = scale_after(self.state, delta, self._lock)
            with self._lock:
                due = self.replica.commit(self.state, delta)
            if due:  # written without this object's lock: searches go on meanwhile
                try:
                    self._write_base(self.root, hold_lock_while_writing=False)
                except CatalogError as exc:
                    # The change is committed; only the housekeeping failed (and changed
                    # nothing). Raising would tell the caller it was not; the next commit
                    # tries again.
                    self.warnings.append(f"automatic compaction failed, will retry: {exc}")
            return delta

    def _write_base(self, root: Path, hold_lock_while_writing: bool = True) -> None:
        """The live rows as a new base at ``root``; this state is based on it from then on.
        The caller holds the writer lock of ``root`` (so nothing else changes the store) and,
        unless ``hold_lock_while_writing`` is False, ``self._lock``. Without it the snapshot
        and the switch take the lock and the writing (seconds at a million items) does not:
        searches in this process go on, and ``refresh`` skips until the switch."""
        with self._lock:
            if whitening_due(self.state):
                self.state = rewhitened(self.state, self.parts())
            plan = self.replica.plan_base(self.state, root)
            self._compacting = True
        try:
            if not plan.state.scale_is_current:  # deltas from a writer that stored none
                plan.state.set_scale(scale_after(plan.state, None))  # a private copy: no lock
                plan.manifest["match_scale"] = [float(x) for x in plan.state.scale]
            with self._lock if hold_lock_while_writing else contextlib.nullcontext():
                self.replica.write_planned(plan)
            with self._lock:
                self.state = self.replica.switch_to(plan)
        finally:
            self._compacting = False

    def add_embeddings(self, ids: Sequence[str], vectors: np.ndarray,
                       paths: Sequence[str] | None = None, metadata: Any = None) -> None:
        """Add vectors made elsewhere by the same model (a batch job, another machine), checked
        like ``similar_to_vector`` and L2-normalised. An existing id is replaced (keeping its
        metadata unless a row is given). ``metadata``: rows aligned with ``ids`` or a mapping
        id -> row. Commits at once when the catalogue lives on disk."""
        ids, v, paths = checked_embeddings(ids, vectors, paths, self.encoder.dim)
        rows = rows_for(ids, metadata)
        self._commit(lambda: Delta(add_ids=ids, add_paths=paths, add_rows=rows,
                                   vectors=self._to_stored(v)))  # the newest state's whitening

    def update_metadata(self, ids: Sequence[str], rows: Sequence[Mapping[str, str]]) -> list[str]:
        """Set metadata columns of existing items without re-encoding (given columns change,
        others stay). Returns the ids that are not in the catalogue."""
        ids = [str(i) for i in ids]
        rows = rows_for(ids, rows)
        missing: list[str] = []

        def make() -> Delta:
            found = [self.state.resolve(i) for i in ids]
            missing[:] = [i for i, f in zip(ids, found) if f is None]
            keep = [(f, r) for f, r in zip(found, rows) if f is not None]
            return Delta(update_ids=[i for i, _ in keep], update_rows=[r for _, r in keep])

        self._commit(make)
        return missing

    def remove(self, ids: Iterable[str]) -> list[str]:
        """Remove items by id; returns the ids that were not in the catalogue."""
        ids = list(dict.fromkeys(str(i) for i in ids))
        missing: list[str] = []

        def make() -> Delta:
            found = [self.state.resolve(i) for i in ids]
            missing[:] = [i for i, f in zip(ids, found) if f is None]
            return Delta(remove=list(dict.fromkeys(f for f in found if f is not None)))

        self._commit(make)
        return missing

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

    # -- the catalogue's own whitening (fai_infer/catalog/whiten.py) ----------------------
    def _whitening(self):
        return self.state.whitening

    def rewhiten(self) -> None:
        """Refit the whitening on the items there are now (every vector re-whitened, the
        graph rebuilt); written at once when the catalogue lives on disk. A compaction does
        this by itself once the items changed enough (``whitening_due``)."""
        if self.root is None:
            with self._lock:
                self.state = rewhitened(self.state, self.parts())
            return
        with writer_lock(self.root, self.lock_timeout), self._lock:
            self.refresh()
            self.state = rewhitened(self.state, self.parts())
            self._write_base(self.root)

    # -- display -----------------------------------------------------------------------------
    def columns(self) -> dict[str, list[str]]:
        """Metadata columns and their values among live items, for filters in a UI."""
        self._before_read()
        with self._lock:
            return self.state.table.distinct(self.state.index.alive)

    def _known_columns(self) -> list[str]:
        return list(self.state.table.columns)

    def _store_display(self, chosen: dict[str, list[str]]) -> None:
        """The catalogue's display choice: in memory until ``save``; for a stored catalogue a
        new base at once (under the writer lock, after catching up), so no other process's
        compaction can revert it and nothing else ever writes it by the way."""
        if self.root is None:
            with self._lock:
                self.state.display.update(chosen)
            return
        with writer_lock(self.root, self.lock_timeout), self._lock:
            self.refresh()
            self.state.display.update(chosen)
            self._write_base(self.root)

    def _default_display(self) -> tuple[list[str], list[str]]:
        with self._lock:
            st = self.state
            if self._defaults[0] != st.version:
                stats = st.table.column_stats(st.index.alive)
                rows = st.table.codes[st.index.alive[:len(st.table)]]
                codes = {c: rows[:, j] for j, c in enumerate(st.table.columns)}
                self._defaults = (st.version, choose_display(stats, st.id_column, codes))
            return self._defaults[1]

    def info(self) -> dict:
        with self._lock:
            return {"count": len(self), "dim": self.encoder.dim, "engine": self.engine,
                    "model": self.encoder.info.summary(), "root": str(self.root or ""),
                    "columns": list(self.state.table.distinct(self.state.index.alive)),
                    "deltas": self.replica.applied, **self.display(), "name": self.shop_name(),
                    **self.whitening_info()}

    # -- the contract's primitives -----------------------------------------------------------
    def matching(self, where: Where, limit: int | None = None) -> list[str]:
        """Ids of live items passing a filter, in insertion order (a UI's catalogue browser)."""
        self._before_read()
        with self._lock:
            st = self.state
            mask = st.table.mask(parse_where(where), st.index.alive)
            allowed = st.index.alive if mask is None else st.index.alive & mask
            return [st.ids[r] for r in np.flatnonzero(allowed)[:limit]]

    def _stored(self, item_id: str) -> tuple[str, np.ndarray] | None:
        """Looked up under the lock, so an id removed meanwhile is "not in the catalogue",
        never a KeyError."""
        with self._lock:
            found = self.state.resolve(item_id)
            return None if found is None else (found, self.state.vector_of(found))

    def _search_many(self, queries: np.ndarray, k: int, where: Where | None,
                     excludes: Sequence[set[str]]) -> list[list[Hit]]:
        """Many searches, a chunk per turn of the lock (other threads' queries interleave)."""
        out: list[list[Hit]] = []
        for start in range(0, len(queries), 64):
            with self._lock:
                out += [self._search(q, k, where, ex)[0] for q, ex in
                        zip(queries[start:start + 64], excludes[start:start + 64])]
        return out

    def _search(self, query: np.ndarray, k: int, where: Where | None, exclude: set[str],
                vectors: bool = False) -> tuple[list[Hit], dict[str, np.ndarray]]:
        """Top k under an optional filter; excluded ids are over-fetched and dropped."""
        if k <= 0:
            return [], {}
        clauses = parse_where(where)
        with self._lock:
            st = self.state
            fetch = k + len(exclude)
            subset = self._filters.get(clauses, st.version, st.table, st.index) if clauses \
                else None
            if subset is None:
                rows, scores = st.index.search(query, fetch)
            elif subset[1] is not None:  # an exact filter: its rows, gathered once
                found, scores = exact_top_k(subset[1][1], query, fetch)
                rows = subset[1][0][found]
            else:
                rows, scores = st.index.search(query, fetch, subset[0])
            kept = [(int(r), float(s)) for r, s in zip(rows, scores)
                    if st.ids[r] not in exclude][:k]
            hits = [st.hit(r, s) for r, s in kept]
            vecs = {st.ids[r]: st.index.vectors[r].copy() for r, _ in kept} if vectors else {}
            return hits, vecs
