"""``python -m ui.app --merchandiser``: the catalogue's own checks for the people who run the
shop, with photos side by side: labels the photos dispute (audit), near-identical photos
(duplicates) and missing labels the neighbours can fill (tag).

Read-only, like the HTTP tools: a merchandiser sees the findings here and writes fixes with
``fai tag --apply`` or ``fai update`` (docs/merchandising.md).
"""

from __future__ import annotations

import html

import gradio as gr

from fai_infer.catalog.contract import NotInCatalogue
from fai_infer.merch.duplicates import THRESHOLD
from ui.api_checks import Busy
from ui.merchandising import MerchService
from ui.photos import photo_url
from ui.service import ShopService
from ui.text import markdown_escape

SHOWN = 40  # findings per list
NEIGHBOURS_SHOWN = 4

CSS = """
.fai-finding {display: flex; gap: 10px; align-items: flex-start; padding: 10px 0;
              border-bottom: 1px solid #e5e7eb; flex-wrap: wrap}
.fai-tile {width: 120px; font-size: 12px; color: #374151}
.fai-tile img {width: 120px; height: 140px; object-fit: contain; background: #fafafa;
               border: 1px solid #e5e7eb; border-radius: 6px; display: block}
.fai-tile b {color: #111827}
.fai-why {min-width: 180px; max-width: 260px; font-size: 13px; padding-top: 4px}
.fai-sure {color: #b45309; font-weight: 600}
"""


def tile(item_id: str, caption: str, strong: str = "") -> str:
    esc = html.escape
    return (f'<div class="fai-tile"><img src="{esc(photo_url(item_id))}" alt="{esc(item_id)}" '
            f'loading="lazy">{esc(item_id)}<br><b>{esc(strong)}</b> {esc(caption)}</div>')


class MerchPage:
    """HTML for each tab, from the merchandiser service's findings."""

    def __init__(self, shop: ShopService, tools: MerchService):
        self.shop, self.tools = shop, tools

    def _label(self, item_id: str, column: str) -> str:
        try:
            return self.shop.cat.get(item_id).metadata.get(column, "")
        except NotInCatalogue:
            return ""

    def audit_html(self, column: str) -> str:
        if not column:
            return "Choose a label column."
        try:
            found = self.tools.answer_audit(column, {}, SHOWN)
        except Busy as exc:
            return html.escape(str(exc))
        if not found:
            return f"No item's {html.escape(column)} is disputed by its neighbours."
        rows = []
        for f in found:
            neighbours = "".join(tile(n, "", self._label(n, column))
                                 for n in f["neighbours"][:NEIGHBOURS_SHOWN])
            rows.append(
                f'<div class="fai-finding">{tile(f["id"], "", f["label"])}'
                f'<div class="fai-why">labelled <b>{html.escape(f["label"])}</b>, its '
                f'neighbours say <b>{html.escape(f["suggested"])}</b><br>'
                f'<span class="fai-sure">sureness {f["sureness"]:.2f}</span></div>'
                f'{neighbours}</div>')
        return "".join(rows)

    def duplicates_html(self, threshold: float) -> str:
        try:
            found = self.tools.answer_duplicates(float(threshold), SHOWN)
        except Busy as exc:
            return html.escape(str(exc))
        if not found:
            return f"No near-identical photos at score {threshold:.2f} or above."
        rows = []
        for g in found:
            best = g["pairs"][0]["score"]
            tiles = "".join(tile(i, self.shop.name(self.shop.cat.get(i))
                                 if i in self.shop.cat else "") for i in g["ids"][:8])
            rows.append(f'<div class="fai-finding"><div class="fai-why"><b>{len(g["ids"])} '
                        f'items</b><br>closest pair {best:.3f}</div>{tiles}</div>')
        return "".join(rows)

    def tag_html(self, columns: list[str]) -> str:
        if not columns:
            return "Choose the label columns to fill."
        try:
            found = self.tools.answer_tag(columns, {}, SHOWN)
        except Busy as exc:
            return html.escape(str(exc))
        if not found:
            return "No missing labels in those columns."
        rows = []
        for s in found:
            neighbours = "".join(tile(n, "", self._label(n, s["column"]))
                                 for n in s["neighbours"][:NEIGHBOURS_SHOWN])
            name = self.shop.labels.get(s["column"], s["column"])
            rows.append(
                f'<div class="fai-finding">{tile(s["id"], "", "(missing)")}'
                f'<div class="fai-why">{html.escape(name)}'
                f': <b>{html.escape(s["value"])}</b><br>confidence {s["confidence"]:.2f}</div>'
                f'{neighbours}</div>')
        return "".join(rows)


def build_merch_app(shop: ShopService, tools: MerchService) -> gr.Blocks:
    page = MerchPage(shop, tools)
    columns = list(shop.cat.columns())
    default = shop.kind_column or (columns[0] if columns else None)
    with gr.Blocks(title=f"{shop.title}: catalogue checks", analytics_enabled=False) as app:
        gr.HTML(f"<style>{CSS}</style>", padding=False)
        gr.Markdown(f"## {markdown_escape(shop.title)}: catalogue checks", elem_id="fai-title")
        gr.Markdown(f"{len(shop.cat)} items · findings from each photo's nearest neighbours; "
                    f"nothing here changes the catalogue", elem_id="fai-header")
        with gr.Tab("Labels to check", elem_id="fai-tab-audit"):
            column = gr.Dropdown(columns, value=default, label="Label column")
            audit_btn = gr.Button("Check labels", variant="primary", elem_id="fai-audit")
            audit_out = gr.HTML(elem_id="fai-audit-list")
        with gr.Tab("Duplicates", elem_id="fai-tab-duplicates"):
            threshold = gr.Slider(0.8, 1.0, value=THRESHOLD, step=0.005,
                                  label="Same photo from this score")
            dup_btn = gr.Button("Find duplicates", variant="primary", elem_id="fai-dupes")
            dup_out = gr.HTML(elem_id="fai-dupes-list")
        with gr.Tab("Missing labels", elem_id="fai-tab-tag"):
            tag_cols = gr.Dropdown(columns, value=[default] if default else [],
                                   multiselect=True, label="Columns to fill")
            tag_btn = gr.Button("Suggest labels", variant="primary", elem_id="fai-tag")
            tag_out = gr.HTML(elem_id="fai-tag-list")
        audit_btn.click(page.audit_html, [column], [audit_out], api_visibility="private")
        dup_btn.click(page.duplicates_html, [threshold], [dup_out], api_visibility="private")
        tag_btn.click(page.tag_html, [tag_cols], [tag_out], api_visibility="private")
    return app
