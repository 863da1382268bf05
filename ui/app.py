"""python -m ui.app: the FAI shop demo (Gradio), offline and closed by default.

With no arguments it renders a demo catalogue of its own (garments, shoes, bags), indexes it
with the shipped model once (cached), and serves it on 127.0.0.1:7860. ``--catalog DIR`` or
``--index CATALOG`` point it at a real shop. Only catalogue images and uploads are served.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Forced, not defaults: the demo never talks to anyone (docs/security.md, tests/test_offline.py).
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"

import gradio as gr  # noqa: E402
from gradio.utils import get_upload_folder as gradio_upload_folder  # noqa: E402

from starlette.middleware import Middleware  # noqa: E402

from fai_infer import Catalog, CatalogError, Encoder, Hit, ImageError  # noqa: E402
from fai_infer.catalog import NotInCatalogue  # noqa: E402
from fai_infer.display import MAX_FILTER_VALUES  # noqa: E402
from fai_infer.sources import list_images  # noqa: E402
from fai_infer.cli import OneLineParser, k_value  # noqa: E402
from fai_infer.preprocess import check_decoded_size  # noqa: E402
from ui.demo_catalog import generate as generate_demo  # noqa: E402
from ui.api_checks import MAX_BASKET  # noqa: E402
from ui.decode_slots import decode_slot  # noqa: E402
from ui.http_api import HttpApi, log_failure  # noqa: E402
from ui.guard import RequestGuard, allowed_hosts, bind_address, disable_gradio_cors  # noqa: E402
from ui.photos import PhotoRoute, photo_url  # noqa: E402
from ui.text import markdown_escape  # noqa: E402

CACHE = Path(os.environ.get("FAI_CACHE", Path.home() / ".cache" / "fai"))
BROWSE_LIMIT = 60
MAX_K = 50  # results per request, on every entry point
UPLOAD_CACHE_SECONDS = 600  # uploads are deleted this long after arriving, and at shutdown
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


def load_catalog(cfg: AppConfig, log=print) -> tuple[Catalog, str]:
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
    else:
        folder = generate_demo(Path(cfg.cache_dir) / "demo-shop", per_combination=2)
        metadata, label = str(folder / "metadata.csv"), "FAI demo shop"
    key = hashlib.sha256(f"{folder.resolve()}|{metadata}|{cfg.id_column}|{encoder.model_sha256}|"
                         f"{folder_fingerprint(folder, metadata)}".encode())
    cached = Path(cfg.cache_dir) / "indexes" / key.hexdigest()[:16]
    try:
        return Catalog.open(cached, encoder, live=True), label
    except CatalogError:
        pass
    log(f"indexing {folder} (first start only) ...")
    cat = Catalog.build(folder, metadata, cfg.id_column, encoder=encoder, progress=True)
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


def k_arg(text: str) -> int:
    """``-k`` on the command line: 1..MAX_K, else one usage line."""
    return k_value(text, MAX_K)


def request_origin(request: gr.Request | None) -> str:
    """'http://host:port' as the browser reached us (Host is checked by ui.guard unless the
    operator opened the server), so photo links work locally, on a LAN and through --share."""
    if request is None:
        return ""
    headers = request.headers
    host = (headers.get("x-forwarded-host") or headers.get("host") or "").split(",")[0].strip()
    proto = "https" if headers.get("x-forwarded-proto", "").startswith("https") else "http"
    return f"{proto}://{host}" if host else ""


def uploaded_path(value: dict | str, cat: Catalog) -> str:
    """An API file argument -> a local path, only if Gradio itself stored it as an upload (a
    client must never make the server read arbitrary files); a catalogue id passes as is."""
    if isinstance(value, str) and value in cat:
        return value
    if isinstance(value, str):
        raise ValueError("expected an uploaded image (gradio_client.handle_file) or an item id "
                         "in the catalogue")
    path = value.get("path") if isinstance(value, dict) else value
    if not isinstance(path, str) or not path:
        raise ValueError("expected an uploaded image (gradio_client.handle_file) or an item id")
    uploads = Path(gradio_upload_folder()).resolve()
    if not Path(path).resolve().is_relative_to(uploads):
        raise ValueError("only uploaded files can be searched with")
    return path


def check_upload(path: str, target: int) -> None:
    """Refuse an uploaded photo by its header against the upload budget before it decodes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64 * 1024 * 1024)
    except OSError:
        raise ImageError("upload", "cannot read the uploaded file") from None
    check_decoded_size(head, "upload", UPLOAD_MAX_DECODED_BYTES, target)


CSS = """
.fai-grid {flex-wrap: wrap !important; gap: 14px !important}
.fai-card {flex: 0 0 190px !important; min-width: 190px !important; max-width: 190px;
           border: 1px solid #e5e7eb; border-radius: 10px; padding: 8px !important;
           background: #fff; box-shadow: 0 1px 3px rgba(0,0,0,.06)}
.fai-card img {width: 100%; height: 210px; object-fit: contain; background: #fafafa;
               border-radius: 6px}
.fai-name {font-weight: 600; font-size: 14px; margin-top: 6px; line-height: 1.25;
           display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical;
           overflow: hidden}
.fai-meta {color: #6b7280; font-size: 12px; margin-top: 2px}
.fai-price {font-weight: 600; color: #111827; font-size: 13px; margin-top: 2px}
.fai-bar {height: 6px; background: #e5e7eb; border-radius: 3px; margin-top: 6px}
.fai-bar span {display: block; height: 6px; background: #10b981; border-radius: 3px}
.fai-score {font-size: 11px; color: #374151; margin-top: 2px}
.fai-for {font-size: 11px; color: #7c3aed; margin-top: 2px}
"""


def card_html(card: dict) -> str:
    """One product card: photo (by item id), name, caption columns and a similarity bar. Every
    piece of text is escaped; the photo link is this server's /fai/photo/<id>, never a path."""
    esc = html.escape
    parts = [f'<img src="{esc(photo_url(card["id"]))}" alt="{esc(card["name"])}" '
             f'loading="lazy">', f'<div class="fai-name">{esc(card["name"])}</div>']
    if card.get("price"):
        parts.append(f'<div class="fai-price">{esc(card["price"])}</div>')
    if card.get("details"):
        parts.append(f'<div class="fai-meta">{esc(card["details"])}</div>')
    if card.get("score") is not None:
        pct = max(0, min(100, round(100 * card["score"])))
        parts.append(f'<div class="fai-bar"><span style="width:{pct}%"></span></div>'
                     f'<div class="fai-score">{pct}% similar</div>')
    if card.get("for"):
        parts.append(f'<div class="fai-for">goes with {esc(card["for"])}</div>')
    return "".join(parts)


class ShopDemo:
    """Handlers behind the page; kept apart from layout so tests can call them directly.
    Results travel as lists of cards (dicts with an item id, never a path) in gr.State."""

    def __init__(self, cat: Catalog, label: str, default_k: int = 8,
                 filters: list[str] | None = None, caption: list[str] | None = None):
        self.cat = cat
        self.label = label
        self.default_k = default_k
        if filters is not None or caption is not None:
            cat.set_display(filters, caption)  # for this page only; the catalogue is not saved
        display = cat.display()
        values = cat.columns()
        self.filters = {c: values.get(c, [])[:MAX_FILTER_VALUES]
                        for c in display["filters"]}
        self.caption_columns = display["caption"]
        self.price_column = next((c for c in values if c.casefold() in ("price", "price_eur",
                                                                          "price_usd")), None)

    def header(self) -> str:
        return (f"**{markdown_escape(self.label)}** · {len(self.cat)} items · click a product, "
                f"upload a photo or use the camera to see the most similar items")

    def where(self, values: tuple) -> dict[str, list[str]]:
        return {col: list(v) for col, v in zip(self.filters, values) if v}

    def name(self, hit: Hit) -> str:
        cols = self.caption_columns[:1]
        return self.cat.caption(hit, cols) if cols else hit.id

    def card(self, hit: Hit, score: bool = True) -> dict:
        details = " · ".join(hit.metadata.get(c, "") for c in self.caption_columns[1:]
                             if hit.metadata.get(c))
        out = {"id": hit.id, "name": self.name(hit), "details": details,
               "price": hit.metadata.get(self.price_column, "") if self.price_column else "",
               "score": round(float(hit.score), 4) if score else None}
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

    def browse(self, *filters, origin: str = "") -> tuple[list, list[str]]:
        hits = []  # the same filter mask as search, first BROWSE_LIMIT items
        for item_id in self.cat.matching(self.where(filters), limit=BROWSE_LIMIT):
            try:
                hits.append(self.cat.get(item_id))
            except NotInCatalogue:  # removed by another process meanwhile
                continue
        return self.gallery(hits, origin), [h.id for h in hits]

    def search(self, image: str | None, k: float, *filters) -> tuple[list[dict], str]:
        """Results and a status line. A bad upload clears the results and says why in the
        status line (a gr.Error put a red "Error" badge over the page and kept old results)."""
        if not image:
            return [], "Upload a photo, take one with the camera, or click a catalogue item."
        t0 = time.perf_counter()
        try:
            if image not in self.cat:
                with decode_slot():  # bounded memory however many upload at once
                    check_upload(image, self.cat.encoder.spec.size)
                    hits = self.cat.similar(image, k=bounded_k(k), where=self.where(filters))
            else:
                hits = self.cat.similar(image, k=bounded_k(k), where=self.where(filters))
        except ImageError as exc:
            return [], f"Cannot use this photo: {markdown_escape(exc.reason)}"
        except ValueError:
            return [], "Cannot use this input: upload a photo or pick a catalogue item."
        ms = 1000 * (time.perf_counter() - t0)
        return [self.card(h) for h in hits], f"Most similar to your photo: {ms:.0f} ms"

    def similar_to_item(self, item_id: str, k: float, *filters) -> tuple[list[dict], str]:
        t0 = time.perf_counter()
        try:
            hits = self.cat.similar(item_id, k=bounded_k(k), where=self.where(filters))
            name = self.name(self.cat.get(item_id))
        except NotInCatalogue:
            return [], "That item is no longer in the catalogue."
        ms = 1000 * (time.perf_counter() - t0)
        return ([self.card(h) for h in hits],
                f"More like {markdown_escape(name)}: {ms:.0f} ms")

    def basket_view(self, basket: list[str], k: float, *filters
                    ) -> tuple[list[dict], list[dict], str]:
        basket = [i for i in basket[:MAX_BASKET] if i in self.cat]
        if not basket:
            return [], [], "The basket is empty: add any product to it."
        t0 = time.perf_counter()
        hits = self.cat.similar_to_basket(basket, k=bounded_k(k), where=self.where(filters))
        ms = 1000 * (time.perf_counter() - t0)
        items = [self.card(self.cat.get(i), score=False) for i in basket if i in self.cat]
        return (items, [self.card(h) for h in hits],
                f"Goes with your basket of {len(items)}: {ms:.0f} ms")

    def answer(self, query: str, k: Any, filters: Any) -> list[dict]:
        """One search for any API: ``query`` is a catalogue id or a checked upload's local
        path. Raises ImageError, NotInCatalogue or ValueError with a client-safe message."""
        where = parse_filters(filters)
        if query not in self.cat:
            with decode_slot():  # bounded memory however many upload at once
                check_upload(query, self.cat.encoder.spec.size)
                return hits_json(self.cat.similar(query, k=bounded_k(k), where=where))
        return hits_json(self.cat.similar(query, k=bounded_k(k), where=where))

    def answer_id(self, item_id: str, k: Any, filters: Any) -> list[dict]:
        """Like :meth:`answer` for a catalogue id only (a path is never taken from a client)."""
        if item_id not in self.cat:
            raise NotInCatalogue(item_id)
        return self.answer(item_id, k, filters)

    def answer_basket(self, ids: Any, k: Any, filters: Any) -> list[dict]:
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise ValueError("ids must be a non-empty list of catalogue item ids")
        if len(ids) > MAX_BASKET:
            raise ValueError(f"a basket holds at most {MAX_BASKET} items")
        missing = [i for i in ids if i not in self.cat]
        if missing:
            raise NotInCatalogue(missing[0])
        return hits_json(self.cat.similar_to_basket(ids, k=bounded_k(k),
                                                    where=parse_filters(filters)))

    def api_similar(self, image: dict, k: int = 10, where: str = "{}") -> str:
        """API: top-k catalogue items for an uploaded photo (gradio_client.handle_file) or a
        catalogue id: a JSON list of hits (id, score, photo, metadata); ``photo`` is the item's
        image under this server (never a server path). ``where`` is a JSON object such as
        {"gender": "Women"}; k is capped at MAX_K. Errors name the problem, never a path."""
        try:
            hits = self.answer(uploaded_path(image, self.cat), k, json.loads(where or "{}"))
        except ImageError as exc:
            raise gr.Error(f"cannot use this image: {exc.reason}") from None
        except NotInCatalogue:
            raise gr.Error("bad request: that item is not in the catalogue") from None
        except ValueError as exc:
            raise gr.Error(f"bad request: {exc}") from None
        except Exception as exc:  # never pass internals (paths, stack details) to a client
            log_failure("api_similar", exc)  # ... but the shop's operator sees why
            raise gr.Error("the search failed on the server") from None
        return json.dumps(hits, ensure_ascii=False)


def parse_filters(filters: Any) -> dict[str, str | list[str]] | list[str]:
    """A client's ``where``: a JSON object of column -> value or list of values, or a list of
    clauses such as ["colour!=Black", "price<50"] (``fai_infer.filters``)."""
    if isinstance(filters, list) and all(isinstance(x, str) for x in filters):
        return filters
    if not isinstance(filters, dict):
        raise ValueError("where must be a JSON object such as {\"gender\": \"Women\"} or a "
                         "list such as [\"price<50\"]")
    return {str(c): v for c, v in filters.items()
            if isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))}


def hits_json(hits: list[Hit]) -> list[dict]:
    """Hits as clients see them: the photo is a link on this server, never a path."""
    out = []
    for h in hits:
        row = {"id": h.id, "score": round(float(h.score), 6), "photo": photo_url(h.id),
               "metadata": h.metadata}
        if h.source:
            row["source"] = h.source
        out.append(row)
    return out


def photo_input() -> gr.Image:
    """The upload/camera box. ``image_mode=None`` makes Gradio hand over the uploaded file as
    it arrived: with a mode set it re-encodes some uploads itself (turning them by EXIF, dropping
    alpha onto black) and passes others through, so one photo could embed two ways. Every
    upload is decoded by fai_infer.preprocess, exactly as the runtime decodes it."""
    return gr.Image(sources=["upload", "webcam"], type="filepath", image_mode=None,
                    label="Photo (upload or camera)", elem_id="fai-photo")


def build_app(demo: ShopDemo) -> gr.Blocks:
    # delete_cache: uploads older than UPLOAD_CACHE_SECONDS are removed while running, and all
    # of them at shutdown (a kiosk must not keep shoppers' photos).
    with gr.Blocks(title="FAI — similar fashion items", analytics_enabled=False,
                   delete_cache=(UPLOAD_CACHE_SECONDS, UPLOAD_CACHE_SECONDS)) as app:
        gr.HTML(f"<style>{CSS}</style>", padding=False)
        gr.Markdown("## Find similar items")
        gr.Markdown(demo.header(), elem_id="fai-header")
        results = gr.State([])  # cards: item ids and what is shown, never parsed from text
        visible_ids = gr.State([])
        basket = gr.State([])
        basket_cards = gr.State([])
        goes_with = gr.State([])
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                photo = photo_input()
                k = gr.Slider(1, 30, value=demo.default_k, step=1, label="How many results")
                filters = [gr.Dropdown(vals, multiselect=True, label=col, value=[])
                           for col, vals in demo.filters.items()]
                search_btn = gr.Button("Find similar", variant="primary", elem_id="fai-search")
                status = gr.Markdown("", elem_id="fai-status")
            with gr.Column(scale=3):
                with gr.Column(elem_id="fai-results"):
                    @gr.render(inputs=[results])
                    def show_results(cards: list[dict]):
                        if not cards:
                            gr.Markdown("Results appear here.")
                            return
                        with gr.Row(elem_classes="fai-grid"):
                            for card in cards:
                                product_card(card)
                browse = gr.Gallery(label="Catalogue: click any item to see similar ones",
                                    columns=6, height=330, elem_id="fai-browse",
                                    allow_preview=False)
        gr.Markdown("### Your basket")
        with gr.Column(elem_id="fai-basket"):
            @gr.render(inputs=[basket_cards])
            def show_basket(cards: list[dict]):
                if not cards:
                    gr.Markdown("Empty: add any product with 'Add to basket'.")
                    return
                with gr.Row(elem_classes="fai-grid"):
                    for card in cards:
                        with gr.Column(elem_classes="fai-card"):
                            gr.HTML(card_html(card), padding=False)
        clear_btn = gr.Button("Empty basket", size="sm")
        gr.Markdown("### Goes with your basket: something for each item in it")
        with gr.Column(elem_id="fai-basket-results"):
            @gr.render(inputs=[goes_with])
            def show_goes_with(cards: list[dict]):
                if cards:
                    with gr.Row(elem_classes="fai-grid"):
                        for card in cards:
                            product_card(card)

        def product_card(card: dict) -> None:
            with gr.Column(elem_classes="fai-card"):
                gr.HTML(card_html(card), padding=False)
                with gr.Row():
                    more = gr.Button("More like this", size="sm", elem_classes="fai-more")
                    add = gr.Button("Add to basket", size="sm", elem_classes="fai-add")
            item = card["id"]
            more.click(lambda kk, *f: demo.similar_to_item(item, kk, *f), [k, *filters],
                       [results, status], api_visibility="private")
            add.click(lambda items, kk, *f: add_to_basket(item, items, kk, *f),
                      [basket, k, *filters], [basket, basket_cards, goes_with, status],
                      api_visibility="private")

        def add_to_basket(item: str, items: list[str], kk: float, *f):
            if item and item not in items and len(items) < MAX_BASKET:
                items = items + [item]
            return (items, *demo.basket_view(items, kk, *f))

        def browse_page(request: gr.Request, *f):
            return demo.browse(*f, origin=request_origin(request))

        # Programs use /similar (JSON hits); the page's own events stay private.
        search_btn.click(demo.search, [photo, k, *filters], [results, status],
                         api_visibility="private")
        photo.upload(demo.search, [photo, k, *filters], [results, status],
                     api_visibility="private")

        def pick_browsed(evt: gr.SelectData, ids: list[str], kk: float, *f):
            item = ids[evt.index] if 0 <= evt.index < len(ids) else ""
            return demo.similar_to_item(item, kk, *f)

        browse.select(pick_browsed, [visible_ids, k, *filters], [results, status],
                      api_visibility="private")
        clear_btn.click(lambda: ([], [], [], "Basket emptied."), None,
                        [basket, basket_cards, goes_with, status], api_visibility="private")
        for f in filters:
            f.change(browse_page, filters, [browse, visible_ids], api_visibility="private")
        app.load(browse_page, filters, [browse, visible_ids], api_visibility="private")
        gr.api(demo.api_similar, api_name="similar")
    return app


def photo_lookup(cat: Catalog):
    """item id -> its photo's path, or None (ui.photos serves nothing else)."""
    def lookup(item_id: str) -> str | None:
        try:
            return cat.get(item_id).path
        except (KeyError, NotInCatalogue):
            return None
    return lookup


def parse_args(argv: list[str] | None = None) -> AppConfig:
    p = OneLineParser(prog="python -m ui.app", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--catalog", help="folder of product photos to index and serve")
    p.add_argument("--metadata", help="CSV with one row per photo")
    p.add_argument("--id-column", default="id",
                   help="the --metadata column holding each photo's file name without suffix")
    p.add_argument("--filters", metavar="COL1,COL2",
                   help="metadata columns offered as filters (at most 6; default: the "
                        "catalogue's choice, else text columns that are not ids or codes)")
    p.add_argument("--caption", metavar="NAME_COL,COL2",
                   help="metadata columns shown on each product card, the name first")
    p.add_argument("--index", help="a catalogue made with 'fai index' (overrides --catalog)")
    p.add_argument("--milvus", metavar="URI", help="serve a Milvus collection made with 'fai "
                   "push' (a server URI or a Milvus Lite .db file; overrides --index)")
    p.add_argument("--collection", default="fai", help="the --milvus collection")
    p.add_argument("--model", help="ONNX model (default: the shipped model)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind; 0.0.0.0 exposes the demo to your network")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true",
                   help="ask Gradio for a public *.gradio.live link: anyone with it can search "
                        "your catalogue and see its photos (needs internet)")
    p.add_argument("-k", type=k_arg, default=8, help=f"results shown by default (1..{MAX_K})")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="uploads above are refused")
    p.add_argument("--cache-dir", default=str(CACHE), help="demo shop and index cache")
    return AppConfig(**vars(p.parse_args(argv)))


def launch(cfg: AppConfig, block: bool = True) -> gr.Blocks:
    cat, label = load_catalog(cfg)
    split = lambda text: None if text is None else [  # noqa: E731
        c.strip() for c in text.split(",") if c.strip()]
    shop = ShopDemo(cat, label, cfg.k, split(cfg.filters), split(cfg.caption))
    app = build_app(shop)
    if cfg.share:
        print("--share: a public link will expose this catalogue's photos and search to anyone "
              "who has it.")
    app.queue(default_concurrency_limit=8)
    max_bytes = int(cfg.max_upload_mb * 1024 * 1024)
    guard = Middleware(RequestGuard, hosts=allowed_hosts(cfg.host, cfg.share),
                       max_upload_bytes=max_bytes, photos=PhotoRoute(photo_lookup(cat)),
                       api=HttpApi(shop.answer, shop.answer_id, shop.answer_basket, MAX_K),
                       upload_dir=gradio_upload_folder(), share=cfg.share)
    disable_gradio_cors()  # same-origin only: the guard refuses other sites' requests
    # No allowed_paths: Gradio itself serves only its upload cache; photos go through ui.photos.
    app.launch(server_name=bind_address(cfg.host), server_port=cfg.port, share=cfg.share,
               max_file_size=max_bytes, app_kwargs={"middleware": [guard]},
               ssr_mode=False, prevent_thread_lock=not block, show_error=False, quiet=False)
    return app


def main(argv: list[str] | None = None) -> int:
    """Ordinary mistakes (a missing folder or catalogue, another model's catalogue, a CSV
    without the id column) end in one line on stderr, never a traceback."""
    cfg = parse_args(argv)
    if cfg.index and not Path(cfg.index).exists():
        print(f"python -m ui.app: error: --index {cfg.index}: no such catalogue (make one with "
              f"'fai index PHOTOS_DIR --out {cfg.index}')", file=sys.stderr)
        return 1
    if cfg.catalog and not Path(cfg.catalog).is_dir():
        print(f"python -m ui.app: error: --catalog {cfg.catalog}: not a folder of photos",
              file=sys.stderr)
        return 1
    if cfg.metadata and not Path(cfg.metadata).is_file():
        print(f"python -m ui.app: error: --metadata {cfg.metadata}: no such CSV file",
              file=sys.stderr)
        return 1
    try:
        launch(cfg)
    except (CatalogError, ImageError, FileNotFoundError, ValueError) as exc:
        print(f"python -m ui.app: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the port is taken
        text = str(exc.strerror or exc)
        if "port" in text.lower() or exc.errno == 98:  # Gradio names its own settings here
            text = (f"port {cfg.port} on {cfg.host} is in use; choose another with --port "
                    f"(or --share for a public link)")
        print(f"python -m ui.app: error: {text}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
