"""Catalogue photos served by item id, and only as images.

The demo used to allow every photo's folder wholesale, so any file beside or below a photo
(a private key, an HTML page that then ran script on the demo's origin) could be fetched by
path. Here a request names an item id; the file is the catalogue's own path for that id, sent
only if its first bytes are a known image signature, with that image's content type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable
from urllib.parse import quote

import anyio

from fai_infer.image.preprocess import header_size

PREFIX = "/fai/photo/"
MAX_PHOTO_BYTES = 32 * 1024 * 1024
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif",
                 "bmp": "image/bmp", "webp": "image/webp", "tiff": "image/tiff"}
SAFE_HEADERS = [(b"x-content-type-options", b"nosniff"),
                (b"content-security-policy", b"default-src 'none'; sandbox"),
                (b"cache-control", b"private, max-age=300")]


def photo_url(item_id: str, origin: str = "") -> str:
    """Where the page fetches an item's photo (``origin`` like 'http://127.0.0.1:7860')."""
    return f"{origin.rstrip('/')}{PREFIX}{quote(item_id, safe='')}"


def read_photo(path: str) -> tuple[bytes, str] | None:
    """(bytes, content type) if the file is an image of a known format, else None."""
    try:
        file = Path(path)
        if not file.is_file() or file.stat().st_size > MAX_PHOTO_BYTES:
            return None
        data = file.read_bytes()
    except OSError:
        return None
    fmt, _ = header_size(data[:64])
    kind = CONTENT_TYPES.get(fmt)
    return (data, kind) if kind else None


class PhotoRoute:
    """ASGI app for GET/HEAD ``/fai/photo/<item id>``; ``lookup`` maps an id to its file."""

    def __init__(self, lookup: Callable[[str], str | None]):
        self.lookup = lookup

    async def __call__(self, scope, receive, send) -> None:
        status, headers, body = 404, [(b"content-type", b"text/plain")], b"no such photo"
        if scope.get("method") not in ("GET", "HEAD"):
            status, body = 405, b"method not allowed"
        else:
            item_id = scope["path"][len(PREFIX):]  # ASGI has already percent-decoded it
            path = self.lookup(item_id)
            found = await anyio.to_thread.run_sync(read_photo, path) if path else None
            if found is not None:
                body, kind = found
                status, headers = 200, [(b"content-type", kind.encode())]
        headers = headers + SAFE_HEADERS + [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body",
                    "body": b"" if scope.get("method") == "HEAD" else body})
