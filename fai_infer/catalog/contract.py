"""The catalogue contract every back end answers to (local store, Milvus).

Why one class: search by photo, id or embedding, the basket merge, captions and the display
choice were written once per back end and drifted. ``BaseCatalog`` implements them once over
two primitives a back end supplies:

* ``_stored(item_id)`` -> (stored id, unit vector) or None: fetch one item's vector;
* ``_search(query, k, where, exclude, vectors)`` -> (hits, {id: vector}): top k under a filter.

A back end adds its reads (``get``, ``columns``, ``matching``, ``iter_batches``, ``info``,
``__len__``) and writes (``add_embeddings``, ``remove``); ``add`` (encode photos, then
``add_embeddings``) is shared too. The CLI, the shop page and the HTTP API are typed against
``BaseCatalog`` only, and its public members are all they use: ``version`` (moves with every
change), ``search_vectors`` (many queries at once), ``iter_batches`` (a snapshot), ``close``.
"""

from __future__ import annotations

import os
import sys
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from fai_infer.catalog.basket import (design_view, prepare_basket, round_robin,
                                      same_design as is_same_design)
from fai_infer.catalog.confidence import (KIND_VOTERS, NEIGHBOUR_RANK, TOO_FEW, MatchScale,
                                          fit_scale, kind_words, label, sample_rows)
from fai_infer.catalog.display import checked_display, kind_column
from fai_infer.catalog.garments import (AUTO, Chosen, Look, check_region, kinds_by_group,
                                      search_photo, shop_the_look)
from fai_infer.model.encoder import Encoder
from fai_infer.index.filters import Clause, Where, parse_where
from fai_infer.model.identity import check_model, model_label  # noqa: F401 (re-exported)
from fai_infer.index.hits import Hit, NotInCatalogue, Skipped
from fai_infer.index.whitening import MIN_ITEMS as WHITEN_MIN_ITEMS, Whitening
from fai_infer.model.parser import GarmentParser, default_parser_path
from fai_infer.model.parts import EmbeddingParts
from fai_infer.image.preprocess import ImageInput
from fai_infer.progress import Progress
from fai_infer.catalog.sources import looks_like_path, photos_by_stem, read_metadata, stored_path

__all__ = ["BaseCatalog", "Hit", "NotInCatalogue", "Skipped", "caption_text",
           "check_model", "checked_embeddings", "model_label", "query_vector", "rows_for"]

_PARSER_LOAD = threading.Lock()  # the default parser is loaded once per catalogue
ADD_BATCH = 4096  # photos encoded per committed change while indexing or adding
MAX_POOL = 4096  # the widest a basket item's search looks when widening skips what it finds


# -- input checks shared by every back end ----------------------------------------------------
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


def caption_text(metadata: Mapping[str, str], columns: Sequence[str]) -> str:
    """The values of ``columns`` a row has, joined: a product card's or a result line's name."""
    return " · ".join(metadata.get(c, "") for c in columns if metadata.get(c))


class _Scales:
    """One catalogue object's scales fitted in the background, {colour: (version, scale)},
    and the fits running. Why per object and not one global lock: a fit of one catalogue (a
    minute on a big service) must hold up nothing else, least of all a query."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fitted: dict[float | None, tuple[Any, MatchScale | None]] = {}
        self.running: dict[float | None, threading.Thread] = {}
        self._wrapped: tuple[Any, MatchScale | None] = (None, None)

    def wrap(self, scores: np.ndarray | None) -> MatchScale | None:
        """The stored scores as a MatchScale, the same object while they are the same."""
        if scores is None or not len(scores):
            return None
        with self.lock:
            if self._wrapped[0] is not scores:
                self._wrapped = (scores, MatchScale(np.asarray(scores, np.float64)))
            return self._wrapped[1]

    def fit_later(self, cat: "BaseCatalog", version: Any, colour: float | None) -> None:
        """Start a background fit of ``colour``'s scale unless one is running."""
        with self.lock:
            if colour in self.running:
                return
            thread = threading.Thread(target=self._fit, args=(cat, version, colour),
                                      name="fai-match-scale", daemon=True)
            self.running[colour] = thread
        thread.start()

    def _fit(self, cat: "BaseCatalog", version: Any, colour: float | None) -> None:
        try:
            scale = cat._fit_scale(colour)
            with self.lock:
                self.fitted[colour] = (version, scale)
            cat._scale_fitted(colour, scale.neighbour_scores if scale is not None
                              else np.zeros(0, np.float64))
        except Exception as exc:  # a background thread has no caller to raise to: say it
            if cat.__dict__.get("_closed"):
                return  # closed under it: nothing was lost
            print(f"fai: the match scale could not be fitted ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0] if str(exc) else ''}); hits keep the last "
                  f"scale", file=sys.stderr)
        finally:
            with self.lock:
                self.running.pop(colour, None)

    def wait(self, timeout: float | None) -> bool:
        with self.lock:
            threads = list(self.running.values())
        for thread in threads:
            thread.join(timeout)
        return not any(t.is_alive() for t in threads)


def _scales_of(cat: "BaseCatalog") -> _Scales:
    found = cat.__dict__.get("_scales")
    return found if found is not None else cat.__dict__.setdefault("_scales", _Scales())


# -- the contract ------------------------------------------------------------------------------
class BaseCatalog(ABC):
    """What every catalogue answers. Subclasses set ``encoder``, ``engine``, ``id_column``,
    ``skipped`` and ``_display`` and implement the primitives below."""

    encoder: Encoder
    engine: str = "?"
    id_column: str = "id"
    root: Any = None
    skipped: list[Skipped]
    _display: dict[str, list[str]]

    # -- primitives --------------------------------------------------------------------------
    @abstractmethod
    def _stored(self, item_id: str) -> tuple[str, np.ndarray] | None:
        """(the stored id ``item_id`` names, its unit vector), or None when it is not stored."""

    @abstractmethod
    def _search(self, query: np.ndarray, k: int, where: Where | None, exclude: set[str],
                vectors: bool = False) -> tuple[list[Hit], dict[str, np.ndarray]]:
        """Top k under an optional filter, ``exclude``d ids left out; with ``vectors`` also
        the hits' embeddings (hits whose vector is gone are dropped)."""

    # -- reads a back end supplies -----------------------------------------------------------
    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __contains__(self, item_id: object) -> bool: ...

    @abstractmethod
    def get(self, item_id: str) -> Hit: ...

    @abstractmethod
    def columns(self) -> dict[str, list[str]]:
        """Metadata columns and their values, for a UI's filters."""

    @abstractmethod
    def matching(self, where: Where, limit: int | None = None) -> list[str]:
        """Ids of items passing a filter (a UI's catalogue browser); ``limit=0`` only checks
        the filter (unknown columns and values raise)."""

    @abstractmethod
    def iter_batches(self, size: int = 10_000
                     ) -> Iterator[tuple[list[str], np.ndarray, list[str], list[dict[str, str]]]]:
        """(ids, unit vectors, paths, metadata rows) of every item, ``size`` at a time, over a
        snapshot taken when iteration starts: no lock is held between batches, so a paused
        iteration (an upload to a service) never holds up a search or a write."""

    @abstractmethod
    def info(self) -> dict: ...

    # -- writes a back end supplies ----------------------------------------------------------
    @abstractmethod
    def add_embeddings(self, ids: Sequence[str], vectors: np.ndarray,
                       paths: Sequence[str] | None = None, metadata: Any = None) -> None:
        """Add vectors made elsewhere by the same model, checked and L2-normalised; an existing
        id is replaced, keeping its metadata unless a (non-empty) row is given."""

    @abstractmethod
    def remove(self, ids: Iterable[str]) -> list[str]:
        """Remove items by id; returns the ids that were not in the catalogue."""

    @abstractmethod
    def update_metadata(self, ids: Sequence[str], rows: Sequence[Mapping[str, str]]) -> list[str]:
        """Set metadata columns of existing items without re-encoding (given columns change,
        others stay). Returns the ids that are not in the catalogue."""

    def refresh(self) -> bool:
        """Catch up with what other processes changed; whether anything did (a service that
        is always current has nothing to catch up with)."""
        return False

    # -- hooks -------------------------------------------------------------------------------
    def _before_read(self) -> None:
        """Catch up with other writers before a search (a live local catalogue refreshes)."""

    @property
    def version(self) -> Any:
        """Anything that changes whenever the catalogue's items change (after catching up with
        other writers, for a live catalogue): the key of every cache built over the items (a
        page's kinds, the merchandiser's neighbour table, a non-default weighting's scale)."""
        self._before_read()
        return self._version_now()

    def _version_now(self) -> Any:
        """``version`` without catching up first. Back ends override this with something
        cheaper and surer than the count."""
        return len(self)

    def _stored_scale(self) -> tuple[np.ndarray | None, bool]:
        """(the match scale's sorted scores as the last writer stored them, empty: too few items,
        None: none stored; whether they were fitted for exactly the items there are now)."""
        return None, False

    def _scale_fitted(self, colour: float | None, scores: np.ndarray) -> None:
        """A background fit finished (a back end that stores the scale stores it here)."""

    def _vectors_at(self, positions: np.ndarray) -> tuple[list[str], np.ndarray]:
        """(ids, unit vectors) of the items at these positions (ascending) in the catalogue's
        own order: the scale's sample. Back ends with the vectors at hand override this."""
        ids: list[str] = []
        vecs: list[np.ndarray] = []
        wanted, start = set(int(p) for p in positions), 0
        for batch_ids, batch_vecs, _, _ in self.iter_batches():
            keep = [i for i in range(len(batch_ids)) if start + i in wanted]
            ids += [batch_ids[i] for i in keep]
            vecs.append(batch_vecs[keep])
            start += len(batch_ids)
        dim = self.encoder.dim
        return ids, (np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32))

    def _search_many(self, queries: np.ndarray, k: int, where: Where | None,
                     excludes: Sequence[set[str]]) -> list[list[Hit]]:
        """Top k of each query, each with its own ids left out: ``_search`` once per query
        unless a back end can answer them together (one call to a service, one lock)."""
        return [self._search(q, k, where, ex)[0] for q, ex in zip(queries, excludes)]

    def close(self) -> None:
        """Let go of what the catalogue holds open (a service's connection); a background
        scale fit cut short by it fails without a word."""
        self.__dict__["_closed"] = True

    def __enter__(self) -> "BaseCatalog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _known_columns(self) -> list[str]:
        return list(self.columns())

    # -- the catalogue's own whitening (fai_infer/index/whitening.py) ------------------------
    def _whitening(self) -> Whitening | None:
        """The whitening the stored vectors went through; None: stored as the model made
        them (a back end without one, or a catalogue too small to fit one)."""
        return None

    def _to_stored(self, vectors: np.ndarray) -> np.ndarray:
        """Model vectors (n, dim) -> the form the index holds and searches."""
        w = self._whitening()
        return vectors if w is None else w.apply(vectors)

    def _from_stored(self, vectors: np.ndarray) -> np.ndarray:
        """Stored vectors -> the model's own (what ``vector`` returns, what
        ``similar_to_vector`` and ``add_embeddings`` take)."""
        w = self._whitening()
        return vectors if w is None else w.undo(vectors).astype(np.float32)

    def whitening_info(self) -> dict:
        """What ``info``/``fai info`` say about the whitening."""
        w = self._whitening()
        if w is not None:
            return {"whitening": w.describe()}
        if not self.encoder.info.catalogue_whitening:
            note = "none: the model asks for none (its garment part was trained for search)"
        elif len(self) < WHITEN_MIN_ITEMS:
            note = f"none: fewer than {WHITEN_MIN_ITEMS} items when last fitted"
        else:
            note = "none: not fitted (fai rewhiten fits one)"
        return {"whitening": None, "whitening_note": note}

    def _default_display(self) -> tuple[list[str], list[str]]:
        """(filters, caption) when none were chosen."""
        return [], []

    # -- implemented once --------------------------------------------------------------------
    def vector(self, item_id: str) -> np.ndarray:
        """The stored embedding of a catalogue item."""
        found = self._stored(item_id)
        if found is None:
            raise NotInCatalogue(item_id)
        return self._from_stored(found[1][None])[0].copy()

    def parts(self) -> EmbeddingParts:
        """The model's garment / colour layout (one whole part for a model without colour)."""
        return self.encoder.info.parts or EmbeddingParts.whole(self.encoder.dim)

    def _colour(self, colour: float | None) -> float | None:
        """A checked colour weight, None for the model's default (one key per weighting)."""
        parts = self.parts()
        value = parts.check_weight(colour)
        return None if value is None or value == parts.default_colour else value

    def match_scale(self, colour: float | None = None) -> MatchScale | None:
        """This catalogue's scale of nearest-neighbour scores under a colour weight; None for a
        catalogue too small to have one. Never fitted here: the default weighting's scale is
        stored by whoever changed the catalogue; a weighting without a current scale gets the
        last one known (provisional) while a background thread fits it."""
        colour = self._colour(colour)
        version = self._version_now()
        scales = _scales_of(self)
        scores, current = self._stored_scale()
        stored = scales.wrap(scores)
        if colour is None and current:
            return stored
        fitted = scales.fitted.get(colour)
        if fitted is None or fitted[0] != version:
            scales.fit_later(self, version, colour)
        if fitted is not None:
            return fitted[1]
        return stored if colour is None or stored is not None else None

    def _refit_later(self, colour: float | None) -> None:
        """Fit ``colour``'s scale in the background (a back end that stores the scale calls
        this after its own writes; ``_scale_fitted`` then stores it)."""
        _scales_of(self).fit_later(self, self._version_now(), self._colour(colour))

    def wait_for_scales(self, timeout: float | None = None) -> bool:
        """Wait for background scale fits to finish (tools and tests; queries never wait).
        Whether none is still running."""
        return _scales_of(self).wait(timeout)

    def _fit_scale(self, colour: float | None) -> MatchScale | None:
        """Fit a scale over the catalogue as it is now (a background thread's work)."""
        ids, vectors = self._vectors_at(sample_rows(len(self)))
        parts = self.parts()

        def nearest_other(queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
            out = np.full(len(queries), -np.inf)
            found = self._search_many(parts.reweigh(queries, colour), NEIGHBOUR_RANK, None,
                                      [{i} for i in ids])
            for n, hits in enumerate(found):
                if hits:
                    out[n] = hits[min(NEIGHBOUR_RANK, len(hits)) - 1].score
            return out

        return fit_scale(vectors, np.arange(len(ids)), nearest_other)

    def _rated(self, hits: list[Hit], colour: float | None) -> list[Hit]:
        """Hits with their confidence and words on the catalogue's scale (same weighting)."""
        scale = self.match_scale(colour) if hits else None
        if scale is None:
            for hit in hits:
                hit.match = TOO_FEW
            return hits
        for hit, value in zip(hits, scale.confidence([h.score for h in hits])):
            hit.confidence = round(float(value), 4)
            hit.match = label(hit.confidence)
        return hits

    def _vector(self, item: ImageInput | str) -> tuple[np.ndarray, str | None]:
        """A catalogue id's stored embedding, else the photo's; a string that is neither an id
        nor looks like a path is "not in the catalogue", never a file search."""
        if isinstance(item, str):
            found = self._stored(item)
            if found is not None:
                return found[1], found[0]
            if not looks_like_path(item):
                raise NotInCatalogue(item)
        return self._to_stored(self.encoder.embed([item]))[0], None

    def garment_parser(self) -> GarmentParser | None:
        """The garment parser photo queries use: one set on the catalogue (``cat.parser =
        GarmentParser(path)``), else the default model (loaded once), else None when no
        parser file is installed (photo queries then embed the whole photo, as before)."""
        if "parser" not in self.__dict__:
            with _PARSER_LOAD:  # a server's first photo queries arrive together: load once
                if "parser" not in self.__dict__:
                    try:
                        self.__dict__["parser"] = GarmentParser(default_parser_path())
                    except FileNotFoundError:
                        self.__dict__["parser"] = None
        return self.__dict__["parser"]

    @property
    def parser(self) -> GarmentParser | None:
        return self.garment_parser()

    @parser.setter
    def parser(self, value: GarmentParser | None) -> None:
        self.__dict__["parser"] = value

    def similar(self, image_or_id: ImageInput | str, k: int = 10,
                where: Where | None = None, colour: float | None = None,
                region: str = AUTO) -> list[Hit]:
        """The k catalogue items most like a photo (path, bytes, array) or a catalogue id (which
        is itself left out). ``where`` filters on metadata (``fai_infer.index.filters``: equality,
        ``!=``, ranges) and still gives k hits if k items match. ``colour`` (0..1, None: the
        model's default) weighs the colour part against the garment part (``parts.py``): 0 is
        "this design in any colour". Each hit carries its confidence and words.

        ``region`` (photos only): ``auto`` embeds, for a photo of a person, its largest garment
        or the whole photo, whichever's best match scores higher (``fai_infer/catalog/
        garments.py``), and a photo without a person (a packshot) whole;
        ``whole`` always the whole frame; a garment group (``upper``, ``shoes``...) that
        garment when the photo shows it. Each hit's ``region`` says what was embedded."""
        colour = self._colour(colour)
        parser = self.garment_parser() if region != "whole" else None
        region = check_region(region, parser)
        self._before_read()
        own = None
        if isinstance(image_or_id, str):
            found = self._stored(image_or_id)
            if found is not None:
                own = found[0]
            elif not looks_like_path(image_or_id):
                raise NotInCatalogue(image_or_id)
        column = kind_column(self._known_columns())
        if own is not None:
            query = self.parts().reweigh(found[1][None], colour)[0]
            hits = self._rated(self._search(query, k, where, {own})[0], colour)
            own_kind = self.get(own).metadata.get(column) if column else None
            kind_words(hits, column, own_kind or None)
            return hits
        return self._photo_query(image_or_id, k, where, colour, region, parser).hits

    def photo_query(self, image: ImageInput, k: int = 10, where: Where | None = None,
                    colour: float | None = None, region: str = AUTO) -> Chosen:
        """A photo search as :meth:`similar` makes it, with what it embedded: ``region``, the
        hits and ``vector``, the model vector they answer. A page keeps the vector to ask
        again with other filters or weights (:meth:`similar_to_vector`) without the photo."""
        if isinstance(image, str) and not looks_like_path(image):
            raise NotInCatalogue(image)  # a name, never a file search (as in similar)
        colour = self._colour(colour)
        parser = self.garment_parser() if region != "whole" else None
        region = check_region(region, parser)
        self._before_read()
        return self._photo_query(image, k, where, colour, region, parser)

    def _photo_query(self, image: ImageInput, k: int, where: Where | None, colour: float,
                     region: str, parser: GarmentParser | None) -> Chosen:
        # The photo's kind is voted by its top KIND_VOTERS hits whatever k is, so a hit's
        # words never change with the page size.
        chosen = search_photo(image, region, max(k, KIND_VOTERS), self.encoder, parser,
                              self._photo_searcher(where, colour))
        for hit in chosen.hits:
            hit.region = chosen.region
        kind_words(self._rated(chosen.hits, colour), kind_column(self._known_columns()), None)
        chosen.hits = chosen.hits[:k]
        return chosen

    def _photo_searcher(self, where: Where | None, colour: float | None):
        """Model vectors of a photo's views -> hits: whitened as the catalogue stores its
        items, weighed by ``colour``."""
        parts = self.parts()
        return lambda vector, k: self._search(
            parts.reweigh(self._to_stored(vector[None]), colour)[0], k, where, set())[0]

    def _group_searchers(self, column: str | None, where: Where | None, colour: float | None):
        """group -> a searcher over the catalogue's kinds of that group (``garments.
        kinds_by_group`` on its kind column's values); the plain photo searcher for a group
        with no such kind, without a kind column, or when ``where`` already names the column
        (the caller's choice of kinds stands)."""
        plain = self._photo_searcher(where, colour)
        if column is None or any(c.column == column for c in parse_where(where)):
            return lambda group: plain
        kinds = kinds_by_group(self.columns().get(column, []))
        clauses = parse_where(where)
        return lambda group: (self._photo_searcher(
            clauses + [Clause(column, "in", tuple(v.casefold() for v in kinds[group]))], colour)
            if group in kinds else plain)

    def look(self, photo: ImageInput, k: int = 6, where: Where | None = None,
             colour: float | None = None) -> Look:
        """Shop the look: one row per garment the parser finds in ``photo`` (region, kind, box,
        confidence, its k matches). A photo with no garment gets ``message`` ("no garment
        found in this photo") and no rows; a catalogue without a parser model is an error
        that says so."""
        colour = self._colour(colour)
        parser = self.garment_parser()
        if parser is None:
            raise ValueError("shop the look needs a garment parser model and none is "
                             "installed (FAI_PARSER names one)")
        self._before_read()
        column = kind_column(self._known_columns())
        look = shop_the_look(photo, max(k, KIND_VOTERS), self.encoder, parser,
                             self._photo_searcher(where, colour),
                             self._group_searchers(column, where, colour))
        for row in look.rows:  # words from KIND_VOTERS hits whatever k (see _photo_query)
            kind_words(self._rated(row.hits, colour), column, None)
            row.hits = row.hits[:k]
        return look

    def similar_to_vector(self, vector: np.ndarray, k: int = 10, where: Where | None = None,
                          exclude: Iterable[str] = (), colour: float | None = None) -> list[Hit]:
        """The k items nearest an embedding made elsewhere by the same model (e.g. cached by a
        web back end); it is L2-normalised here, so any positive scale works. ``colour`` as in
        :meth:`similar`."""
        colour = self._colour(colour)
        self._before_read()
        query = self._to_stored(query_vector(vector, self.encoder.dim)[None])
        query = self.parts().reweigh(query, colour)[0]
        hits = self._rated(self._search(query, max(k, KIND_VOTERS), where, set(exclude))[0],
                           colour)
        kind_words(hits, kind_column(self._known_columns()))  # voted whatever k is
        return hits[:k]

    def search_vectors(self, vectors: Any, k: int = 10, where: Where | None = None,
                       exclude: Sequence[Iterable[str]] | None = None) -> list[list[Hit]]:
        """The k items nearest each of many embeddings (rows of the model's own vectors, as
        ``vector`` and ``iter_batches`` give them; L2-normalised and put in the catalogue's
        stored space here), answered together (one lock, one request to a service): what a
        tool that asks about every item (``merch.neighbours``) calls. ``exclude[i]``: ids left
        out of row i's hits. Hits carry confidence and words on the default weighting's scale."""
        queries = _unit_rows(vectors, self.encoder.dim)
        excludes = [set() for _ in queries] if exclude is None else [set(e) for e in exclude]
        if len(excludes) != len(queries):
            raise ValueError(f"{len(excludes)} exclude lists for {len(queries)} vectors")
        self._before_read()
        if len(queries):
            queries = self._to_stored(queries)
        found = self._search_many(queries, k, where, excludes) if k > 0 and len(queries) \
            else [[] for _ in queries]
        return [self._rated(hits, None) for hits in found]

    def similar_to_basket(self, items: Sequence[ImageInput | str], k: int = 10,
                          where: Where | None = None, mode: str = "cover",
                          diversity: float = 0.3, colour: float | None = None,
                          design_column: str | None = None, kind_column: str | None = None,
                          same_design: bool = False) -> list[Hit]:
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
        normalised mean embedding), the earlier behaviour. ``colour`` as in :meth:`similar`:
        it weighs every basket item's query.

        Widening, so a basket does not come back as more of itself: another colourway of a
        basket item's design is never suggested unless ``same_design`` (the design is the
        shop's ``design_column``, e.g. product_code; for basket items without one, an item
        within ``basket.DESIGN_THRESHOLD`` of it), and with a ``kind_column`` (e.g.
        product_type_name) the picks spread over kinds, the basket's own kinds counting as
        picked, as strongly as ``diversity`` says."""
        colour = self._colour(colour)
        parts = self.parts()
        self._before_read()
        basket, names, exclude, photos = prepare_basket(items, mode, diversity, self._vector)
        known = [c for c in (design_column, kind_column) if c]
        missing = [c for c in known if c not in self._known_columns()]
        if missing:
            raise ValueError(f"no metadata column {missing[0]!r} in this catalogue")
        rows = {i: self.get(i).metadata for i in exclude}
        designs = {rows[i].get(design_column, "") for i in exclude} - {""} if design_column \
            else set()
        unknown = design_view(np.array(
            [v for v, name in zip(basket, names)
             if not (design_column and rows.get(name, {}).get(design_column))],
            np.float32).reshape(-1, basket.shape[1]), parts)
        kinds = [rows[n].get(kind_column, "") for n in names if n in rows] if kind_column \
            else []

        def usable(hits: list[Hit], vecs: dict[str, np.ndarray]) -> list[Hit]:
            # A basket photo that is not a catalogue id still must not come back as its twin.
            return [h for h in hits if h.id in vecs
                    and not any(float(vecs[h.id] @ v) > 0.9999 for v in photos)
                    and (same_design or not is_same_design(
                        h, design_view(vecs[h.id][None], parts)[0], designs, design_column,
                        unknown))]

        wide = 4 if kind_column or not same_design else 2  # room for what widening skips
        pool = min(len(self), wide * k + 10 + len(exclude))

        def search_usable(query: np.ndarray) -> tuple[list[Hit], dict[str, np.ndarray]]:
            # Widening can skip a whole pool (a shop of near-identical photos): look wider,
            # four times as far each round, until k are usable or there is nothing more.
            size = pool
            while True:
                hits, vecs = self._search(query, size, where, exclude, vectors=True)
                good = usable(hits, vecs)
                if len(good) >= k or len(hits) < size or size >= min(len(self), MAX_POOL):
                    return good, vecs
                size = min(len(self), MAX_POOL, 4 * size)

        if mode == "centroid":
            query = basket.mean(axis=0)
            query /= max(float(np.linalg.norm(query)), 1e-12)
            query = parts.reweigh(query[None], colour)[0]
            hits, vecs = search_usable(query)
            hits = hits[:k]
            for h in hits:
                h.source = names[int(np.argmax(basket @ vecs[h.id]))]
            return self._rated(hits, colour)
        lists: list[list[Hit]] = []
        found: dict[str, np.ndarray] = {}
        for query in parts.reweigh(basket, colour):
            hits, vecs = search_usable(query)
            lists.append(hits)
            found.update(vecs)
        return self._rated(round_robin(lists, found, names, k, float(diversity),
                                       basket.shape[1], kind_column, kinds), colour)

    def set_display(self, filters: Sequence[str] | None = None,
                    caption: Sequence[str] | None = None,
                    known: Sequence[str] | None = None) -> None:
        """Choose the catalogue's own filter and caption columns (``None`` keeps the current
        choice or the default) and store them with it: a stored local catalogue commits a new
        base at once, a service stores them with its collection, an in-memory one with its
        next ``save``. Unknown columns and more than MAX_FILTERS filters are refused by name.
        ``known``: the columns there are (default: the catalogue's). A page that wants other
        columns for itself passes them to ``display(filters, caption)`` instead."""
        known = self._known_columns() if known is None else list(known)
        chosen = checked_display(filters, caption, known)
        self._store_display(chosen)

    def _store_display(self, chosen: dict[str, list[str]]) -> None:
        """Make ``chosen`` part of the catalogue (a back end persists it)."""
        self._display.update(chosen)

    def shop_name(self) -> str:
        """The shop's name set at index time (``fai index --name``), else ""."""
        return (self._display.get("name") or [""])[0]

    def set_shop_name(self, name: str) -> None:
        """Name the shop (a page's default title); stored as ``set_display`` stores."""
        name = " ".join(str(name).split())
        if not name or len(name) > 80:
            raise ValueError("a shop name is 1 to 80 characters")
        self._store_display({"name": [name]})

    def display(self, filters: Sequence[str] | None = None,
                caption: Sequence[str] | None = None) -> dict[str, list[str]]:
        """{'filters': [...], 'caption': [...]}: the stored choice, else the defaults, with
        ``filters``/``caption`` (checked like ``set_display``) in their place for this call
        only: a page's own choice, never stored."""
        default_filters, default_caption = self._default_display()
        out = {"filters": list(self._display.get("filters", default_filters)),
               "caption": list(self._display.get("caption", default_caption))}
        if filters is not None or caption is not None:
            out.update(checked_display(filters, caption, self._known_columns()))
        return out

    def caption(self, hit: Hit, columns: Sequence[str] | None = None) -> str:
        """The caption columns' values of a hit, joined (the id when it has none)."""
        cols = self.display()["caption"] if columns is None else columns
        return caption_text(hit.metadata, cols) or hit.id

    def add(self, paths: Iterable[str | os.PathLike], metadata: Any = None,
            id_column: str = "id", progress: bool = False) -> list[Skipped]:
        """Encode and add photos (id = file stem; an existing id's photo is replaced and keeps
        its metadata unless new metadata is given). Two files with one stem are refused by
        name. Returns what was skipped."""
        paths = photos_by_stem(paths)
        return self._encode_and_add(paths, [p.stem for p in paths],
                                    read_metadata(metadata, id_column), 32, 2, progress)

    def _encode_and_add(self, paths: list[Path], ids: list[str],
                        meta: dict[str, dict[str, str]], batch_size: int, decode_threads: int,
                        progress: bool) -> list[Skipped]:
        """Encode outside every lock (seconds to minutes), add one batch per ~4k photos."""
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
            if len(pending_ids) >= ADD_BATCH:
                flush()
            if bar is not None:
                bar.update(len(positions) + len(bad))
        flush()
        if bar is not None:
            bar.close()
        self.skipped += skipped
        return skipped
