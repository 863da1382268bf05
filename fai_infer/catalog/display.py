"""Which metadata columns a page offers as filters and shows under each photo, by default.

Chosen from the metadata alone, so a shop's CSV with any column names gives a sensible page
without configuration; ``--filters``/``--caption`` override and are stored with the catalogue.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

MAX_FILTERS = 6
MAX_FILTER_VALUES = 150
NAME_COLUMNS = ("name", "prod_name", "product_name", "productdisplayname", "title",
                "display_name", "productname")
_CODE_SUFFIXES = ("_id", "_no", "_code", "_nr", "_num", "_sku", "id", "sku", "ean", "upc")
_NOT_DISPLAYED = {"split", "path", "file", "filename", "image", "url"}
KIND_WORDS = ("articletype", "product_type", "type", "category", "kind")  # names of kind columns
NEAR_DUPLICATE = 0.85  # share of the other column's uncertainty one column removes
# ... and the coarser must tell something of the finer too: a column with a value per few rows
# (a price) "tells" every coarse column (a gender) without repeating its fact.
BACK_DUPLICATE = 0.25
ROWS_PER_VALUE = 5  # below this a column "determines" others by chance, so it is not compared


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


def determines(a: np.ndarray, b: np.ndarray) -> float:
    """How far knowing column ``a`` tells column ``b`` (rows' integer labels): 1 when each
    value of ``a`` has one value of ``b``, 0 when it says no more than guessing ``b``'s
    commonest value. Shops' CSVs repeat one fact in several columns (a colour group and a
    "perceived colour master", a product type and its product group)."""
    n = len(a)
    if n == 0 or n < ROWS_PER_VALUE * len(np.unique(a)):
        return 0.0
    _, b = np.unique(b, return_inverse=True)
    _, a = np.unique(a, return_inverse=True)
    pairs = np.bincount(a * (int(b.max()) + 1) + b, minlength=(a.max() + 1) * (b.max() + 1))
    purity = pairs.reshape(a.max() + 1, b.max() + 1).max(axis=1).sum() / n
    base = np.bincount(b).max() / n
    return 1.0 if base >= 1.0 else max(0.0, float((purity - base) / (1.0 - base)))


_GENERIC_WORDS = {"name", "no", "id", "code", "nr", "num", "value", "desc"}


def name_words(column: str) -> set[str]:
    """The words of a column's name that say what it is about (colour, product, index)."""
    words = column.replace("-", "_").replace(" ", "_").casefold().split("_")
    return {w for w in words if w and w not in _GENERIC_WORDS}


def near_duplicates(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("", "")) -> bool:
    """One column tells the other (``determines`` >= NEAR_DUPLICATE), and either the other
    tells it back (BACK_DUPLICATE) or their names share a word (colour_group_name and
    perceived_colour_master_name): the same fact twice, not merely a finer column."""
    forth, back = determines(a, b), determines(b, a)
    return max(forth, back) >= NEAR_DUPLICATE and (
        min(forth, back) >= BACK_DUPLICATE or bool(name_words(names[0]) & name_words(names[1])))


def distinct_filters(candidates: list[str], codes: Mapping[str, np.ndarray],
                     counts: Mapping[str, int]) -> list[str]:
    """``candidates`` less near-duplicates (``near_duplicates``): of two, the one with more
    values (the finer) stays, ties to the earlier; the survivors keep the CSV's order."""
    kept: list[str] = []
    for c in sorted(candidates, key=lambda c: (-counts[c], candidates.index(c))):
        if c in codes and any(near_duplicates(codes[c], codes[k], (c, k))
                              for k in kept if k in codes):
            continue
        kept.append(c)
    return [c for c in candidates if c in kept]


def choose_display(stats: dict[str, tuple[list[str], int]], id_column: str = "id",
                   codes: Mapping[str, np.ndarray] | None = None
                   ) -> tuple[list[str], list[str]]:
    """(filter columns, caption columns) from ``{column: (distinct values, rows with a
    value)}`` in the CSV's order: filters are text columns with 2..150 values that are not ids
    or codes, near-duplicates of one another left out when ``codes`` (each column's rows as
    integer labels) are given, at most 6; the caption is the first name-like column."""
    filters = [c for c, (values, filled) in stats.items() if c != id_column
               and c.casefold() not in NAME_COLUMNS and not is_code_column(c, values, filled)
               and 1 < len(set(values) - {""}) <= MAX_FILTER_VALUES]
    if codes:
        filters = distinct_filters(filters, codes, {c: len(stats[c][0]) for c in filters})
    named = [c for c in stats if c.casefold() in NAME_COLUMNS]
    return filters[:MAX_FILTERS], named[:1]


def kind_column(columns: Sequence[str]) -> str | None:
    """The column saying what kind of item each is (articleType, product_type_name, category),
    by its name, never a code column (product_type_no); None when there is none."""
    return next((c for c in columns if any(w in c.casefold() for w in KIND_WORDS)
                 and not is_code_column(c, [])), None)


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
    stats, codes = {}, {}
    for c in order:
        values = [str(r.get(c, "") or "") for r in rows]
        stats[c] = (sorted(set(values) - {""}), sum(1 for v in values if v))
        codes[c] = np.unique(np.array(values, dtype=object), return_inverse=True)[1]
    return choose_display(stats, id_column, codes)


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
