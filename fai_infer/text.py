"""Small text helpers every layer uses: one-line values and comparable ids."""

from __future__ import annotations


def normalise_id(text: str) -> str:
    """The id a join compares with ``--id-normalise``: case folded, surrounding space and
    leading zeros stripped ("0111565001" and "111565001 " meet)."""
    folded = str(text).strip().casefold()
    return folded.lstrip("0") or ("0" if folded else "")


def shorten(text: str, limit: int = 60) -> str:
    """A value for a one-line message: hostile 100 kB cells must not become 100 kB lines."""
    text = str(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."
