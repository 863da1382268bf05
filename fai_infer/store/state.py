"""A local catalogue's contents in memory: ids, paths, metadata rows and vectors, changed only by
``apply(delta)``.

Why apart from the files: every change (a live add, a replayed delta from another process) goes
through one ``apply``, and a test can drive it with deltas and compare with a plain dict,
without a folder, a lock or an encoder. ``fai_infer/store/replica.py`` loads, follows and writes it;
``fai_infer/catalog/local.py`` searches it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fai_infer.store.delta import Delta
from fai_infer.index.hits import Hit
from fai_infer.index.metadata import MetadataTable
from fai_infer.index.search import EXACT_BELOW
from fai_infer.text import normalise_id
from fai_infer.index.vector_index import VectorIndex
from fai_infer.index.whitening import Whitening


class CatalogState:
    """Rows in insertion order, tombstoned rows included until compaction; ``row_of`` maps a
    live id to its row. ``version`` changes with every change (the caches' key)."""

    def __init__(self, dim: int, exact_below: int = EXACT_BELOW,
                 index: VectorIndex | None = None, table: MetadataTable | None = None,
                 ids: Sequence[str] = (), paths: Sequence[str] = ()):
        self.index = index if index is not None else VectorIndex(dim, exact_below)
        self.table = table if table is not None else MetadataTable()
        self.ids: list[str] = list(ids)
        self.paths: list[str] = list(paths)
        alive = self.index.alive
        self.row_of: dict[str, int] = {i: r for r, i in enumerate(self.ids) if alive[r]}
        self.id_column = "id"
        self.id_normalise = False  # ids also found ignoring case, spaces and leading zeros
        self.display: dict[str, list[str]] = {}
        self.whitening: Whitening | None = None  # what the index's vectors went through
        self.version = 0
        # The match scale (sorted scores, empty: too few items) as last stored, and the version
        # it was fitted for: when that is not ``version`` it is provisional (see apply).
        self.scale: np.ndarray | None = None
        self.scale_version = -1
        self._normal: tuple[int, dict[str, str]] = (-1, {})

    @property
    def dim(self) -> int:
        return self.index.dim

    def __len__(self) -> int:
        return self.index.live

    def live_rows(self) -> np.ndarray:
        return np.flatnonzero(self.index.alive)

    def resolve(self, item_id: object) -> str | None:
        """The stored id ``item_id`` names: itself, or (for a catalogue indexed with
        ``id_normalise``) the one equal to it ignoring case, spaces and leading zeros."""
        if not isinstance(item_id, str):
            return None
        if item_id in self.row_of or not self.id_normalise:
            return item_id if item_id in self.row_of else None
        if self._normal[0] != self.version:
            self._normal = (self.version, {normalise_id(i): i for i in self.row_of})
        return self._normal[1].get(normalise_id(item_id))

    def hit(self, row: int, score: float = 1.0) -> Hit:
        return Hit(self.ids[row], float(score), self.paths[row], self.table.row(row))

    def vector_of(self, stored_id: str) -> np.ndarray | None:
        """A copy of a live item's vector (None when it is gone)."""
        row = self.row_of.get(stored_id)
        return None if row is None else self.index.vectors[row].copy()

    def apply(self, d: Delta) -> None:
        """The one way state changes, for live changes and replayed deltas alike: removals,
        then additions (an id present is replaced, keeping its metadata when the new row is
        empty), then metadata updates of ids present."""
        gone = [self.row_of.pop(i) for i in d.remove if i in self.row_of]
        self.index.remove(np.array(gone, np.int64))
        if d.add_ids:
            rows = []
            replaced = []
            for id_, row in zip(d.add_ids, d.add_rows):
                old = self.row_of.get(id_)
                if old is not None:
                    replaced.append(old)
                    if not row:  # a new photo for an item keeps its metadata
                        row = self.table.row(old)
                rows.append(row)
            self.index.remove(np.array(replaced, np.int64))
            new_rows = self.index.add(d.vectors)
            self.table.append(rows)
            self.ids += d.add_ids
            self.paths += d.add_paths
            for id_, r in zip(d.add_ids, new_rows):
                self.row_of[id_] = int(r)
        if d.update_ids:
            pairs = [(self.row_of[i], row) for i, row in zip(d.update_ids, d.update_rows)
                     if i in self.row_of]
            self.table.update([r for r, _ in pairs], [row for _, row in pairs])
        exact = self.scale_version == self.version
        self.version += 1
        if d.scale is not None:
            self.scale, self.scale_version = d.scale, self.version
        elif exact and not d.remove and not d.add_ids:
            self.scale_version = self.version  # metadata alone does not move the scale

    def compacted(self) -> "CatalogState":
        """The live rows only, in order (what a new base holds); the HNSW graph is shared (its
        deleted labels stay marked). ``self`` is left as it was."""
        vectors, labels = self.index.compacted()
        keep = self.index.alive.copy()
        rows = np.flatnonzero(keep)
        index = VectorIndex(self.dim, self.index.exact_below, vectors, labels,
                            self.index.next_label, self.index.hnsw)
        out = CatalogState(self.dim, index=index, table=self.table.compacted(keep),
                           ids=[self.ids[r] for r in rows], paths=[self.paths[r] for r in rows])
        out.adopt_settings(self)
        out.version = self.version + 1
        out.scale = self.scale  # the same live items in the same order: the same scale
        out.scale_version = out.version if self.scale_is_current else -1
        return out

    def renumber(self, version: int) -> None:
        """Give this state a new version (a reload or a followed compaction must look changed
        to every cache), keeping whether its scale is current."""
        current = self.scale_is_current
        self.version = version
        self.scale_version = version if current else -1

    def set_scale(self, scale: np.ndarray | None) -> None:
        """The scale fitted for exactly these items (None: unknown)."""
        self.scale, self.scale_version = scale, (self.version if scale is not None else -1)

    @property
    def scale_is_current(self) -> bool:
        """Whether ``scale`` was fitted for exactly these items."""
        return self.scale is not None and self.scale_version == self.version

    def adopt_settings(self, other: "CatalogState") -> None:
        """Take the id and display settings of another state of the same catalogue."""
        self.id_column, self.id_normalise = other.id_column, other.id_normalise
        self.display = {k: list(v) for k, v in other.display.items()}
        self.whitening = other.whitening
