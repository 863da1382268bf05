"""Metadata filters: one parser for the Python API, the CLI, the UI and remote back ends.

A filter is a list of ``Clause``s that all must hold. Equality is case-insensitive and several
``=`` on one column mean any-of (``gender=Men --where gender=Women``); ``!=`` excludes; ``<``,
``<=``, ``>``, ``>=`` compare numbers, and a row whose value is not a number never passes a
range. Accepted forms, mixed freely in a list:

- a mapping ``{"gender": "Women"}`` or ``{"gender": ["Men", "Women"]}`` (equality);
- strings ``"gender=Women"``, ``"gender!=Men"``, ``"price<50"``, ``"price>=10"``;
- ``Clause`` objects.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence, Union

OPS = ("in", "not_in", "<", "<=", ">", ">=")
RANGE_OPS = ("<", "<=", ">", ">=")
MAX_CLAUSES = 64
_TEXT = re.compile(r"^\s*([^=!<>]+?)\s*(!=|<=|>=|=|<|>)\s*(.*?)\s*$", re.S)


@dataclass(frozen=True)
class Clause:
    """``column op values``: for "in"/"not_in" a tuple of casefolded strings, else a float."""

    column: str
    op: str
    values: tuple[str, ...] | float

    def __str__(self) -> str:
        if self.op in RANGE_OPS:
            return f"{self.column}{self.op}{self.values:g}"
        sign = "=" if self.op == "in" else "!="
        return " or ".join(f"{self.column}{sign}{v}" for v in self.values)


Where = Union[Mapping[str, Any], Sequence[Union[str, Clause, Mapping[str, Any]]], str, None]


# "9,99" and "1.234,56" (decimal comma, as many European shops write prices) and "1,234.50"
# (thousands commas). A comma before exactly three digits stays a thousands separator.
_DECIMAL_COMMA = re.compile(r"[+-]?(?:\d{1,3}(?:\.\d{3})+|\d+),\d{1,2}")
_THOUSANDS_COMMA = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def number(text: str) -> float | None:
    """The float a metadata value stands for ("49.90", " 12 ", "1e3", "9,99", "1.234,56",
    "1,234.50"), or None."""
    text = str(text).strip()
    if _DECIMAL_COMMA.fullmatch(text):
        text = text.replace(".", "").replace(",", ".")
    elif _THOUSANDS_COMMA.fullmatch(text):
        text = text.replace(",", "")
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_clause(text: str) -> Clause:
    """``"price<50"`` -> Clause; a malformed clause is a ValueError quoting it."""
    match = _TEXT.match(str(text))
    if not match or not match.group(1).strip():
        raise ValueError(f"filter {text!r}: expected column=value, column!=value or a "
                         f"range such as price<50")
    column, op, value = match.group(1).strip(), match.group(2), match.group(3)
    if op in RANGE_OPS:
        bound = number(value)
        if bound is None:
            raise ValueError(f"filter {text!r}: {value!r} is not a number")
        return Clause(column, op, bound)
    return Clause(column, "in" if op == "=" else "not_in", (value.casefold(),))


def _from_mapping(where: Mapping[str, Any]) -> list[Clause]:
    out = []
    for column, wanted in where.items():
        values = [wanted] if isinstance(wanted, (str, int, float)) else list(wanted)
        out.append(Clause(str(column), "in", tuple(str(v).casefold() for v in values)))
    return out


def parse_where(where: Where) -> list[Clause]:
    """Every accepted form -> a normalised list (``=`` clauses on one column merged)."""
    if where is None:
        return []
    items: Iterable[Any] = [where] if isinstance(where, (str, Mapping, Clause)) else where
    clauses: list[Clause] = []
    for item in items:
        if isinstance(item, Clause):
            if item.op not in OPS:
                raise ValueError(f"filter on {item.column!r}: unknown operator {item.op!r}")
            clauses.append(item)
        elif isinstance(item, Mapping):
            clauses += _from_mapping(item)
        elif isinstance(item, str):
            clauses.append(parse_clause(item))
        else:
            raise ValueError(f"filter {item!r}: expected 'column=value' text or a mapping")
    if len(clauses) > MAX_CLAUSES:
        raise ValueError(f"at most {MAX_CLAUSES} filter clauses, got {len(clauses)}")
    merged: dict[str, list[str]] = {}
    rest: list[Clause] = []
    for c in clauses:
        if c.op == "in":
            merged.setdefault(c.column, [])
            merged[c.column] += [v for v in c.values if v not in merged[c.column]]
        else:
            rest.append(c)
    return [Clause(col, "in", tuple(vals)) for col, vals in merged.items()] + rest


def passes(clauses: Sequence[Clause], row: Mapping[str, str]) -> bool:
    """Whether one metadata row passes: the reference semantics other back ends must match."""
    for c in clauses:
        value = str(row.get(c.column, "") or "")
        if c.op == "in" and value.casefold() not in c.values:
            return False
        if c.op == "not_in" and value.casefold() in c.values:
            return False
        if c.op in RANGE_OPS:
            x = number(value)
            if x is None or not _compare(x, c.op, float(c.values)):
                return False
    return True


def _compare(x: float, op: str, bound: float) -> bool:
    return {"<": x < bound, "<=": x <= bound, ">": x > bound, ">=": x >= bound}[op]


def compare_array(values, op: str, bound: float):
    """Vectorised ``_compare`` over a numpy array (NaN never passes)."""
    import numpy as np

    with np.errstate(invalid="ignore"):
        return {"<": values < bound, "<=": values <= bound, ">": values > bound,
                ">=": values >= bound}[op] & ~np.isnan(values)
