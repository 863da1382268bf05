"""Which metadata columns a page offers as filters and shows under each photo, by default.

Chosen from the metadata alone, so a shop's CSV with any column names gives a sensible page
without configuration; ``--filters``/``--caption`` override and are stored with the catalogue.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

MAX_FILTERS = 6
MAX_FILTER_VALUES = 150
NAME_COLUMNS = ("name", "prod_name", "product_name", "productdisplayname", "title",
                "display_name", "productname")
_CODE_SUFFIXES = ("_id", "_no", "_code", "_nr", "_num", "_sku", "id", "sku", "ean", "upc")
_NOT_DISPLAYED = {"split", "path", "file", "filename", "image", "url"}


def is_code_column(name: str, values: list[str], filled: int | None = None) -> bool:
    """Ids and codes a shopper never filters by: *_id, *_no, *_code, numbers, and columns where
    every row has its own value. ``values``: the distinct values; ``filled``: how many rows
    have one (unknown: None)."""
    low = name.casefold()
    if low in _NOT_DISPLAYED or low.endswith(_CODE_SUFFIXES):
        return True
    distinct = [v for v in values if v]
    if distinct and all(v.replace(".", "", 1).isdigit() for v in distinct):
        return True
    return filled is not None and filled > 1 and len(distinct) == filled


def choose_display(stats: dict[str, tuple[list[str], int]], id_column: str = "id"
                   ) -> tuple[list[str], list[str]]:
    """(filter columns, caption columns) from ``{column: (distinct values, rows with a
    value)}`` in the CSV's order: filters are text columns with 2..150 values that are not ids
    or codes (at most 6); the caption is the first name-like column."""
    filters = [c for c, (values, filled) in stats.items() if c != id_column
               and c.casefold() not in NAME_COLUMNS and not is_code_column(c, values, filled)
               and 1 < len(set(values) - {""}) <= MAX_FILTER_VALUES][:MAX_FILTERS]
    named = [c for c in stats if c.casefold() in NAME_COLUMNS]
    return filters, named[:1]


def column_order(rows: Iterable[Mapping[str, str]]) -> list[str]:
    """Every column of the rows, in order of first appearance (the CSV's order)."""
    order: dict[str, None] = {}
    for r in rows:
        order.update(dict.fromkeys(r))
    return list(order)


def default_display(rows: list[dict[str, str]], id_column: str = "id"
                    ) -> tuple[list[str], list[str]]:
    """``choose_display`` for metadata rows (dicts)."""
    order = column_order(rows)
    stats = {}
    for c in order:
        values = [str(r.get(c, "") or "") for r in rows]
        stats[c] = (sorted(set(values) - {""}), sum(1 for v in values if v))
    return choose_display(stats, id_column)


def checked_display(filters: Sequence[str] | None, caption: Sequence[str] | None,
                    known: Sequence[str]) -> dict[str, list[str]]:
    """The chosen filter/caption columns (None: not chosen), each a known column and at most
    MAX_FILTERS filters; a mistake is one ValueError naming the columns there are."""
    out = {}
    for kind, cols in (("filters", filters), ("caption", caption)):
        if cols is None:
            continue
        cols = [c.strip() for c in cols if c.strip()]
        unknown = [c for c in cols if c not in known]
        if unknown:
            raise ValueError(f"--{kind} {','.join(unknown)}: no such metadata column "
                             f"(columns: {', '.join(known) or 'none'})")
        if kind == "filters" and len(cols) > MAX_FILTERS:
            raise ValueError(f"--filters: at most {MAX_FILTERS} columns, got {len(cols)}")
        out[kind] = cols
    return out
