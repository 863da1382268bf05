"""Untrusted text (ids, file names, metadata) made inert before the page renders it."""

from __future__ import annotations

import html
import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def markdown_escape(text: object) -> str:
    """Text shown literally inside gr.Markdown: a file named ``![t](https:203.0.113.9).jpg``
    must not become an image the browser fetches, nor ``<img>`` an element."""
    s = html.escape(str(text), quote=False)
    s = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in s)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", s)


_NAME_SUFFIXES = ("_name", "_names", " name")


def readable_column(column: str) -> str:
    """A column name a shopper can read: 'perceived_colour_value_name' -> 'Perceived colour
    value', 'articleType' -> 'Article type', 'baseColour' -> 'Base colour'."""
    text = column.strip()
    for suffix in _NAME_SUFFIXES:
        if text.casefold().endswith(suffix) and len(text) > len(suffix):
            text = text[: -len(suffix)]
            break
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text)  # camelCase
    text = " ".join(re.split(r"[_\-\s.]+", text)).strip().lower()
    return (text[:1].upper() + text[1:]) if text else column


def parse_labels(text: str | None) -> dict[str, str]:
    """--labels 'product_type_name=Type,colour_group_name=Colour' -> {column: label}; one
    ValueError for a piece without '='."""
    out: dict[str, str] = {}
    for piece in (text or "").split(","):
        if not piece.strip():
            continue
        column, sep, label = piece.partition("=")
        if not sep or not column.strip() or not label.strip():
            raise ValueError(f"--labels: expected COLUMN=Label, got {piece.strip()!r}")
        out[column.strip()] = label.strip()
    return out


_PRICE = re.compile(r"(?<![\w.])\d{1,5}[.,]\d{2}(?:\s*:-)?(?![\w.])")  # '24.99', '19.99:-'
_BRACKET_CODE = re.compile(r"\s*\((?:[A-Za-z]|\d{1,2})\)")  # '(1)', '(J)'
_TRAILING_CODE = re.compile(r"(?:\s+(?:opt\.?\s?\d+|[A-Za-z]{1,2}\.?\d{1,2}))+\s*$",
                            re.IGNORECASE)  # ' B2', ' S.1', ' opt2' at the end


def shopper_name(text: str) -> str:
    """A product name as a shopper should read it: a shop's own name column often carries
    buying-office text ('Printed CF Hood 24.99 B2', 'JENKINS DRESS 19.99:-', 'Matey(1)'):
    prices, bracketed and trailing codes go, shouting is calmed to capitalised words. The
    first word always stays, so a name is never emptied."""
    raw = " ".join(str(text).split())
    raw = _BRACKET_CODE.sub("", raw).strip() or raw
    words = raw.split(" ")
    if len(words) < 2:
        return raw
    head, rest = words[0], " ".join(words[1:])
    rest = _PRICE.sub(" ", rest)
    rest = _TRAILING_CODE.sub("", " " + rest).strip()
    name = " ".join(f"{head} {rest}".split())
    letters = [c for c in name if c.isalpha()]
    if letters and sum(c.isupper() for c in letters) > 0.8 * len(letters):
        name = " ".join(w.capitalize() if w.isalpha() and len(w) > 3 else w
                        for w in name.split())
    return name
