"""Which request paths the demo answers at all: the page, its assets, Gradio's upload, queue and
file routes the page and ``gradio_client`` use, the photo route and the plain HTTP API.

Gradio also serves monitoring (``/monitoring/summary``), a recording processor
(``/gradio_api/process_recording``), an OpenAPI description, run history, "vibe" editing and
more. None of that is needed by the shop page or the documented APIs, and each is attack
surface, so ``ui.guard`` answers 404 for every path not listed here.

The merchandiser's endpoints (``/api/tag``, ``/api/audit``, ``/api/duplicates``) answer only on
a server started with ``--merchandiser``: they read every item's labels and cost a search per
item, and a shopper's page has no use for them (issue 33).
"""

from __future__ import annotations

import re

_API = r"(?:/gradio_api)?"
# (methods, full-match pattern). The page: '/', its config, theme, assets and favicon; its
# events: upload, queue join/data, heartbeat, cancel, reset; gradio_client: info, config,
# upload, queue, call (curl) and file= (downloads of uploads and gallery links).
_ALLOWED: tuple[tuple[frozenset[str], re.Pattern[str]], ...] = tuple(
    (frozenset(methods.split()), re.compile(pattern)) for methods, pattern in (
        ("GET", r"/?"),
        ("GET", rf"{_API}/config/?"),
        ("GET", rf"{_API}/info/?"),
        ("GET", rf"{_API}/theme\.css"),
        ("GET", r"/(?:assets|static|svelte)/[^?#]+"),
        ("GET", r"/favicon\.ico|/manifest\.json|/robots\.txt"),
        ("GET", rf"{_API}/(?:file=|file/).+"),
        ("GET", rf"{_API}/heartbeat/[^/]+"),
        ("GET", rf"{_API}/queue/data"),
        ("GET", rf"{_API}/upload_progress"),
        ("GET", rf"{_API}/startup-events"),
        ("GET", rf"{_API}/call/[A-Za-z0-9_\-]+/[A-Za-z0-9_\-]+"),
        ("POST", rf"{_API}/upload"),
        ("POST", rf"{_API}/queue/join"),
        ("POST", rf"{_API}/cancel"),
        ("POST", rf"{_API}/reset/?"),
        ("POST", rf"{_API}/call/[A-Za-z0-9_\-]+/?"),
        ("GET POST", r"/api/(?:similar|look|basket)"),
        ("GET", r"/fai/photo/.+"),
    ))
MERCHANDISER = re.compile(r"/api/(?:tag|audit|duplicates)")
WEBSOCKET = re.compile(rf"{_API}/(?:queue/join|ws|heartbeat/[^/]+)")


def route_allowed(method: str, path: str, websocket: bool = False,
                  merchandiser: bool = False) -> bool:
    """True if the page or a documented API needs ``method`` on ``path``; the merchandiser's
    endpoints only when the server was started for the merchandiser."""
    if websocket:
        return WEBSOCKET.fullmatch(path) is not None
    method = "GET" if method == "HEAD" else method
    if MERCHANDISER.fullmatch(path) is not None:
        return merchandiser and method in ("GET", "POST")
    return any(method in methods and pattern.fullmatch(path) is not None
               for methods, pattern in _ALLOWED)
