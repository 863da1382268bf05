"""The shop page's "shop the look" panel: an outfit photo with each garment outlined and
numbered, and a row of matches per garment.

Why its own module: the page's layout (``ui/app.py``) changes often; this panel is one function
the page calls, built on ``ShopService.look`` (the same checks and decode slots as a photo
search), with its own small style sheet. The outlined photo is drawn here from the decoded photo
the boxes refer to; product photos are this server's ``/fai/photo/<id>`` links, never paths.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np

from fai_infer.catalog.garments import Look
from fai_infer.image.preprocess import ImageError
from ui.photos import photo_url

if TYPE_CHECKING:
    from ui.service import ShopService

# One colour per garment group (RGB), the same on the photo and beside its row.
GROUP_COLOURS = {"upper": (230, 60, 60), "lower": (40, 110, 230), "whole": (170, 60, 200),
                 "outer": (30, 160, 90), "shoes": (240, 150, 20), "bag": (0, 170, 190),
                 "accessory": (120, 120, 120)}
CSS = """
#fai-look-rows .fai-look-row {margin: 0 0 14px 0}
#fai-look-rows .fai-look-head {display: flex; align-items: center; gap: 8px; font-weight: 600;
  margin: 0 0 6px 0}
#fai-look-rows .fai-look-tag {display: inline-flex; align-items: center; justify-content: center;
  width: 24px; height: 24px; border-radius: 12px; color: #fff; font-size: 13px}
#fai-look-rows .fai-look-strip {display: flex; gap: 10px; overflow-x: auto; padding-bottom: 4px}
#fai-look-rows .fai-look-card {flex: 0 0 132px; font-size: 12px; line-height: 1.3}
#fai-look-rows .fai-look-card img {width: 132px; height: 176px; object-fit: contain;
  background: #fff; border-radius: 6px; border: 1px solid #e5e5e5}
#fai-look-rows .fai-look-words {color: #666}
#fai-look-rows .fai-look-colour {color: #555; font-weight: normal}
@media (max-width: 640px) {
  #fai-look-rows .fai-look-card {flex: 0 0 108px}
  #fai-look-rows .fai-look-card img {width: 108px; height: 144px}
}
"""


def outlined(look: Look) -> np.ndarray | None:
    """The look's photo with each garment's box drawn in its group's colour and numbered like
    its row (None when the look carries no photo)."""
    if look.photo is None:
        return None
    img = np.ascontiguousarray(look.photo.copy())
    h, w = img.shape[:2]
    thick = max(2, round(max(h, w) / 200))
    for n, row in enumerate(look.rows, 1):
        x0, y0, x1, y1 = row.region.box
        colour = GROUP_COLOURS.get(row.region.group, (80, 80, 80))
        cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), colour, thick)
        scale = max(0.5, max(h, w) / 700)
        (tw, th), _ = cv2.getTextSize(str(n), cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        cv2.rectangle(img, (x0, y0), (x0 + tw + 2 * thick, y0 + th + 2 * thick), colour, -1)
        cv2.putText(img, str(n), (x0 + thick, y0 + th + thick), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), thick, cv2.LINE_AA)
    return img


def rows_html(look: Look, cards: list[list[dict]]) -> str:
    """A numbered row per garment: its kind and a strip of its matches (photo, name, words)."""
    esc = html.escape
    if not look.rows:
        return f'<div class="fai-look-none">{esc(look.message.capitalize())}.</div>'
    parts = []
    for n, (row, row_cards) in enumerate(zip(look.rows, cards), 1):
        r, g, b = GROUP_COLOURS.get(row.region.group, (80, 80, 80))
        strip = "".join(
            f'<div class="fai-look-card"><img src="{esc(photo_url(c["id"]))}" '
            f'alt="{esc(c["name"])}" loading="lazy"><div>{esc(c["name"])}</div>'
            f'<div class="fai-look-words">{esc(c.get("match") or "")}</div></div>'
            for c in row_cards)
        parts.append(f'<div class="fai-look-row"><div class="fai-look-head">'
                     f'<span class="fai-look-tag" style="background:rgb({r},{g},{b})">{n}'
                     f'</span>{esc(row.region.kind.capitalize())}'
                     + (f' <span class="fai-look-colour">({esc(", ".join(row.colour))})</span>'
                        if row.colour else "") + '</div>'
                     f'<div class="fai-look-strip">{strip}</div></div>')
    return "".join(parts)


def answer(service: "ShopService", upload: str | None, k: float = 6
           ) -> tuple[np.ndarray | None, str]:
    """(outlined photo, rows as HTML) for the panel; a missing or bad photo is one line."""
    if not upload:
        return None, '<div class="fai-look-none">Upload an outfit photo or take one.</div>'
    try:
        look = service.look(upload, k)
    except ImageError as exc:
        return None, ('<div class="fai-look-none">Cannot use this photo: '
                      f'{html.escape(exc.reason)}</div>')
    except ValueError as exc:
        return None, f'<div class="fai-look-none">{html.escape(str(exc))}</div>'
    cards = [[service.card(h) for h in row.hits] for row in look.rows]
    return outlined(look), rows_html(look, cards)


def build_look_panel(service: "ShopService",
                     forget: Callable[[str], None] | None = None) -> None:
    """The panel, inside the caller's ``gr.Blocks``: closed until a shopper opens it. Shown
    only when a garment parser is installed. ``forget(path)`` deletes an upload once answered
    (the page keeps no shopper's photo longer than it takes to use it)."""
    import gradio as gr

    def handle(path: str | None) -> tuple[np.ndarray | None, str]:
        if path and not Path(path).is_file():
            return None, '<div class="fai-look-none">Upload the photo again.</div>'
        try:
            return answer(service, path)
        finally:
            if path and forget is not None:
                forget(path)

    if service.cat.garment_parser() is None:
        return
    with gr.Accordion("Shop the look: every garment in an outfit photo", open=False,
                      elem_id="fai-look-panel"):
        gr.HTML(f"<style>{CSS}</style>", padding=False)
        with gr.Row():
            photo = gr.Image(sources=["upload", "webcam"], type="filepath",
                             label="Outfit photo", elem_id="fai-look-photo")
            shown = gr.Image(label="Garments found", interactive=False, type="numpy",
                             elem_id="fai-look-outlined")
        go = gr.Button("Shop the look", variant="primary", elem_id="fai-look-go")
        rows = gr.HTML("", elem_id="fai-look-rows", padding=False)
        # a page event, not an API (POST /api/look is the look's API)
        go.click(handle, [photo], [shown, rows],
                 api_visibility="private")
