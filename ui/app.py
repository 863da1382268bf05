"""python -m ui.app: the FAI shop demo (Gradio), offline and closed by default.

With no arguments it renders a demo catalogue of its own (garments, shoes, bags), indexes it
with the shipped model once (cached), and serves it on 127.0.0.1:7860. ``--catalog DIR`` or
``--index CATALOG`` point it at a real shop. Only catalogue images and uploads are served.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import signal
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

# Forced, not defaults: the demo never talks to anyone (docs/security.md, tests/test_offline.py).
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"

import gradio as gr  # noqa: E402
from gradio.utils import get_upload_folder as gradio_upload_folder  # noqa: E402

import numpy as np  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from fai_infer import safe_json  # noqa: E402
from fai_infer.catalog.contract import BaseCatalog, NotInCatalogue  # noqa: E402
from fai_infer.cli.util import OneLineParser, k_value  # noqa: E402
from fai_infer.catalog.confidence import DIFFERENT_KIND, NO_MATCH  # noqa: E402
from fai_infer.image.preprocess import ImageError  # noqa: E402
from fai_infer.store.generations import CatalogError  # noqa: E402
from ui.api_checks import MAX_BASKET  # noqa: E402
from ui.decode_slots import decode_slot  # noqa: E402
from ui.guard import (RequestGuard, allowed_hosts, bind_address,  # noqa: E402
                      disable_gradio_cors)
from ui.look_panel import build_look_panel  # noqa: E402
from ui.http_api import PATHS as API_PATHS, SHOPPER_PATHS, HttpApi, log_failure  # noqa: E402
from ui.merchandising import MerchService  # noqa: E402
from ui.photos import PhotoRoute, photo_url  # noqa: E402
from ui.service import (CACHE, MAX_K, AppConfig, ShopService, bounded_k,  # noqa: E402,F401
                        check_upload, hits_json, load_catalog, parse_filters, photo_lookup)
from ui.text import markdown_escape, parse_labels  # noqa: E402

UPLOAD_CACHE_SECONDS = 600  # uploads are deleted this long after arriving, and at shutdown
UPLOADS_REMEMBERED = 64  # embeddings of deleted uploads kept for re-asks (toggle, k, filters)


def forget_upload(path: str) -> None:
    """Delete an upload's file, and the folder Gradio made for it once empty: a shopper's
    photo is kept no longer than it takes to embed it."""
    try:
        os.remove(path)
    except OSError:
        return
    folder, uploads = Path(path).resolve().parent, Path(gradio_upload_folder()).resolve()
    if folder != uploads and folder.is_relative_to(uploads):
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty: another file of the same upload


def log_refused(what: str, reason: str) -> None:
    """One line in the server's log for an input the page refused (the shopper reads why on
    the page; the operator sees it happened, never a traceback)."""
    print(f"ui.app: {what} refused: {' '.join(str(reason).split())[:300]}", file=sys.stderr,
          flush=True)


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


def uploaded_path(value: dict | str, cat: BaseCatalog) -> str:
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


CSS = """
#fai-style {display: none !important}
.fai-grid {display: flex !important; flex-wrap: wrap !important; gap: 12px !important}
.fai-card {flex: 0 0 190px !important; min-width: 0 !important; max-width: 190px;
           display: flex !important; flex-direction: column !important;
           justify-content: space-between !important; gap: 6px !important;
           border: 1px solid #e5e7eb; border-radius: 10px; padding: 8px !important;
           background: #fff; box-shadow: 0 1px 3px rgba(0,0,0,.06)}
.fai-card img {width: 100%; height: 210px; object-fit: contain; background: #fafafa;
               border-radius: 6px; display: block}
.fai-name {font-weight: 600; font-size: 14px; margin-top: 6px; line-height: 1.25;
           height: 2.5em; display: -webkit-box; -webkit-line-clamp: 2;
           -webkit-box-orient: vertical; overflow: hidden}
.fai-meta {color: #6b7280; font-size: 12px; margin-top: 2px; height: 1.3em; overflow: hidden;
           white-space: nowrap; text-overflow: ellipsis}
.fai-price {font-weight: 600; color: #111827; font-size: 13px; margin-top: 2px; height: 1.3em}
.fai-bar {height: 6px; background: #e5e7eb; border-radius: 3px; margin-top: 6px}
.fai-bar span {display: block; height: 6px; background: #10b981; border-radius: 3px}
.fai-match {font-size: 12px; color: #374151; margin-top: 2px; height: 1.3em}
.fai-match.fai-weak {color: #9ca3af}
.fai-for {font-size: 11px; color: #7c3aed; margin-top: 2px; height: 1.3em; overflow: hidden;
          white-space: nowrap; text-overflow: ellipsis}
.fai-buttons {gap: 4px !important; min-width: 0 !important}
.fai-buttons button {width: 100%; min-width: 0 !important}
#fai-query .fai-query {display: flex; gap: 12px; align-items: center; padding: 6px 0}
#fai-query img {width: 88px; height: 88px; object-fit: contain; background: #fafafa;
                border: 1px solid #e5e7eb; border-radius: 8px}
#fai-query .fai-query-name {font-weight: 600}
.fai-nomatch {background: #fef3c7; color: #92400e; border-radius: 8px; padding: 8px 12px;
              margin-bottom: 8px; font-size: 14px}
@media (max-width: 640px) {
  /* results first: the page's own chrome shrinks so the first cards show on the first screen */
  .gradio-container, .gradio-container .main, .gradio-container .contain
      {padding-top: 4px !important; margin-top: 0 !important}
  #fai-header {display: none !important}
  #fai-query .fai-query {padding: 0}
  #fai-query img {width: 56px; height: 56px}
  .fai-grid {gap: 8px !important}
  .fai-card {flex: 0 0 calc(50% - 4px) !important; max-width: calc(50% - 4px) !important;
             padding: 6px !important}
  .fai-card img {height: 150px}
  .fai-name {font-size: 13px}
  .fai-match {height: 2.6em}
}
"""

LOOKS = ("this look", "this design in any colour")  # the colour toggle's two choices


LOOK_COLOUR = 0.3  # "this look": colour counts (docs/quality.md: type+colour 0.314 at 0.3)


def colour_for(look: str | None, has_colour: bool = True) -> float | None:
    """The toggle's choice -> a colour weight: "this look" weighs colour 0.3 (the model's
    default, 0.05 for fai-lite0 v3, is chosen for search in general and barely ranks colour),
    "this design in any colour" 0. A model without a colour part (no toggle) gets None."""
    if not has_colour:
        return None
    return 0.0 if look == LOOKS[1] else LOOK_COLOUR


def card_html(card: dict) -> str:
    """One product card: photo (by item id), name, caption columns and, for a result, how close
    it is in words with a bar of its confidence (never a raw score or percentage). Every piece
    of text is escaped; the photo link is this server's /fai/photo/<id>, never a path."""
    esc = html.escape
    parts = [f'<img src="{esc(photo_url(card["id"]))}" alt="{esc(card["name"])}" '
             f'loading="lazy">', f'<div class="fai-name">{esc(card["name"])}</div>',
             f'<div class="fai-price">{esc(card.get("price") or "")}</div>',
             f'<div class="fai-meta">{esc(card.get("details") or "")}</div>']
    if card.get("match"):
        width = max(3, min(100, round(100 * float(card.get("confidence") or 0))))
        weak = " fai-weak" if card["match"] in (NO_MATCH, DIFFERENT_KIND) else ""
        parts.append(f'<div class="fai-bar"><span style="width:{width}%"></span></div>'
                     f'<div class="fai-match{weak}">{esc(card["match"])}</div>')
    if "for" in card:
        parts.append(f'<div class="fai-for">goes with {esc(card["for"])}</div>')
    return "".join(parts)


def query_html(card: dict | None) -> str:
    """The panel above the results: the catalogue item they are like (after "More like this"
    or a pick from the catalogue strip)."""
    if not card:
        return ""
    esc = html.escape
    return (f'<div class="fai-query"><img src="{esc(photo_url(card["id"]))}" '
            f'alt="{esc(card["name"])}"><div>More like<br><span class="fai-query-name">'
            f'{esc(card["name"])}</span></div></div>')


def results_note(cards: list[dict]) -> str:
    """Said above the results when even the best is no close match."""
    if cards and cards[0].get("match") == NO_MATCH:
        return ("No close match in this shop: these are the nearest items we have.")
    return ""


class ShopDemo(ShopService):
    """The page's handlers: the service's answers, with mistakes as messages on the page
    (``gr.Error``). Results travel as lists of cards in gr.State."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._uploads: OrderedDict[str, np.ndarray] = OrderedDict()
        self._uploads_lock = threading.Lock()

    def upload_vector(self, path: str) -> np.ndarray:
        """The vector an upload is searched with, chosen as ``/api/similar`` and ``fai similar``
        choose it (``Catalog.photo_query``: the garment of a photo of a person, a photo's frame
        beside its centre crop), at the default weighting without filters; its file is deleted
        once read (whatever the outcome). The page asks again for the same upload when the
        toggle, k or a filter changes, so the vector (not the photo) is remembered, a bounded
        number of them, and searched again as they say."""
        with self._uploads_lock:
            if path in self._uploads:
                self._uploads.move_to_end(path)
                return self._uploads[path]
        try:
            with decode_slot():  # bounded memory however many upload at once
                check_upload(path, self.upload_side())
                vector = self.cat.photo_query(path, k=1).vector
                assert vector is not None  # every photo query says what it searched
        finally:
            forget_upload(path)
        with self._uploads_lock:
            self._uploads[path] = vector
            while len(self._uploads) > UPLOADS_REMEMBERED:
                self._uploads.popitem(last=False)
        return vector

    def search_upload(self, image: str, k: float, *filters, colour: float | None = None
                      ) -> list[dict]:
        """Cards for a catalogue id, or for an upload (embedded once, then deleted)."""
        if image in self.cat:
            return self.search_photo(image, k, *filters, colour=colour)[0]
        hits = self.cat.similar_to_vector(self.upload_vector(image), k=bounded_k(k),
                                          where=self.where(filters), colour=colour)
        return [self.card(h) for h in hits]

    def search(self, image: str | None, k: float, *filters, look: str | None = None
               ) -> tuple[list[dict], str]:
        """(cards, status line) for an upload, weighed as the colour toggle says. A bad upload
        clears the results and says why in the status line (a gr.Error put a red "Error" badge
        over the page and kept old results)."""
        if not image:
            return [], "Upload a photo, take one with the camera, or click a catalogue item."
        try:
            colour = colour_for(look, self.cat.parts().has_colour)
            cards = self.search_upload(image, k, *filters, colour=colour)
        except ImageError as exc:
            log_refused("upload", exc.reason)
            return [], f"Cannot use this photo: {markdown_escape(exc.reason)}"
        except ValueError as exc:
            log_refused("upload", str(exc))
            return [], "Cannot use this input: upload a photo or pick a catalogue item."
        return cards, "Most like your photo"

    def more_like(self, item_id: str, k: float, *filters, look: str | None = None
                  ) -> tuple[list[dict], str, str, None]:
        """(cards, status, query panel showing the item, a cleared upload box)."""
        cards, status = self.similar_to_item(item_id, k, *filters,
                                             colour=colour_for(look, self.cat.parts().has_colour))
        try:
            item = self.card(self.cat.get(item_id), score=False)
        except NotInCatalogue:
            item = None
        return cards, status, query_html(item), None

    def api_similar(self, image: dict, k: int = 10, where: str = "{}") -> str:
        """API: top-k catalogue items for an uploaded photo (gradio_client.handle_file) or a
        catalogue id: a JSON list of hits (id, score, confidence, match, photo, metadata);
        ``photo`` is the item's image under this server (never a server path). ``where`` is a
        JSON object such as {"gender": "Women"}; k is capped at MAX_K. Errors name the
        problem, never a path."""
        path = None
        try:
            path = uploaded_path(image, self.cat)
            hits = self.answer(path, k, safe_json.loads(where or "{}"))
        except ImageError as exc:
            raise gr.Error(f"cannot use this image: {exc.reason}") from None
        except NotInCatalogue:
            raise gr.Error("bad request: that item is not in the catalogue") from None
        except ValueError as exc:
            raise gr.Error(f"bad request: {exc}") from None
        except Exception as exc:  # never pass internals (paths, stack details) to a client
            log_failure("api_similar", exc)  # ... but the shop's operator sees why
            raise gr.Error("the search failed on the server") from None
        finally:
            if path is not None and path not in self.cat:
                forget_upload(path)  # a client's photo is not kept once answered
        return json.dumps(hits, ensure_ascii=False)


def photo_input() -> gr.Image:
    """The upload/camera box. ``image_mode=None`` makes Gradio hand over the uploaded file as
    it arrived: with a mode set it re-encodes some uploads itself (turning them by EXIF, dropping
    alpha onto black) and passes others through, so one photo could embed two ways. Every
    upload is decoded by fai_infer.image.preprocess, exactly as the runtime decodes it."""
    box = gr.Image(sources=["upload", "webcam"], type="filepath", image_mode=None,
                   label="Photo (upload or camera)", elem_id="fai-photo", height=180)
    box.preprocess = _handing_over(box.preprocess)  # type: ignore[method-assign]
    return box


def _handing_over(preprocess: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Gradio opens each upload with PIL before the handler sees it, and a file that is not an
    image (a .jpg that is a PDF) ended there in a bare red "Error" on the page and two chained
    tracebacks in the log. Handed over instead, the handler's own decoder says in one sentence
    what is wrong and logs one line. Wrapped on the instance: a gr.Image subclass would make
    Gradio write a .pyi stub next to this module at import."""
    def hand_over(payload: Any) -> Any:
        try:
            return preprocess(payload)
        except Exception:  # noqa: BLE001 - PIL's many errors for a file it cannot read
            path = getattr(payload, "path", None)
            return str(path) if path else None
    return hand_over


def build_app(demo: ShopDemo) -> gr.Blocks:
    # delete_cache: uploads older than UPLOAD_CACHE_SECONDS are removed while running, and all
    # of them at shutdown (a kiosk must not keep shoppers' photos).
    with gr.Blocks(title=demo.title, analytics_enabled=False,
                   delete_cache=(UPLOAD_CACHE_SECONDS, UPLOAD_CACHE_SECONDS)) as app:
        gr.HTML(f"<style>{CSS}</style>", padding=False, elem_id="fai-style")
        gr.Markdown(f"## {markdown_escape(demo.title)}", elem_id="fai-title")
        gr.Markdown(demo.header(), elem_id="fai-header")
        results = gr.State([])  # cards: item ids and what is shown, never parsed from text
        visible_ids = gr.State([])
        basket = gr.State([])
        basket_cards = gr.State([])
        goes_with = gr.State([])
        last = gr.State(None)  # ("item", id) or ("photo", path): rerun when the toggle moves
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                photo = photo_input()
                look = gr.Radio(list(LOOKS), value=LOOKS[0], label="Match",
                                show_label=False, visible=demo.has_colour, elem_id="fai-look")
                search_btn = gr.Button("Find similar", variant="primary", elem_id="fai-search")
                status = gr.Markdown("", elem_id="fai-status")
                # Folded: on a phone six open filters pushed the results a screen down.
                with gr.Accordion("Filters" if demo.filters else "Options", open=False,
                                  elem_id="fai-filters"):
                    filters = [gr.Dropdown(vals, multiselect=True,
                                           label=demo.labels.get(col, col), value=[])
                               for col, vals in demo.filters.items()]
                    k = gr.Slider(1, 30, value=demo.default_k, step=1,
                                  label="How many results")
            with gr.Column(scale=3):
                query = gr.HTML("", elem_id="fai-query", padding=False)
                with gr.Column(elem_id="fai-results"):
                    @gr.render(inputs=[results])
                    def show_results(cards: list[dict]):
                        if not cards:
                            gr.Markdown("Results appear here.")
                            return
                        note = results_note(cards)
                        if note:
                            gr.HTML(f'<div class="fai-nomatch">{html.escape(note)}</div>',
                                    padding=False)
                        with gr.Row(elem_classes="fai-grid"):
                            for card in cards:
                                product_card(card)
                browse = gr.Gallery(label="From the shop: click any item to see similar ones",
                                    columns=6, height="auto", object_fit="contain",
                                    elem_id="fai-browse", allow_preview=False)
        gr.Markdown("### Your basket")
        with gr.Column(elem_id="fai-basket"):
            @gr.render(inputs=[basket_cards])
            def show_basket(cards: list[dict]):
                if not cards:
                    gr.Markdown("Empty: add any product with 'Add to basket'.")
                    return
                with gr.Row(elem_classes="fai-grid"):
                    for card in cards:
                        basket_card(card)
        clear_btn = gr.Button("Empty basket", size="sm", visible=False, elem_id="fai-clear")
        gr.Markdown("### Goes with your basket: something for each item in it")
        with gr.Column(elem_id="fai-basket-results"):
            @gr.render(inputs=[goes_with])
            def show_goes_with(cards: list[dict]):
                if cards:
                    with gr.Row(elem_classes="fai-grid"):
                        for card in cards:
                            product_card(card)
        build_look_panel(demo, forget_upload)  # shop the look: its own accordion

        basket_outputs = [basket, basket_cards, goes_with, status, clear_btn]

        def product_card(card: dict) -> None:
            with gr.Column(elem_classes="fai-card"):
                gr.HTML(card_html(card), padding=False)
                with gr.Column(elem_classes="fai-buttons"):
                    more = gr.Button("More like this", size="sm", elem_classes="fai-more")
                    add = gr.Button("Add to basket", size="sm", elem_classes="fai-add")
            item = card["id"]
            more.click(lambda kk, lk, *f: (*demo.more_like(item, kk, *f, look=lk),
                                           ("item", item)),
                       [k, look, *filters], [results, status, query, photo, last],
                       api_visibility="private")
            add.click(lambda items, kk, lk, *f: change_basket(items + [item], kk, lk, *f),
                      [basket, k, look, *filters], basket_outputs, api_visibility="private")

        def basket_card(card: dict) -> None:
            with gr.Column(elem_classes="fai-card"):
                gr.HTML(card_html(card), padding=False)
                remove = gr.Button("Remove", size="sm", elem_classes="fai-remove")
            item = card["id"]
            remove.click(lambda items, kk, lk, *f: change_basket(
                [i for i in items if i != item], kk, lk, *f), [basket, k, look, *filters],
                basket_outputs, api_visibility="private")

        def change_basket(items: list[str], kk: float, lk: str | None, *f):
            items = list(dict.fromkeys(i for i in items if i))[:MAX_BASKET]
            cards, hits, line = demo.basket_view(
                items, kk, *f, colour=colour_for(lk, demo.cat.parts().has_colour))
            return items, cards, hits, line, gr.update(visible=bool(items))

        def browse_page(request: gr.Request, *f):
            return demo.browse(*f, origin=request_origin(request))

        def search(image, kk, lk, *f):
            return (*demo.search(image, kk, *f, look=lk), "", ("photo", image))

        def rerun(state, image, kk, lk, items, *f):
            """The toggle moved: the same search and basket, weighed anew."""
            if state and state[0] == "item":
                cards, line, panel, _ = demo.more_like(state[1], kk, *f, look=lk)
            elif state and state[0] == "photo" and image:
                (cards, line), panel = demo.search(image, kk, *f, look=lk), ""
            else:
                cards, line, panel = gr.update(), gr.update(), gr.update()
            _, _, hits, _, _ = change_basket(items, kk, lk, *f)
            return cards, line, panel, hits

        # Programs use /similar (JSON hits); the page's own events stay private.
        search_outputs = [results, status, query, last]
        search_btn.click(search, [photo, k, look, *filters], search_outputs,
                         api_visibility="private")
        photo.upload(search, [photo, k, look, *filters], search_outputs,
                     api_visibility="private")
        look.change(rerun, [last, photo, k, look, basket, *filters],
                    [results, status, query, goes_with], api_visibility="private")

        def pick_browsed(evt: gr.SelectData, ids: list[str], kk: float, lk: str | None, *f):
            item = ids[evt.index] if 0 <= evt.index < len(ids) else ""
            return (*demo.more_like(item, kk, *f, look=lk), ("item", item))

        browse.select(pick_browsed, [visible_ids, k, look, *filters],
                      [results, status, query, photo, last], api_visibility="private")
        clear_btn.click(lambda: ([], [], [], "Basket emptied.", gr.update(visible=False)), None,
                        basket_outputs, api_visibility="private")
        for f in filters:
            f.change(browse_page, filters, [browse, visible_ids], api_visibility="private")
        app.load(browse_page, filters, [browse, visible_ids], api_visibility="private")
        gr.api(demo.api_similar, api_name="similar")
    return app


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
    p.add_argument("--title", help="the page's title (default: the shop name given to 'fai "
                   "index --name', else the catalogue's folder name)")
    p.add_argument("--labels", metavar="COL=Label,...",
                   help="what shoppers read for filter and caption columns, e.g. "
                        "product_type_name=Type (default: readable forms of the column names)")
    p.add_argument("--merchandiser", action="store_true",
                   help="serve the merchandiser's page instead (audit, duplicates, tag: "
                        "findings with photos side by side)")
    cfg = AppConfig(**vars(p.parse_args(argv)))
    try:
        parse_labels(cfg.labels)
    except ValueError as exc:
        p.error(str(exc))
    return cfg


def launch(cfg: AppConfig, block: bool = True) -> gr.Blocks:
    cat, label = load_catalog(cfg)
    split = lambda text: None if text is None else [  # noqa: E731
        c.strip() for c in text.split(",") if c.strip()]
    shop = ShopDemo(cat, label, cfg.k, split(cfg.filters), split(cfg.caption), cfg.title,
                    parse_labels(cfg.labels))
    # The merchandiser's tools exist only on a merchandiser's server (issue 33): a shopper's
    # page neither builds them nor routes to them.
    tools = MerchService(cat) if cfg.merchandiser else None
    if tools is not None:
        from ui.merch_page import build_merch_app

        app = build_merch_app(shop, tools)
    else:
        app = build_app(shop)
    if cfg.share:
        print("--share: a public link will expose this catalogue's photos and search to anyone "
              "who has it.")
    app.queue(default_concurrency_limit=8)
    max_bytes = int(cfg.max_upload_mb * 1024 * 1024)
    guard = Middleware(RequestGuard, hosts=allowed_hosts(cfg.host, cfg.share),
                       max_upload_bytes=max_bytes, photos=PhotoRoute(photo_lookup(cat)),
                       api=HttpApi.for_service(shop, tools),
                       api_paths=API_PATHS if tools is not None else SHOPPER_PATHS,
                       upload_dir=gradio_upload_folder(), share=cfg.share,
                       merchandiser=tools is not None)
    disable_gradio_cors()  # same-origin only: the guard refuses other sites' requests
    # No allowed_paths: Gradio itself serves only its upload cache; photos go through ui.photos.
    app.launch(server_name=bind_address(cfg.host), server_port=cfg.port, share=cfg.share,
               max_file_size=max_bytes, app_kwargs={"middleware": [guard]},
               ssr_mode=False, prevent_thread_lock=not block, show_error=False, quiet=False,
               footer_links=[])  # no "Use via API" or settings for shoppers
    if block:  # stopped (Ctrl-C or SIGTERM)
        delete_uploads(app)
    return app


def delete_uploads(app: gr.Blocks) -> None:
    """Every upload this server still holds, deleted at its stop. Gradio's own shutdown does
    this in its server thread, which the stopping main thread waits for only 5 s (an open
    client connection holds it longer), so uploads outlived the process."""
    files = [f for files in app.temp_file_sets for f in list(files)]
    for path in files:
        forget_upload(path)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # Gradio's block_thread closes the server on it, cleanup included


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
    # SIGTERM (systemd, Docker, kill) stops the server the way Ctrl-C does, so Gradio's
    # shutdown deletes every upload still cached; the default action left them in its folder.
    signal.signal(signal.SIGTERM, _interrupt)
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
