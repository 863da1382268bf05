"""The shop's service without any web framework: which catalogue to serve, the product cards
the page shows, and the JSON answers of the HTTP API.

Why apart from ``ui/app.py``: the page (Gradio) and the plain HTTP API (``ui/http_api.py``) both
stand on this, so neither imports the other, and tests call it without starting a server.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from fai_infer.catalog.contract import BaseCatalog, Hit, NotInCatalogue, caption_text
from fai_infer.catalog.garments import Look
from fai_infer.catalog.local import Catalog
from fai_infer.catalog.display import KIND_WORDS, MAX_FILTER_VALUES
from fai_infer.model.encoder import Encoder
from fai_infer.model.parser import WORK_SIDE
from fai_infer.image.preprocess import ImageError, check_decoded_size
from fai_infer.catalog.sources import list_images, shorten
from fai_infer.errors import CatalogError
from ui.api_checks import MAX_BASKET
from ui.decode_slots import decode_slot
from ui.demo_catalog import generate as generate_demo
from ui.photos import photo_url
from ui.text import markdown_escape, readable_column, shopper_name

CACHE = Path(os.environ.get("FAI_CACHE", Path.home() / ".cache" / "fai"))
BROWSE_LIMIT = 60
MAX_K = 50  # results per request, on every entry point
# Stricter than the runtime's default for catalogue files: a shopper's upload may decode to at
# most this (a 10 MP RGB PNG; phone JPEGs count at their reduced decode size).
UPLOAD_MAX_DECODED_BYTES = 32 * 1024 * 1024


@dataclass
class AppConfig:
    catalog: str | None = None
    metadata: str | None = None
    id_column: str = "id"
    filters: str | None = None
    caption: str | None = None
    index: str | None = None
    milvus: str | None = None
    collection: str = "fai"
    model: str | None = None
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    k: int = 8
    title: str | None = None
    labels: str | None = None
    merchandiser: bool = False
    max_upload_mb: float = 10.0
    cache_dir: str = str(CACHE)


def folder_fingerprint(folder: Path, metadata: str | None) -> str:
    """Names, sizes and mtimes of the photos (and the metadata CSV): the cached index is
    rebuilt when photos are added, removed or replaced, not only when the path changes."""
    h = hashlib.sha256()
    files = list_images(folder) + ([Path(metadata)] if metadata else [])
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def load_catalog(cfg: AppConfig, log=print) -> tuple[BaseCatalog, str]:
    """The catalogue to serve and a label for it: --index, --catalog (indexed once, cached) or
    the generated demo shop."""
    if cfg.milvus:  # the scale extra's shared search service (docs/scale.md)
        from fai_infer.scale.milvus_catalog import MilvusCatalog
        return MilvusCatalog(cfg.milvus, cfg.collection, Encoder(cfg.model)), cfg.collection
    if cfg.index:  # live: items other processes add or remove show up in the next search
        return (Catalog.open(cfg.index, Encoder(cfg.model) if cfg.model else None, live=True),
                Path(cfg.index).resolve().name)
    encoder = Encoder(cfg.model)
    if cfg.catalog:
        folder, metadata, label = Path(cfg.catalog), cfg.metadata, Path(cfg.catalog).resolve().name
        if (folder / "CURRENT").is_file():  # a catalogue, not a folder of photos
            raise ValueError(f"--catalog {cfg.catalog} is a catalogue made by 'fai index': "
                             f"serve it with --index {cfg.catalog} (--catalog takes a folder "
                             f"of photos)")
    else:
        folder = generate_demo(Path(cfg.cache_dir) / "demo-shop", per_combination=2)
        metadata, label = str(folder / "metadata.csv"), "FAI demo shop"
    key = hashlib.sha256(f"{folder.resolve()}|{metadata}|{cfg.id_column}|{encoder.model_sha256}|"
                         f"{folder_fingerprint(folder, metadata)}".encode())
    cached = Path(cfg.cache_dir) / "indexes" / key.hexdigest()[:16]
    try:
        return Catalog.open(cached, encoder, live=True), label
    except CatalogError as exc:
        if (cached / "CURRENT").exists():  # a cached index there, but unusable: say why
            log(f"the cached index {cached} cannot be used ({exc}); indexing again")
        else:
            log(f"indexing {folder} (first start only) ...")
    cat = Catalog.build(folder, metadata, cfg.id_column, encoder=encoder, progress=True)
    if not len(cat):  # an empty shop page would look broken with no reason given
        first = f" (first: {cat.skipped[0].reason})" if cat.skipped else ""
        raise ValueError(f"--catalog {cfg.catalog}: no usable photos in this folder{first}")
    cat.save(cached)
    cat.live = True
    return cat, label


def bounded_k(k: float | int | str) -> int:
    """Any k a client sends -> 1..MAX_K (a million results must not be one request away)."""
    try:
        value = int(float(k))
    except (TypeError, ValueError, OverflowError):  # OverflowError: 1e309 is infinite
        raise ValueError("k must be a whole number") from None
    return max(1, min(MAX_K, value))


def check_upload(path: str, target: int) -> None:
    """Refuse an uploaded photo by its header against the upload budget before it decodes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64 * 1024 * 1024)
    except OSError:
        raise ImageError("upload", "cannot read the uploaded file") from None
    check_decoded_size(head, "upload", UPLOAD_MAX_DECODED_BYTES, target)


class ShopService:
    """What the page and the HTTP API ask of a catalogue, with no Gradio: cards (dicts with an
    item id, never a path), searches bounded to MAX_K, and JSON hits for clients. Raises
    ImageError, NotInCatalogue or ValueError with client-safe messages; each front end turns
    them into its own errors."""

    def __init__(self, cat: BaseCatalog, label: str, default_k: int = 8,
                 filters: list[str] | None = None, caption: list[str] | None = None,
                 title: str | None = None, labels: dict[str, str] | None = None):
        self.cat = cat
        self.label = label
        self.title = title or cat.shop_name() or label
        self.default_k = default_k
        self._strip: tuple[Any, dict[str, str]] | None = None
        # --filters/--caption are this page's own choice, held here and never written to the
        # catalogue ('fai display' or Catalog.set_display stores the catalogue's)
        display = cat.display(filters, caption)
        values = cat.columns()
        self.filters = {c: values.get(c, [])[:MAX_FILTER_VALUES]
                        for c in display["filters"]}
        self.caption_columns = display["caption"]
        self.price_column = next((c for c in values if c.casefold() in ("price", "price_eur",
                                                                          "price_usd")), None)
        unknown = sorted(set(labels or {}) - set(values))
        if unknown:
            raise ValueError(f"--labels: no column {unknown[0]!r} in this catalogue")
        self.labels = {c: (labels or {}).get(c) or readable_column(c) for c in values}
        kinds = [c for c in values if any(w in c.casefold() for w in KIND_WORDS)
                 and 1 < len(values[c]) <= 500]
        self.kind_column = (kinds or list(self.filters) or [None])[0]

    def header(self) -> str:
        return (f"{len(self.cat)} items · click a product, upload a photo or use the camera "
                f"to see the most similar items")

    def where(self, values: tuple) -> dict[str, list[str]]:
        return {col: list(v) for col, v in zip(self.filters, values) if v}

    def name(self, hit: Hit) -> str:
        """The card's name: the caption's first column as a shopper should read it (no prices
        or codes, ``shopper_name``), else the item's kind; the id only when there is neither."""
        text = caption_text(hit.metadata, self.caption_columns[:1])
        if not text and self.kind_column:
            text = hit.metadata.get(self.kind_column, "")
        return shopper_name(text) if text else hit.id

    @property
    def detail_columns(self) -> list[str]:
        """The line under the name: the shop's caption columns after the name, else the kind
        and a colour column when they are filters (a name alone rarely says either)."""
        if len(self.caption_columns) > 1:
            return self.caption_columns[1:]
        colour = next((c for c in self.filters if "colo" in c.casefold()), None)
        return [c for c in (self.kind_column, colour) if c and c in self.filters]

    @property
    def has_colour(self) -> bool:
        """Whether the model can weigh colour at query time (the page shows the toggle)."""
        return self.cat.parts().has_colour

    def card(self, hit: Hit, score: bool = True) -> dict:
        """What a product card shows: name, details, price and, for a result, the match in
        words (``match``) and its confidence (the bar); never a raw score or a timing."""
        details = caption_text(hit.metadata, self.detail_columns)
        out = {"id": hit.id, "name": self.name(hit), "details": details,
               "price": hit.metadata.get(self.price_column, "") if self.price_column else "",
               "score": round(float(hit.score), 4) if score else None,
               "confidence": hit.confidence if score else None,
               "match": hit.match if score else None}
        if hit.source:
            try:
                out["for"] = self.name(self.cat.get(hit.source))
            except NotInCatalogue:
                out["for"] = hit.source
        return out

    def gallery(self, hits: list[Hit], origin: str = "") -> list[tuple[str, str]]:
        """Photos by item id through ui.photos (never a server path); ``origin`` makes the
        links absolute, which is how Gradio passes a link through instead of copying a file."""
        return [(photo_url(h.id, origin), self.name(h)) for h in hits]

    def kinds(self) -> dict[str, str]:
        """item id -> its kind (the strip's column), read once per catalogue state."""
        generation = self.cat.version
        if self._strip is None or self._strip[0] != generation:
            col = self.kind_column
            kinds = {}
            for ids, _, _, rows in self.cat.iter_batches():
                kinds.update((i, r.get(col, "") if col else "") for i, r in zip(ids, rows))
            self._strip = (generation, kinds)
        return self._strip[1]

    def varied(self, ids: list[str], limit: int = BROWSE_LIMIT) -> list[str]:
        """Up to ``limit`` of ``ids`` taking turns across kinds (commonest kind first), so the
        strip opens on one or two of everything rather than the CSV's first rows."""
        kinds = self.kinds()
        groups: dict[str, list[str]] = {}
        for i in ids:
            groups.setdefault(kinds.get(i, ""), []).append(i)
        order = sorted(groups, key=lambda kind: (-len(groups[kind]), kind))
        out: list[str] = []
        for turn in range(max((len(g) for g in groups.values()), default=0)):
            out += [groups[kind][turn] for kind in order if turn < len(groups[kind])]
            if len(out) >= limit:
                break
        return out[:limit]

    def browse(self, *filters, origin: str = "") -> tuple[list, list[str]]:
        hits = []  # the same filter mask as search, a varied sample of what passes
        for item_id in self.varied(self.cat.matching(self.where(filters), limit=None)):
            try:
                hits.append(self.cat.get(item_id))
            except NotInCatalogue:  # removed by another process meanwhile
                continue
        return self.gallery(hits, origin), [h.id for h in hits]

    def search_photo(self, image: str, k: float, *filters, colour: float | None = None
                     ) -> tuple[list[dict], float]:
        """Cards for an upload (checked against the upload budget first) or a catalogue id,
        and the milliseconds it took (for logs and tests; shoppers are not shown it)."""
        t0 = time.perf_counter()
        if image not in self.cat:
            with decode_slot():  # bounded memory however many upload at once
                check_upload(image, self.upload_side())
                hits = self.cat.similar(image, k=bounded_k(k), where=self.where(filters),
                                        colour=colour)
        else:
            hits = self.cat.similar(image, k=bounded_k(k), where=self.where(filters),
                                    colour=colour)
        return [self.card(h) for h in hits], 1000 * (time.perf_counter() - t0)

    def similar_to_item(self, item_id: str, k: float, *filters, colour: float | None = None
                        ) -> tuple[list[dict], str]:
        """Cards like a catalogue item, and a line naming it (no timings for shoppers)."""
        try:
            hits = self.cat.similar(item_id, k=bounded_k(k), where=self.where(filters),
                                    colour=colour)
            name = self.name(self.cat.get(item_id))
        except NotInCatalogue:
            return [], "That item is no longer in the catalogue."
        return [self.card(h) for h in hits], f"More like **{markdown_escape(name)}**"

    def basket_view(self, basket: list[str], k: float, *filters, colour: float | None = None
                    ) -> tuple[list[dict], list[dict], str]:
        basket = [i for i in basket[:MAX_BASKET] if i in self.cat]
        if not basket:
            return [], [], "The basket is empty: add any product to it."
        hits = self.cat.similar_to_basket(basket, k=bounded_k(k), where=self.where(filters),
                                          colour=colour, kind_column=self.kind_column)
        items = [self.card(self.cat.get(i), score=False) for i in basket if i in self.cat]
        return (items, [self.card(h) for h in hits],
                f"Goes with your basket of {len(items)}")

    def upload_side(self) -> int:
        """The side an upload is checked for: photo queries decode it for the parser
        (WORK_SIDE) as well as for the encoder, so every door checks the larger."""
        return max(self.cat.encoder.spec.size, WORK_SIDE)

    def answer(self, query: str, k: Any, filters: Any, colour: Any = None) -> list[dict]:
        """One search for any API: ``query`` is a catalogue id or a checked upload's local
        path. Raises ImageError, NotInCatalogue or ValueError with a client-safe message."""
        where = parse_filters(filters)
        colour = self.cat.parts().check_weight(colour)  # before decoding an upload
        if query not in self.cat:
            with decode_slot():  # bounded memory however many upload at once
                check_upload(query, self.upload_side())
                return hits_json(self.cat.similar(query, k=bounded_k(k), where=where,
                                                  colour=colour))
        return hits_json(self.cat.similar(query, k=bounded_k(k), where=where, colour=colour))

    def look(self, upload: str, k: Any, filters: Any = None, colour: Any = None) -> Look:
        """Shop the look for an upload's local path, checked against the upload budget first
        and decoded in a decode slot like a photo search."""
        where = parse_filters(filters or {})
        colour = self.cat.parts().check_weight(colour)  # before decoding an upload
        with decode_slot():  # bounded memory however many upload at once
            check_upload(upload, self.upload_side())
            return self.cat.look(upload, k=bounded_k(k), where=where, colour=colour)

    def answer_look(self, upload: str, k: Any, filters: Any, colour: Any = None) -> dict:
        """Shop the look for a checked upload's local path: one row per garment (its region,
        kind, box on the photo, confidence and JSON hits), or no rows and a message in words."""
        look = self.look(upload, k, filters, colour)
        out = look.to_dict()
        for row, garment in zip(look.rows, out["garments"]):
            garment["hits"] = hits_json(row.hits)
        return out

    def answer_id(self, item_id: str, k: Any, filters: Any, colour: Any = None) -> list[dict]:
        """Like :meth:`answer` for a catalogue id only (a path is never taken from a client)."""
        if item_id not in self.cat:
            raise NotInCatalogue(item_id)
        return self.answer(item_id, k, filters, colour)

    def answer_basket(self, ids: Any, k: Any, filters: Any, colour: Any = None) -> list[dict]:
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise ValueError("ids must be a non-empty list of catalogue item ids")
        if len(ids) > MAX_BASKET:
            raise ValueError(f"a basket holds at most {MAX_BASKET} items")
        missing = [i for i in ids if i not in self.cat]
        if missing:
            raise NotInCatalogue(missing[0])
        return hits_json(self.cat.similar_to_basket(ids, k=bounded_k(k),
                                                    where=parse_filters(filters),
                                                    colour=colour))


def parse_filters(filters: Any) -> dict[str, str | list[str]] | list[str]:
    """A client's ``where``: a JSON object of column -> value or list of values, or a list of
    clauses such as ["colour!=Black", "price<50"] (``fai_infer.index.filters``)."""
    if isinstance(filters, list) and all(isinstance(x, str) for x in filters):
        return filters
    if not isinstance(filters, dict):
        raise ValueError("where must be a JSON object such as {\"gender\": \"Women\"} or a "
                         "list such as [\"price<50\"]")
    return {str(c): _filter_values(str(c), v) for c, v in filters.items()}


def _filter_values(column: str, value: Any) -> str | list[str]:
    """A JSON filter value as text: a string, a number (265 -> "265"), or a list of those.
    Anything else is refused by name: a value dropped without a word answered unfiltered."""
    def one(v: Any) -> str:
        if isinstance(v, str):
            return v
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return str(int(v)) if float(v).is_integer() else repr(float(v))
        raise ValueError(f"where {shorten(column)!r}: {shorten(json.dumps(v))} is not a value "
                         f"(give text, a number, or a list of them)")
    return [one(v) for v in value] if isinstance(value, list) else one(value)


def hits_json(hits: list[Hit]) -> list[dict]:
    """Hits as clients see them: the photo is a link on this server, never a path."""
    out = []
    for h in hits:
        row = {"id": h.id, "score": round(float(h.score), 6), "photo": photo_url(h.id),
               "metadata": h.metadata}
        if h.source:
            row["source"] = h.source
        row["confidence"], row["match"] = h.confidence, h.match
        if h.region:
            row["region"] = h.region
        out.append(row)
    return out


def photo_lookup(cat: BaseCatalog) -> Callable[[str], str | None]:
    """item id -> its photo's path, or None (ui.photos serves nothing else)."""
    def lookup(item_id: str) -> str | None:
        try:
            return cat.get(item_id).path
        except (KeyError, NotInCatalogue):
            return None
    return lookup
