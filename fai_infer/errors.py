"""The runtime's errors, at the bottom of every layer: each message names the input and
what to do, so a CLI or a page shows one line, never a traceback."""

from __future__ import annotations


class CatalogError(RuntimeError):
    """A catalogue that cannot be opened or saved; the message says which and what to do."""


class ImageError(ValueError):
    """An input that cannot be turned into model input; the message names the input and why."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason
