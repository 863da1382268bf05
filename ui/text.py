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
