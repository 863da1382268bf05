"""Strict checks for the plain HTTP API's arguments: a 400 that names the key, never a guess.

Before issue 23 the API turned ``k`` 0, -3, 2.5 and 5000 into 1, 1, 2 and 50, ignored unknown
keys (a typo such as ``"wher"`` returned unfiltered results), answered a number given as an id
with a message about photos, and took baskets of any size (40,000 ids cost about a minute of
CPU in one request). Every message here is safe to send to a client. ``colour`` (how much colour counts, 0..1) is
checked here for its type; its range and the model's support by the search
(``fai_infer/model/parts.py``).
"""

from __future__ import annotations

from typing import Any

MAX_BASKET = 100  # items in one basket request (and on the page)
MAX_ID_SHOWN = 80  # characters of a client's id echoed in a message


class BadRequest(ValueError):
    """A request this API cannot answer; its message is safe to show the client."""


class Busy(Exception):
    """The server will not start this work now (another heavy job runs); a 503 whose message
    is safe to show the client."""


def check_keys(body: dict, allowed: tuple[str, ...]) -> None:
    """Refuse any key the endpoint does not know, naming it (a typo must not be ignored)."""
    unknown = [str(key) for key in body if key not in allowed]
    if unknown:
        raise BadRequest(f"unknown key {shown(unknown[0])}; this endpoint takes "
                         + ", ".join(repr(k) for k in allowed))


def colour_value(value: Any, form: bool = False) -> float | None:
    """The request's ``colour``: a number 0..1 (a form field's text in multipart), or absent.
    Range and the model's support are checked by the search (``fai_infer/model/parts.py``)."""
    if value is None or (form and value == ""):
        return None
    if form:
        try:
            return float(str(value))
        except ValueError:
            raise BadRequest("colour must be a number from 0 to 1") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest("colour must be a number from 0 to 1")
    try:
        return float(value)
    except OverflowError:  # a JSON integer of thousands of digits (issue 33: was a 500)
        raise BadRequest("colour must be a number from 0 to 1") from None


def strict_k(value: Any, max_k: int, form: bool = False) -> int:
    """``k`` as a whole number 1..max_k: a JSON integer, or digits in a form field."""
    if form and isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= max_k:
        raise BadRequest(f"'k' must be a whole number from 1 to {max_k}, got {shown(value)}")
    return value


def item_id(body: dict) -> str:
    """The ``id`` of a JSON /api/similar request, with a message that says what is wrong."""
    if "id" not in body:
        raise BadRequest("send a photo as multipart field 'image', or JSON with an item 'id'")
    value = body["id"]
    if not isinstance(value, str):
        kind = "a number" if isinstance(value, (int, float)) else type(value).__name__
        raise BadRequest(f"'id' must be a string such as \"15970\", got {kind}: "
                         f"{shown(value)}")
    return value


def basket_ids(value: Any) -> list[str]:
    """The ``ids`` of a basket: a non-empty list of at most MAX_BASKET strings."""
    if not isinstance(value, list) or not value:
        raise BadRequest("'ids' must be a non-empty list of catalogue item ids")
    if len(value) > MAX_BASKET:
        raise BadRequest(f"'ids' has {len(value):,} items; a basket holds at most {MAX_BASKET}")
    for entry in value:
        if not isinstance(entry, str):
            raise BadRequest(f"'ids' must hold strings such as \"15970\", got {shown(entry)}")
    return value


def shown(value: Any) -> str:
    """A client's value, quoted and cut short, for a message."""
    text = repr(value)
    return text if len(text) <= MAX_ID_SHOWN else text[: MAX_ID_SHOWN - 3] + "..."


def missing_item(item: str) -> str:
    """The message for an id that is not in the catalogue, naming it."""
    return f"item {shown(item)} is not in the catalogue"
