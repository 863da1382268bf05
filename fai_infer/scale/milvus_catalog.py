"""A catalogue served by Milvus: a Milvus server or cluster URI, or a Milvus Lite ``.db`` file.

Why: one search service shared by every kiosk and the web back end, with a catalogue larger than
one machine's RAM. ``MilvusCatalog`` answers like ``Catalog`` (same methods, hits, filters and
basket ranking) so the CLI and the shop page use either; ``push`` loads a local catalogue's
vectors and metadata into a new collection and then points the collection's name (a Milvus alias)
at it, so kiosks keep searching the old catalogue until the new one is complete.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from fai_infer.catalog.contract import (BaseCatalog, Hit, NotInCatalogue, Skipped, check_model,
                           checked_embeddings, rows_for)
from fai_infer.model.encoder import Encoder
from fai_infer.index.filters import Where, parse_where
from fai_infer.progress import Progress
from fai_infer.index.search import exact_top_k
from fai_infer.scale import require
from fai_infer.scale.milvus_schema import (DELTA_PREFIX, HNSW_BUILD, MANIFEST_KEY, MAX_COLUMNS,
                                           MAX_TOPK, TEXT_BYTES, ID_BYTES, Manifest,
                                           WriterDelta, check_clauses, columns_of, expression,
                                           literal, row_fields)
from fai_infer.errors import CatalogError

DEFAULT_COLLECTION = "fai"
SCALE_KEY = "fai.match_scale"  # the collection's match scale, stored by whoever last wrote
DISPLAY_KEY = "fai.display"  # a display chosen after the push (set_display), over the pushed one
INSERT_BATCH = 2000
SEARCH_BATCH = 256  # queries per search request in _search_many
EXACT_FILTERED = 1000  # a filter letting at most this many rows through is ranked exactly
MANIFEST_TTL_S = 2.0  # a reader looks for other writers' manifest changes at most this often
# Session: this process reads its own writes at once, other processes' within a time tick
# (~0.2 s on a server). Strong waits for the next time tick on every read (400 ms a query on
# the 2.3 standalone, measured): pass consistency="Strong" where that is worth it.
READ_CONSISTENCY = "Session"


class _Client:
    """A MilvusClient whose failures are CatalogErrors naming the service (one line in the CLI
    and the shop page, never a gRPC traceback); reads carry ``read_consistency`` when set."""

    READS = frozenset({"search", "query", "get", "query_iterator"})

    def __init__(self, client, uri: str):
        self._client, self._uri = client, uri
        self.read_consistency: str | None = None

    def __getattr__(self, name: str):
        from pymilvus import MilvusException

        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if self.read_consistency and name in self.READS:
                kwargs.setdefault("consistency_level", self.read_consistency)
            try:
                return attr(*args, **kwargs)
            except MilvusException as exc:
                raise CatalogError(f"milvus {self._uri}: {name} failed ({exc.message})") from None
        return call


def connect(uri: str, token: str | None = None) -> _Client:
    """A MilvusClient for a server URI (http://host:19530) or a Milvus Lite file (*.db)."""
    pymilvus = require("pymilvus", "--milvus")
    import logging

    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)  # failures raise; no log spam
    if uri.endswith(".db"):
        require("milvus_lite", "a Milvus Lite file (--milvus *.db)")
        if not Path(uri).resolve().parent.is_dir():
            raise CatalogError(f"--milvus {uri}: its folder does not exist")
    try:
        return _Client(pymilvus.MilvusClient(
            uri=uri, token=token or os.environ.get("MILVUS_TOKEN", "")), uri)
    except pymilvus.MilvusException as exc:
        raise CatalogError(f"--milvus {uri}: cannot connect ({exc.message})") from None
    except ValueError as exc:  # pymilvus refuses a malformed URI this way
        raise CatalogError(f"--milvus {uri}: {exc}") from None


LITE = (99, 0)  # Milvus Lite: not a server version, a marker for "has every feature push uses"


def server_version(client, uri: str) -> tuple[int, int]:
    """(major, minor) of the server, or ``LITE`` for a Milvus Lite file. A version that cannot
    be read is one error line, never a guess (the schema and index types depend on it)."""
    if uri.endswith(".db"):
        return LITE
    text = str(client.get_server_version())
    m = re.match(r"v?(\d+)\.(\d+)", text)
    if m is None:
        raise CatalogError(f"milvus {uri}: cannot read the server's version from "
                           f"{text[:60]!r} (fai needs Milvus 2.3 or later)")
    return int(m.group(1)), int(m.group(2))


def _schema(client, dim: int, columns: Sequence[str], nulls: bool = True):
    """Nullable number fields where the server has them (Milvus >= 2.5, Milvus Lite)."""
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_BYTES)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("path", DataType.VARCHAR, max_length=TEXT_BYTES)
    schema.add_field("meta", DataType.JSON)
    for i, _ in enumerate(columns):
        schema.add_field(f"c{i}_t", DataType.VARCHAR, max_length=TEXT_BYTES)
        schema.add_field(f"c{i}_n", DataType.DOUBLE, **({"nullable": True} if nulls else {}))
    return schema


def _wait_indexed(client, name: str, fields: Sequence[str], timeout_s: float = 3600) -> None:
    """A Milvus server builds indexes in the background; load only a fully indexed collection.
    Done: state Finished with every row indexed (the 2.3 server can leave pending_index_rows
    non-zero after it finished a 1M-row build), or, where no state is reported (Milvus Lite),
    nothing pending."""
    deadline = time.time() + timeout_s
    waiting = list(fields)
    while waiting and time.time() < deadline:
        info = client.describe_index(name, waiting[0]) or {}
        state = info.get("state")
        if state == "Failed":
            raise CatalogError(f"collection {name!r}: building the index of {waiting[0]!r} "
                               f"failed ({info.get('index_state_fail_reason', '')})")
        if state == "Finished" and info.get("indexed_rows", 0) >= info.get("total_rows", 0):
            waiting.pop(0)
            continue
        if state is None and info.get("pending_index_rows", 0) == 0:
            waiting.pop(0)
            continue
        time.sleep(0.2)
    if waiting:
        raise CatalogError(f"collection {name!r}: the index of {waiting[0]!r} was not built "
                           f"within {timeout_s:.0f}s")


def push(cat, uri: str, collection: str = DEFAULT_COLLECTION, batch: int = INSERT_BATCH,
         progress: bool = False, token: str | None = None) -> dict:
    """Load a catalogue (a ``Catalog``) into Milvus under the name ``collection``.

    The vectors go into a new collection ``{collection}_{time}``; once every row is in and the
    HNSW index is built, the alias ``collection`` moves to it and the previous one is dropped.
    Returns {"collection", "physical", "count", "seconds", "insert_s", "index_s"} (insert_s:
    the rows and the flush; index_s: building the indexes and loading)."""
    t0 = time.time()
    client = connect(uri, token)
    previous = _alias_target(client, collection)
    physical = f"{collection}_{time.strftime('%Y%m%d_%H%M%S')}_{os.getpid()}"
    display = cat.display() | ({"name": [cat.shop_name()]} if cat.shop_name() else {})
    order = columns_of([dict.fromkeys(cat.columns(), "")],
                       display["filters"] + display["caption"])
    version = server_version(client, uri)
    man = Manifest(model_sha256=cat.encoder.model_sha256, model_name=cat.encoder.info.name,
                   preprocess=json.loads(json.dumps(cat.encoder.spec.to_dict())),
                   dim=cat.encoder.dim, id_column=cat.id_column, columns=order[:MAX_COLUMNS],
                   unfiltered=order[MAX_COLUMNS:], display=display, nulls=version >= (2, 5))
    client.create_collection(physical, schema=_schema(client, man.dim, man.columns, man.nulls),
                             consistency_level="Strong")
    try:
        bar = Progress(len(cat), "pushing") if progress and len(cat) else None
        for ids, vectors, paths, metas in cat.iter_batches(batch):
            man.note_values(metas)
            client.insert(physical, [row_fields(i, v, p, m, man) for i, v, p, m
                                     in zip(ids, vectors, paths, metas)])
            if bar is not None:
                bar.update(len(ids))
        if bar is not None:
            bar.close()
        client.flush(physical)
        inserted = time.time()
        _build_index(client, physical, man, version)
        indexed = time.time()
        props = {MANIFEST_KEY: man.to_json()}
        cat.match_scale()  # the local catalogue's stored scale (the same items), or its
        cat.wait_for_scales()  # first fit for one written before scales were stored
        scale = cat.match_scale()
        if scale is not None:
            props[SCALE_KEY] = scale_json(scale.neighbour_scores, len(cat))
        client.alter_collection_properties(physical, properties=props)
        if previous is None:
            client.create_alias(physical, collection)
        else:
            client.alter_alias(physical, collection)
    except BaseException:
        client.drop_collection(physical)
        raise
    if previous is not None:
        client.drop_collection(previous)
    client.close()
    return {"collection": collection, "physical": physical, "count": len(cat),
            "seconds": round(time.time() - t0, 2), "insert_s": round(inserted - t0, 2),
            "index_s": round(indexed - inserted, 2)}


def _build_index(client, name: str, man: Manifest, version: tuple[int, int]) -> None:
    """HNSW on the vectors; an index on each text field (INVERTED from Milvus 2.4, a trie on
    the 2.3 standalone)."""
    params = client.prepare_index_params()
    params.add_index("vector", index_type="HNSW", metric_type="IP", params=dict(HNSW_BUILD))
    for i, _ in enumerate(man.columns):
        params.add_index(f"c{i}_t", index_type="INVERTED" if version >= (2, 4) else "Trie")
    lite = version == LITE
    # a server: no waiting inside pymilvus (it polls a state the 2.3 server may not settle)
    client.create_index(name, params, **({} if lite else {"sync": False}))
    _wait_indexed(client, name, ["vector"] + [f"c{i}_t" for i in range(len(man.columns))])
    if lite:
        client.release_collection(name)   # Milvus Lite builds segment indexes on load
    client.load_collection(name)


def _alias_target(client, alias: str) -> str | None:
    """The collection an alias names; None when there is neither; refuse a plain collection."""
    listed = client.list_aliases()
    aliases = listed.get("aliases", []) if isinstance(listed, dict) else list(listed)
    if alias in aliases:
        return client.describe_alias(alias)["collection_name"]
    if client.has_collection(alias):
        raise CatalogError(f"collection {alias!r} exists and was not made by 'fai push' (it is "
                           f"not an alias); drop it or push with another --collection")
    return None


def scale_json(scores: np.ndarray, count: int) -> str:
    """A match scale as a collection property (rounded: a few kB however large the shop)."""
    return json.dumps({"scores": [round(float(x), 6) for x in scores], "count": int(count)})


def scale_from(props: Mapping) -> np.ndarray | None:
    """The stored scale's sorted scores (empty: too few items), None when absent or unreadable
    (a reader then fits one in the background)."""
    try:
        scores = np.asarray(json.loads(props[SCALE_KEY])["scores"], np.float64)
    except (KeyError, TypeError, ValueError):
        return None
    ok = scores.ndim == 1 and np.isfinite(scores).all() and not (np.diff(scores) < 0).any()
    return scores if ok else None


class _LazyIds:
    """Every item id, fetched page by page when iterated (the shop page browses the first few)."""

    def __init__(self, cat: "MilvusCatalog"):
        self.cat = cat

    def __iter__(self) -> Iterator[str]:
        it = self.cat.client.query_iterator(self.cat.name, batch_size=1000,
                                            output_fields=["id"])
        try:
            while True:
                page = it.next()
                if not page:
                    return
                yield from (r["id"] for r in page)
        finally:
            it.close()

    def __len__(self) -> int:
        return len(self.cat)


class MilvusCatalog(BaseCatalog):
    """The catalogue contract (``fai_infer/catalog/contract.py``) answered by a Milvus collection: this
    class supplies the two primitives, the reads and the writes."""

    engine = "milvus"

    def __init__(self, uri: str, collection: str = DEFAULT_COLLECTION,
                 encoder: Encoder | None = None, token: str | None = None,
                 manifest_ttl: float = MANIFEST_TTL_S, consistency: str = READ_CONSISTENCY):
        self.uri, self.name = uri, collection
        self.client = connect(uri, token)
        self.client.read_consistency = consistency
        self.where_text = f"--milvus {uri} --collection {collection}"
        if not self.client.has_collection(collection):
            raise CatalogError(f"{self.where_text}: no such collection (make it with 'fai push "
                               f"CATALOG --milvus {uri} --collection {collection}')")
        # this writer's own manifest key: nobody else writes it (see Manifest)
        self._writer = f"{DELTA_PREFIX}{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self._delta = WriterDelta()
        self._lock = threading.RLock()
        self.manifest_ttl = manifest_ttl
        self._props: dict = {}
        self._physical_name = ""
        self._checked = 0.0
        self._load_manifest()
        self.encoder = encoder or Encoder()
        self._check_model()
        # A collection is searchable only once loaded; a new process (fai query, the page)
        # must load it itself (loading a loaded collection is a no-op).
        try:
            self.client.load_collection(collection)
        except Exception as exc:  # pymilvus raises its own exception types
            raise CatalogError(f"{self.where_text}: cannot load the collection "
                               f"({str(exc).splitlines()[0] if str(exc) else exc})") from None
        self.id_column = self.manifest.id_column
        self.root = None
        self.skipped: list[Skipped] = []
        self._writes = 0  # this process's changes: with the count, what ``version`` is made of
        self._count: tuple[tuple[int, float], int] | None = None

    # -- the manifest: other writers' columns and values ------------------------------------
    def _load_manifest(self) -> bool:
        """Read the collection's properties; rebuild the manifest if they changed (another
        writer added values, or a new push moved the alias). Whether anything changed."""
        desc = self.client.describe_collection(self.name)
        props = desc.get("properties", {}) or {}
        self._checked = time.monotonic()
        if props == self._props:
            return False
        try:
            manifest = Manifest.from_properties(props)
        except (KeyError, ValueError, TypeError):
            raise CatalogError(f"{self.where_text}: not a FAI catalogue (no readable "
                               f"{MANIFEST_KEY} property)") from None
        pushed_again = self._physical_name and desc.get("collection_name") != self._physical_name
        if pushed_again:
            self._delta = WriterDelta()  # a new collection: our additions were to the old one
        manifest.absorb(json.loads(self._delta.to_json()))  # ours, even if not yet stored
        self.manifest, self._props = manifest, props
        self._scale_scores = scale_from(props)  # parsed once per change, not per query
        self._display = {k: list(v) for k, v in manifest.display.items()}
        try:
            chosen = json.loads(props.get(DISPLAY_KEY) or "{}")
        except ValueError:
            chosen = {}
        self._display.update({k: [str(c) for c in v] for k, v in chosen.items()
                              if k in ("filters", "caption", "name") and isinstance(v, list)}
                             if isinstance(chosen, dict) else {})
        self._physical_name = desc.get("collection_name", self.name)
        if pushed_again:
            self._check_model()
            self.client.load_collection(self.name)
        return True

    def refresh(self) -> bool:
        """Catch up with other writers' manifest changes now; whether there were any."""
        with self._lock:
            return self._load_manifest()

    def _before_read(self) -> None:
        """Reload the manifest at most every ``manifest_ttl`` seconds (one cheap describe)."""
        if time.monotonic() - self._checked >= self.manifest_ttl:
            with self._lock:
                self._load_manifest()

    def _version_now(self) -> tuple[str, int, int]:
        """The collection, changes by this process, and the count (which other writers' adds
        and removes move; counted again at most every ``manifest_ttl`` seconds)."""
        return self._physical(), self._writes, len(self)

    def _stored_scale(self) -> tuple[np.ndarray | None, bool]:
        """The scale in the collection's properties, as its last writer stored it (writers
        refit after their own changes; a reader never does unless none is stored)."""
        scores = self._scale_scores
        return scores, scores is not None

    def _scale_fitted(self, colour: float | None, scores: np.ndarray) -> None:
        if colour is None:  # the default weighting is the collection's: store it for all
            self.client.alter_collection_properties(
                self._physical(), properties={SCALE_KEY: scale_json(scores, len(self))})
            with self._lock:
                self._load_manifest()

    def _changed(self) -> None:
        """After a write by this process: count again, and refit the stored scale in the
        background (queries keep the last one meanwhile)."""
        self._writes += 1
        self._count = None
        self._refit_later(None)

    def _check_model(self) -> None:
        man = self.manifest
        check_model(self.where_text, {"model_sha256": man.model_sha256,
                                      "model_name": man.model_name,
                                      "preprocess": man.preprocess, "dim": man.dim},
                    self.encoder, f"push it again with 'fai push CATALOG {self.where_text}'")

    # -- what the shop page and the CLI read ---------------------------------------------------
    def __len__(self) -> int:
        """Counted once per write by this process and at most every ``manifest_ttl`` seconds
        for other writers' changes: never a ``count(*)`` per query."""
        key = (self._writes, time.monotonic() // max(self.manifest_ttl, 1e-3))
        cached = self._count
        if cached is None or cached[0] != key:
            res = self.client.query(self.name, filter="", output_fields=["count(*)"])
            cached = self._count = (key, int(res[0]["count(*)"]))
        return cached[1]

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and bool(self._rows([item_id], ["id"]))

    @property
    def ids(self) -> _LazyIds:
        return _LazyIds(self)

    def _rows(self, ids: Sequence[str], fields: list[str]) -> list[dict]:
        if not ids:
            return []
        return self.client.get(self.name, ids=list(ids), output_fields=fields)

    def get(self, item_id: str) -> Hit:
        rows = self._rows([item_id], ["path", "meta"])
        if not rows:
            raise NotInCatalogue(item_id)
        return Hit(item_id, 1.0, rows[0]["path"], dict(rows[0]["meta"] or {}))

    def columns(self) -> dict[str, list[str]]:
        """Columns and their values (at most MAX_VALUES each), for filters in a UI."""
        self._before_read()
        return {c: list(self.manifest.values.get(c, []))
                for c in sorted(self.manifest.columns + self.manifest.unfiltered)}

    def _known_columns(self) -> list[str]:
        return self.manifest.columns + self.manifest.unfiltered

    def _store_display(self, chosen: dict[str, list[str]]) -> None:
        """Stored in the collection's properties for every process (``DISPLAY_KEY``)."""
        with self._lock:
            self._load_manifest()
            display = {k: list(v) for k, v in self._display.items()} | chosen
            self.client.alter_collection_properties(
                self._physical(), properties={DISPLAY_KEY: json.dumps(display)})
            self._load_manifest()
            self._display = display

    def info(self) -> dict:
        return {"count": len(self), "dim": self.encoder.dim, "engine": self.engine,
                "model": self.encoder.info.summary(), "root": self.where_text,
                "columns": sorted(self.manifest.columns + self.manifest.unfiltered),
                **self.display()}

    def iter_batches(self, size: int = 10_000
                     ) -> Iterator[tuple[list[str], np.ndarray, list[str], list[dict]]]:
        """(ids, unit vectors, paths, metadata rows) of every item, page by page."""
        it = self.client.query_iterator(self.name, batch_size=size,
                                        output_fields=["id", "vector", "path", "meta"])
        try:
            while page := it.next():
                yield ([r["id"] for r in page],
                       np.asarray([r["vector"] for r in page], np.float32),
                       [r["path"] for r in page], [dict(r["meta"] or {}) for r in page])
        finally:
            it.close()

    # -- search --------------------------------------------------------------------------------
    def matching(self, where, limit: int | None = None) -> list[str]:
        """Ids of items passing a filter (a UI's catalogue browser); ``limit=0`` only checks
        the filter (unknown columns and values raise)."""
        expr = self._filter(where)
        if limit == 0:
            return []
        if limit is not None:
            rows = self.client.query(self.name, filter=expr, output_fields=["id"], limit=limit)
            return [r["id"] for r in rows]
        out: list[str] = []
        it = self.client.query_iterator(self.name, batch_size=1000, filter=expr,
                                        output_fields=["id"])
        try:
            while page := it.next():
                out += [r["id"] for r in page]
        finally:
            it.close()
        return out

    def _filter(self, where) -> str:
        """The Milvus expression; a column or value this process has not seen yet makes it
        reload the manifest once (another writer may just have added it) before refusing."""
        clauses = parse_where(where)
        self._before_read()
        try:
            check_clauses(clauses, self.manifest, self._has_value)
        except ValueError:
            if not self.refresh():
                raise
            check_clauses(clauses, self.manifest, self._has_value)
        return expression(clauses, self.manifest.columns)

    def _has_value(self, column: str, folded: str) -> bool:
        i = self.manifest.columns.index(column)
        return bool(self.client.query(self.name, filter=f"c{i}_t == {literal(folded)}",
                                      output_fields=["id"], limit=1))

    def _search(self, query: np.ndarray, k: int, where: Where | None, exclude: set[str],
                vectors: bool = False) -> tuple[list[Hit], dict[str, np.ndarray]]:
        """Top k under a filter; excluded ids are over-fetched and dropped. With ``vectors``
        also the hits' embeddings (the basket's near-duplicate checks need them)."""
        expr = self._filter(where)
        fetch = min(k + len(exclude), MAX_TOPK)
        if k <= 0:
            return [], {}
        query = np.asarray(query, np.float32)
        if expr:
            # A selective filter leaves an HNSW walk too few allowed neighbours (Milvus Lite
            # then returns fewer, or other, hits than exact search): when few items match,
            # rank them exactly, as the local catalogue ranks selective filters.
            few = self.client.query(self.name, filter=expr, output_fields=["id"],
                                    limit=EXACT_FILTERED + 1)
            if len(few) <= EXACT_FILTERED:
                return self._exact(query, expr, len(few), k, exclude)
        # ef 4k (>= 128): Milvus Lite's per-segment FAISS graphs need a wider walk than
        # hnswlib's 2k for recall@10 >= 0.99 on catalogues of near-copies (bench.scale).
        ef = max(4 * fetch, 128)
        fields = ["path", "meta"] + (["vector"] if vectors else [])
        res = self.client.search(self.name, data=[query.tolist()], limit=fetch, filter=expr,
                                 output_fields=fields, anns_field="vector",
                                 search_params={"metric_type": "IP",
                                                "params": {"ef": max(ef, fetch)}})
        hits, vecs = [], {}
        for r in res[0]:
            if r["id"] in exclude:
                continue
            ent = r["entity"]
            hits.append(Hit(r["id"], float(r["distance"]), ent["path"], dict(ent["meta"] or {})))
            if vectors:
                vecs[r["id"]] = np.asarray(ent["vector"], np.float32)
        return hits[:k], vecs

    def _search_many(self, queries: np.ndarray, k: int, where: Where | None,
                     excludes: Sequence[set[str]]) -> list[list[Hit]]:
        """Many queries in one search request per ``SEARCH_BATCH`` (the neighbour table and a
        scale fit ask about hundreds to millions of items: one round trip each was most of
        their time). A selective filter is ranked exactly, query by query, as in ``_search``."""
        if k <= 0 or not len(queries):
            return [[] for _ in queries]
        expr = self._filter(where)
        if expr:
            return super()._search_many(queries, k, where, excludes)
        out: list[list[Hit]] = []
        for start in range(0, len(queries), SEARCH_BATCH):
            chunk = np.asarray(queries[start:start + SEARCH_BATCH], np.float32)
            skip = excludes[start:start + SEARCH_BATCH]
            fetch = min(k + max(len(e) for e in skip), MAX_TOPK)
            res = self.client.search(self.name, data=chunk.tolist(), limit=fetch, filter="",
                                     output_fields=["path", "meta"], anns_field="vector",
                                     search_params={"metric_type": "IP",
                                                    "params": {"ef": max(4 * fetch, 128)}})
            for found, ex in zip(res, skip):
                out.append([Hit(r["id"], float(r["distance"]), r["entity"]["path"],
                                dict(r["entity"]["meta"] or {}))
                            for r in found if r["id"] not in ex][:k])
        return out

    def _exact(self, query: np.ndarray, expr: str, matches: int, k: int, exclude: set[str]
               ) -> tuple[list[Hit], dict[str, np.ndarray]]:
        """Exact top k among the (few) rows a filter lets through."""
        if matches == 0:
            return [], {}
        rows = self.client.query(self.name, filter=expr, limit=matches,
                                 output_fields=["id", "vector", "path", "meta"])
        rows = [r for r in rows if r["id"] not in exclude]
        if not rows:
            return [], {}
        matrix = np.asarray([r["vector"] for r in rows], np.float32)
        order, scores = exact_top_k(matrix, query, k)
        hits = [Hit(rows[i]["id"], float(s), rows[i]["path"], dict(rows[i]["meta"] or {}))
                for i, s in zip(order, scores)]
        return hits, {h.id: matrix[i] for h, i in zip(hits, order)}

    def _stored(self, item_id: str) -> tuple[str, np.ndarray] | None:
        if not isinstance(item_id, str):
            return None
        rows = self._rows([item_id], ["vector"])
        return (item_id, np.asarray(rows[0]["vector"], np.float32)) if rows else None

    def _vectors_at(self, positions: np.ndarray) -> tuple[list[str], np.ndarray]:
        """The match scale's sample: the ids at these positions, paging through ids only, then
        just their vectors (the base class pages through every vector: minutes at 1M)."""
        wanted = set(int(p) for p in positions)
        picked: list[str] = []
        for pos, item_id in enumerate(self.ids):
            if pos in wanted:
                picked.append(item_id)
                if len(picked) == len(wanted):
                    break
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(picked), 1000):
            found.update((r["id"], np.asarray(r["vector"], np.float32))
                         for r in self._rows(picked[start:start + 1000], ["vector"]))
        ids = [i for i in picked if i in found]
        vecs = np.asarray([found[i] for i in ids], np.float32).reshape(len(ids), self.encoder.dim)
        return ids, vecs

    # -- live updates --------------------------------------------------------------------------
    def add_embeddings(self, ids: Sequence[str], vectors: np.ndarray,
                       paths: Sequence[str] | None = None,
                       metadata: Sequence[Mapping[str, str]] | Mapping[str, Mapping[str, str]]
                       | None = None) -> None:
        """As ``Catalog.add_embeddings``: vectors made by this model, checked and L2-normalised;
        an existing id is replaced, keeping its metadata unless a (non-empty) row is given."""
        ids, units, paths = checked_embeddings(ids, vectors, paths, self.encoder.dim)
        if isinstance(metadata, Mapping):
            given = [metadata.get(i) for i in ids]
        else:
            given = rows_for(ids, metadata) if metadata is not None else [None] * len(ids)
        old = {r["id"]: r for r in self._existing(ids)}
        rows = [dict(g) if g else dict(old.get(i, {}).get("meta") or {})
                for i, g in zip(ids, given)]
        paths = [p or old.get(i, {}).get("path", "") for i, p in zip(ids, paths)]
        self._upsert(ids, units, paths, rows)

    def update_metadata(self, ids: Sequence[str], rows: Sequence[Mapping[str, str]]) -> list[str]:
        """As ``Catalog.update_metadata``: given columns change, others stay, no re-encoding.
        Returns the ids that are not in the collection."""
        ids = [str(i) for i in ids]
        changes = rows_for(ids, rows)
        old: dict[str, dict] = {}
        for start in range(0, len(ids), 1000):
            old.update((r["id"], r) for r in self._rows(ids[start:start + 1000],
                                                        ["vector", "path", "meta"]))
        found = [(i, c) for i, c in zip(ids, changes) if i in old]
        if found:
            merged: dict[str, dict[str, str]] = {}
            for i, change in found:  # one id given twice: both changes, in order
                merged.setdefault(i, dict(old[i]["meta"] or {})).update(change)
            keys = list(merged)
            self._upsert(keys, np.asarray([old[i]["vector"] for i in keys], np.float32),
                         [old[i]["path"] for i in keys], [merged[i] for i in keys])
        return [i for i in ids if i not in old]

    def _upsert(self, ids: list[str], units: np.ndarray, paths: list[str],
                rows: list[dict[str, str]]) -> None:
        """Write whole rows; columns the collection does not filter on stay in each row's
        metadata. What the rows add to the manifest goes first, under this writer's own key
        (``Manifest``: merged by union, so concurrent writers never lose each other's)."""
        with self._lock:
            self._before_read()
            before = self._delta.to_json()
            self._delta.note(self.manifest, rows)
            if self._delta.to_json() != before:
                self.client.alter_collection_properties(
                    self._physical(), properties={self._writer: self._delta.to_json()})
            for start in range(0, len(ids), INSERT_BATCH):
                end = start + INSERT_BATCH
                self.client.upsert(self.name, [
                    row_fields(i, v, p, m, self.manifest) for i, v, p, m
                    in zip(ids[start:end], units[start:end], paths[start:end], rows[start:end])])
            self._changed()

    def _existing(self, ids: list[str]) -> list[dict]:
        out: list[dict] = []
        for start in range(0, len(ids), 1000):
            out += self._rows(ids[start:start + 1000], ["path", "meta"])
        return out

    def _physical(self) -> str:
        return self._physical_name or self.name

    def remove(self, ids: Iterable[str]) -> list[str]:
        """Remove items by id; returns the ids that were not in the catalogue."""
        ids = [str(i) for i in ids]
        present = {r["id"] for r in self._existing(ids)}
        if present:
            self.client.delete(self.name, ids=sorted(present))
            self._until_gone(sorted(present))
            self._changed()
        return [i for i in ids if i not in present]

    def _until_gone(self, ids: list[str], timeout_s: float = 10.0) -> None:
        """Wait until a delete shows: the 2.3 server's Session reads can still return a
        deleted row for a moment (its upserts show at once); one Strong read settles it."""
        if self.uri.endswith(".db"):
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            left = self.client.get(self.name, ids=ids[:1000], output_fields=["id"],
                                   consistency_level="Strong")
            if not left:
                return
            time.sleep(0.1)

    def close(self) -> None:
        super().close()
        self.client.close()
