"""What may reach the Gradio app at all: one ASGI middleware in front of every route.

Gradio on its own answers requests for any ``Host`` (a DNS-rebinding page can then drive a
loopback demo from the shopper's browser), fetches from the internet when an input is given as a
URL (a ``FileData`` whose path is ``https://...`` or ``GET /gradio_api/file=https://...``: the
server makes outbound requests and the upload cap never applies), and accepts 1,000 files per
upload request. This guard refuses all of that before Gradio sees it, and serves the catalogue's
photos from ``ui.photos`` (the only local files the demo sends besides Gradio's own cache).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
MAX_JSON_BYTES = 1024 * 1024  # an API call's JSON (files travel through the upload route)
MAX_FILES_PER_REQUEST = 4  # the page uploads one photo at a time
MULTIPART_OVERHEAD = 64 * 1024
SCHEME = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.\-]*:|//|\\\\)")
# Gradio routes that take a path or URL in the request line itself.
FILE_ROUTE = re.compile(r"^(?:/gradio_api)?/(?:file=|file/|proxy=)(?P<target>.*)$")


def allowed_hosts(bind: str, share: bool) -> frozenset[str] | None:
    """Host names the server answers to; None means any (the operator opened it on purpose:
    --share, or --host 0.0.0.0 where LAN clients use addresses we cannot list)."""
    if share or bind in WILDCARD_BINDS:
        return None
    return LOOPBACK_NAMES | {bind.strip("[]").lower()}


def host_name(value: str) -> str:
    """'example.com:7860' -> 'example.com'; '[::1]:7860' -> '::1'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def url_inputs(data: Any, own: Callable[[str], bool] = lambda url: False,
               depth: int = 0) -> list[str]:
    """Every file ``path`` in a JSON payload that is a URL, not a local path: Gradio would
    download it (a local path is still checked to be an upload, by Gradio and by ui.app).
    ``own(url)`` exempts links to this server's own photos (the page echoes them back in
    gallery select events)."""
    found: list[str] = []
    if depth > 32:
        return ["(nested too deeply)"]
    if isinstance(data, dict):
        path = data.get("path")
        if isinstance(path, str) and SCHEME.match(path) and not own(path):
            found.append(path)
        for value in data.values():
            found += url_inputs(value, own, depth + 1)
    elif isinstance(data, list):
        for value in data:
            found += url_inputs(value, own, depth + 1)
    return found


@dataclass
class Refusal(Exception):
    status: int
    message: str


async def _respond(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refusal(400, "client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refusal(413, f"request body over the {limit:,} byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class RequestGuard:
    """ASGI middleware: Host check, no URL inputs, bounded bodies, photos by item id."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str] | None, max_upload_bytes: int,
                 photos: ASGIApp | None = None, photo_prefix: str = "/fai/photo/",
                 api: ASGIApp | None = None, api_paths: tuple[str, ...] = ("/api/similar",
                                                                           "/api/basket")):
        self.app = app
        self.api = api
        self.api_paths = api_paths
        self.hosts = hosts
        self.max_multipart = max_upload_bytes + MULTIPART_OVERHEAD
        self.photos = photos
        self.photo_prefix = photo_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        try:
            self._check_host(scope)
            if scope["type"] == "websocket":
                return await self.app(scope, receive, send)
            path = scope.get("path", "")
            if self.photos is not None and path.startswith(self.photo_prefix):
                return await self.photos(scope, receive, send)
            own_photo = self._own_photo_link(scope, path)
            if own_photo is not None:  # gradio_client fetches gallery links through file=
                return await self.photos(dict(scope, path=own_photo), receive, send)
            self._check_file_route(path)
            # The plain HTTP API gets the same body checks (cap, file count, no URLs).
            target = self.api if self.api is not None and path in self.api_paths else self.app
            if scope.get("method") in ("POST", "PUT", "PATCH"):
                body = await self._checked_body(scope, receive)
                return await target(scope, _replay(body, receive), send)
            if target is not self.app:
                return await target(scope, receive, send)
        except Refusal as refusal:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            return await _respond(send, refusal.status, refusal.message)
        return await self.app(scope, receive, send)

    def _check_host(self, scope: Scope) -> None:
        if self.hosts is None:
            return
        headers = dict(scope.get("headers") or [])
        for key in (b"host", b"x-forwarded-host"):
            if key in headers:
                for value in headers[key].decode("latin-1").split(","):
                    if host_name(value) not in self.hosts:
                        raise Refusal(421, "this server does not answer to that host name")
        if b"host" not in headers:
            raise Refusal(400, "missing Host header")

    def _own_photo_link(self, scope: Scope, path: str) -> str | None:
        """'/gradio_api/file=http://<this server>/fai/photo/ID' -> '/fai/photo/ID', served
        here without any fetch; None for anything else."""
        match = FILE_ROUTE.match(path)
        if match is None or self.photos is None or "/proxy=" in path:
            return None
        return self._photo_path(scope, match["target"])

    def _photo_path(self, scope: Scope, url: str) -> str | None:
        """The photo route path if ``url`` links to this server's photos, else None."""
        target = urlsplit(url)
        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").lower()
        if (self.photos is not None and target.scheme in ("http", "https")
                and target.netloc.lower() == host
                and target.path.startswith(self.photo_prefix) and not target.query):
            return target.path
        return None

    @staticmethod
    def _check_file_route(path: str) -> None:
        match = FILE_ROUTE.match(path)
        if match is None:
            return
        if path.split("/")[-1].startswith("proxy=") or "/proxy=" in path:
            raise Refusal(403, "proxying is disabled")
        if SCHEME.match(match["target"]) or match["target"].startswith("//"):
            raise Refusal(403, "inputs given as URLs are refused: upload the file")

    async def _checked_body(self, scope: Scope, receive: Receive) -> bytes:
        headers = dict(scope.get("headers") or [])
        ctype = headers.get(b"content-type", b"").decode("latin-1")
        multipart = ctype.lower().startswith("multipart/")
        limit = self.max_multipart if multipart else MAX_JSON_BYTES
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Refusal(413, f"request body of {int(declared):,} bytes is over the "
                               f"{limit:,} byte limit")
        body = await _read_body(receive, limit)
        if multipart:
            boundary = re.search(r'boundary="?([^";]+)"?', ctype)
            parts = body.count(b"--" + boundary.group(1).encode()) - 1 if boundary else 0
            if parts > MAX_FILES_PER_REQUEST:
                raise Refusal(413, f"{parts} files in one request; at most "
                                   f"{MAX_FILES_PER_REQUEST} are accepted")
        elif body.strip():
            # Every other body must be JSON, whatever it starts with: JSON parsers skip leading
            # whitespace, so a check keyed on the first byte let ' {"data": [url]}' through.
            try:
                payload = json.loads(body)
            except ValueError:
                raise Refusal(400, "request body is not valid JSON") from None
            if url_inputs(payload, lambda url: self._photo_path(scope, url) is not None):
                raise Refusal(400, "inputs given as URLs are refused: upload the file or "
                                   "name a catalogue item")
        return body
