"""At most a few uploads decode at once, whatever the request concurrency.

Each upload is refused by its header above the upload budget, but the budget is per file: six
concurrent progressive-JPEG uploads took the server to 4.5 GB (issue 23). With this cap the
server's decoding memory is bounded by ``SLOTS`` times the budget; a request that waits longer
than ``WAIT_S`` for a slot gets "busy" instead of queuing without end.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

SLOTS = 2  # the machine this targets has 2 cores; more decodes at once only add memory
WAIT_S = 30.0
_slots = threading.BoundedSemaphore(SLOTS)


class Busy(ValueError):
    """Every decode slot stayed taken for WAIT_S seconds (the message is client-safe)."""


@contextmanager
def decode_slot(wait_s: float = WAIT_S) -> Iterator[None]:
    """Hold one of the SLOTS while decoding and embedding an upload."""
    if not _slots.acquire(timeout=wait_s):
        raise Busy("the server is busy decoding other photos; try again in a moment")
    try:
        yield
    finally:
        _slots.release()
