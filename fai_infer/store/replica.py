"""A local catalogue's place in its store: which generation its state is based on, how many of
that generation's deltas it applied, and the moves between states on disk (open, refresh,
follow a compaction, commit a delta, write a base) with the manifest schema they share.

Why apart: the catalogue (``fai_infer/catalog/local.py``) searches a ``CatalogState``; everything
that reads or writes files, and every rule about when to compact, is here. The caller holds the
catalogue's lock (and, for writes, the store's writer lock, ``store.writer_lock``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from dataclasses import dataclass

import numpy as np

from fai_infer.model.identity import built_with_hint, check_model
from fai_infer.buffers import load_with_headroom
from fai_infer.store.state import CatalogState
from fai_infer.store.delta import DELTA_PREFIX, Delta, delta_name, delta_path, is_delta_name
from fai_infer.model.encoder import Encoder
from fai_infer import safe_json
from fai_infer.store.hnsw_check import check_hnsw_file
from fai_infer.index.metadata import MetadataTable
from fai_infer.index.search import EXACT_BELOW, HnswSearch
from fai_infer.text import shorten
from fai_infer.store.generations import (CatalogError, current_generation_name, peek_manifest,
                               read_generation, write_generation)
from fai_infer.store.journal import read_delta, write_delta
from fai_infer.store.check import (check_arrays, check_columns, check_items, check_manifest,
                                   checked_scale)
from fai_infer.safe_files import check_npy, load_npy, read_bounded
from fai_infer.model.identity import file_sha256_or_none
from fai_infer.index.vector_index import VectorIndex
from fai_infer.store.whitening_files import load_whitening, whitening_writers

CATALOG_FORMAT = 2
COMPACT_RATIO = 0.25  # fold deltas into a new base once they change this share of the items
COMPACT_MIN_ROWS = 4_096
COMPACT_MAX_DELTAS = 512  # ... or once this many delta files (or items / 256) pile up
OPEN_RETRIES = 5


def manifest_for(state: CatalogState, encoder: Encoder) -> dict:
    """The manifest of a base holding ``state`` (the schema ``store_check.check_manifest``
    reads back; ``files`` and checksums are added by ``storage.write_generation``)."""
    return {"format_version": CATALOG_FORMAT, "count": len(state.ids),
            "dim": encoder.dim, "model_sha256": encoder.model_sha256,
            "model_name": encoder.info.name,
            "model_version": encoder.info.version,
            "model_quantization": encoder.info.quantization,
            "model_path": str(Path(encoder.path).absolute()),
            "model_file_sha256": file_sha256_or_none(encoder.path),
            "next_label": state.index.next_label,
            "preprocess": encoder.spec.to_dict(),
            "exact_below": state.index.exact_below, "engine": state.index.engine,
            "id_column": state.id_column, "id_normalise": state.id_normalise,
            "display": state.display,
            # fitted by the writer for exactly these items, so no reader ever fits one
            **({"match_scale": [float(x) for x in state.scale]} if state.scale_is_current
               else {}),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def load_state(root: Path, encoder: Encoder) -> tuple[CatalogState, str, dict]:
    """The current base of ``root`` as a state (no deltas yet), its generation name and its
    checked manifest. The model must be the one that built it."""
    gen, manifest = read_generation(root)
    manifest = check_manifest(root, gen, manifest)
    check_model(str(root), manifest, encoder,
                f"re-index with 'fai index PHOTOS_DIR --out {root}'",
                built_with_hint(manifest))
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
    exact_below = manifest.get("exact_below")
    index = VectorIndex(dim, exact_below if isinstance(exact_below, int) else EXACT_BELOW,
                        emb, labels.astype(np.int64), manifest["next_label"], hnsw)
    state = CatalogState(dim, index=index, table=table, ids=ids, paths=paths)
    state.id_column = manifest.get("id_column") if isinstance(
        manifest.get("id_column"), str) else "id"
    state.id_normalise = manifest.get("id_normalise") is True
    display = manifest.get("display")
    state.display = {k: [str(c) for c in display[k]] for k in ("filters", "caption", "name")
                     if isinstance(display, dict) and isinstance(display.get(k), list)}
    state.set_scale(checked_scale(f"{root}: {gen.name}/manifest.json",
                                  manifest.get("match_scale")))
    state.whitening = load_whitening(root, gen, manifest, dim)
    return state, gen.name, manifest


@dataclass
class BasePlan:
    """A base to write: where, the compacted state it holds, its files' writers, its
    manifest; ``gen`` is set once written."""
    root: Path
    state: CatalogState
    writers: dict
    manifest: dict
    gen: str | None = None


class Replica:
    """Where a state stands in the store at ``root``: generation ``gen`` with ``applied`` of
    its deltas (``delta_rows`` rows changed by them, for the compaction policy)."""

    def __init__(self, encoder: Encoder, root: Path | None = None):
        self.encoder = encoder
        self.root = root
        self.gen: str | None = None
        self.applied = 0
        self.delta_rows = 0

    # -- reading -----------------------------------------------------------------------------
    def open(self) -> CatalogState:
        """Read the current base and apply its deltas."""
        state, self.gen, _ = load_state(self.root, self.encoder)
        self.applied = self.delta_rows = 0
        self.replay(state, self.root / self.gen)
        self._check_no_gap(self.root / self.gen)
        return state

    def replay(self, state: CatalogState, gen: Path, upto: int | None = None) -> int:
        """Apply the deltas committed to ``gen`` after the last one applied (up to number
        ``upto``); returns how many."""
        applied = 0
        while upto is None or self.applied < upto:
            path = delta_path(gen, self.applied + 1)
            try:
                delta = read_delta(self.root, path, state.dim)
            except FileNotFoundError:
                return applied
            state.apply(delta)
            self.applied += 1
            self.delta_rows += delta.size()
            applied += 1
        return applied

    def _check_no_gap(self, gen: Path) -> None:
        """Replay stops at the first missing delta; one numbered past it (a deleted file, a
        partial copy) would be dropped silently, and the next commit would fill the hole with
        other content. Checked on open only (one directory listing)."""
        later = [int(p.name[len(DELTA_PREFIX):]) for p in gen.iterdir()
                 if is_delta_name(p.name) and int(p.name[len(DELTA_PREFIX):]) > self.applied]
        if later and not delta_path(gen, self.applied + 1).exists():  # else: just committed
            raise CatalogError(f"{self.root}: {gen.name}/{delta_name(self.applied + 1)} is "
                               f"missing but {delta_name(min(later))} follows it; restore a "
                               f"backup or re-index")

    def refresh(self, state: CatalogState | None) -> tuple[CatalogState, bool]:
        """Catch ``state`` up with what other processes committed: the new deltas, or the new
        base after a compaction (retrying when a compaction races the read). Returns the state
        to use from now on and whether anything changed."""
        for attempt in range(OPEN_RETRIES):
            name = current_generation_name(self.root)
            try:
                if state is not None and name is not None and name == self.gen:
                    return state, self.replay(state, self.root / name) > 0
                if state is not None and self._follow_compaction(state, name):
                    return state, True
                fresh = Replica(self.encoder, self.root)
                new = fresh.open()
                self.gen, self.applied, self.delta_rows = (fresh.gen, fresh.applied,
                                                           fresh.delta_rows)
                if state is not None:
                    new.renumber(state.version + 1)
                return new, True
            except (CatalogError, FileNotFoundError):
                if current_generation_name(self.root) == name or attempt == OPEN_RETRIES - 1:
                    raise
        return state, False  # not reached: the last attempt returns or raises

    def _follow_compaction(self, state: CatalogState, name: str | None) -> bool:
        """When generation ``name`` is a compaction of ours (its manifest says which deltas it
        folded) and we have applied, or can still read, every one of them, our state already
        equals its base: switch to it without reloading (a million items reload in seconds,
        and every writer would do it under the lock)."""
        folded = peek_manifest(self.root, name).get("folded")
        if (not isinstance(folded, dict) or folded.get("generation") != self.gen
                or not isinstance(folded.get("deltas"), int)
                or folded["deltas"] < self.applied):
            return False
        # The previous generation is kept one compaction longer: read what we have not seen.
        self.replay(state, self.root / str(self.gen), upto=folded["deltas"])
        if self.applied < folded["deltas"]:
            return False  # collected meanwhile: the caller reloads (state stays consistent)
        self.gen, self.applied, self.delta_rows = name, 0, 0
        stored = peek_manifest(self.root, name).get("match_scale")
        if not state.scale_is_current and isinstance(stored, list):
            # the compaction fitted what ours lacked (checked as a base's is on open)
            state.set_scale(checked_scale(f"{self.root}: {name}/manifest.json", stored))
        self.replay(state, self.root / name)
        state.renumber(state.version + 1)
        return True

    # -- writing (the caller holds the writer lock) ------------------------------------------
    def commit(self, state: CatalogState, delta: Delta) -> bool:
        """Write ``delta`` as the next delta of this generation and apply it to ``state``.
        Returns whether the deltas piled up enough to fold them into a new base (the caller
        does that with ``plan_base``/``write_planned``/``switch_to``, or ``write_base``)."""
        write_delta(self.root, self.root / self.gen, self.applied + 1, delta, state.dim)
        state.apply(delta)
        self.applied += 1
        self.delta_rows += delta.size()
        return (self.delta_rows > max(COMPACT_MIN_ROWS, COMPACT_RATIO * len(state))
                or self.applied >= max(COMPACT_MAX_DELTAS, len(state) // 256))

    def plan_base(self, state: CatalogState, root: Path) -> BasePlan:
        """A compacted copy of ``state`` and the writers and manifest of a base holding it
        (quick: the caller holds the catalogue's lock)."""
        new = state.compacted()
        index, table = new.index, new.table
        vectors, labels = index.vectors, index.labels
        meta = {"columns": table.columns, "values": table.values}
        writers = {
            "embeddings.npy": lambda p: np.save(p, vectors, allow_pickle=False),
            "labels.npy": lambda p: np.save(p, labels, allow_pickle=False),
            # ASCII-escaped: file names that are not valid UTF-8 round-trip exactly.
            "ids.json": lambda p: p.write_text(json.dumps(new.ids), encoding="ascii"),
            "paths.json": lambda p: p.write_text(json.dumps(new.paths), encoding="ascii"),
            "metadata.json": lambda p: p.write_text(json.dumps(meta), encoding="ascii"),
            "metadata_codes.npy": lambda p: np.save(p, table.codes, allow_pickle=False),
        }
        manifest = manifest_for(new, self.encoder)
        extra_writers, extra_manifest = whitening_writers(new.whitening)
        writers |= extra_writers
        manifest |= extra_manifest
        if self.root is not None and self.gen and root.resolve() == self.root.resolve():
            manifest["folded"] = {"generation": self.gen, "deltas": self.applied}
        if index.hnsw is not None:
            writers["index.hnsw"] = index.hnsw.save
            manifest["hnsw_capacity"] = index.hnsw.capacity
            manifest["hnsw_deleted"] = index.hnsw.deleted
        return BasePlan(root, new, writers, manifest)

    @staticmethod
    def write_planned(plan: BasePlan) -> None:
        """Write the planned base (the slow part: needs the writer lock, not the catalogue's
        lock, since the plan holds copies)."""
        plan.gen = write_generation(plan.root, plan.writers, plan.manifest).name

    def switch_to(self, plan: BasePlan) -> CatalogState:
        """Base this replica on the written plan; returns the state to use from now on."""
        self.root, self.gen, self.applied, self.delta_rows = plan.root, plan.gen, 0, 0
        return plan.state

    def write_base(self, state: CatalogState, root: Path) -> CatalogState:
        """The live rows as a complete, checksummed generation at ``root``; returns the
        compacted state, which is based on it from now on (``self`` moves to ``root``)."""
        plan = self.plan_base(state, root)
        self.write_planned(plan)
        return self.switch_to(plan)
