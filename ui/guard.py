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
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from fai_infer import safe_json
from ui.routes import route_allowed

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
    if share or bind in WILDCARD_BINDS or bind.strip("[]") in WILDCARD_BINDS:
        return None
    return LOOPBACK_NAMES | {bind.strip("[]").lower()}


def bind_address(host: str) -> str:
    """--host as Gradio can bind it: a bare IPv6 address ('::1', '::') in brackets, since
    Gradio builds 'http://HOST:PORT/' from it and crashed at start on '::1:7860'."""
    host = host.strip()
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def host_name(value: str) -> str:
    """'example.com:7860' -> 'example.com'; '[::1]:7860' -> '::1'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def default_upload_dir() -> str:
    """Where Gradio stores uploads (the same rule as ``gradio.utils.get_upload_folder``)."""
    return os.environ.get("GRADIO_TEMP_DIR") or str(
        (Path(tempfile.gettempdir()) / "gradio").resolve())


def file_paths(data: Any, depth: int = 0) -> list[Any]:
    """The ``path`` of every file object (a dict with a ``path`` key) in a JSON payload."""
    found: list[Any] = []
    if depth > safe_json.MAX_DEPTH:
        return ["(nested too deeply)"]
    if isinstance(data, dict):
        if "path" in data:
            found.append(data["path"])
        for value in data.values():
            found += file_paths(value, depth + 1)
    elif isinstance(data, list):
        for value in data:
            found += file_paths(value, depth + 1)
    return found


def url_inputs(data: Any, own: Callable[[str], bool] = lambda url: False,
               depth: int = 0) -> list[str]:
    """Every file ``path`` in a JSON payload that is a URL, not a local path: Gradio would
    download it. No URL is exempt, not even one naming this server (issue 23: with a wildcard
    bind the Host is the client's choice, so "our own" link reached an attacker's host)."""
    return [p for p in file_paths(data, depth)
            if not isinstance(p, str) or SCHEME.match(p) or p.startswith("//")]


def foreign_paths(data: Any, upload_dir: str) -> list[Any]:
    """File paths that are not inside Gradio's upload folder: only uploads this server stored
    itself may be named by a client."""
    root = os.path.realpath(upload_dir)
    out = []
    for path in file_paths(data):
        if not isinstance(path, str) or not os.path.isabs(path) or "\0" in path:
            out.append(path)
            continue
        real = os.path.realpath(path)
        if os.path.commonpath([real, root]) != root or real == root:
            out.append(path)
    return out


def without_event_files(payload: Any) -> tuple[Any, bool]:
    """The payload with file objects in ``event_data`` replaced by None (the page's gallery
    echoes its photo links there; the app reads only the clicked index), and whether any were
    dropped."""
    if not isinstance(payload, dict) or not isinstance(payload.get("event_data"), (dict, list)):
        return payload, False

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return None if "path" in value else {k: strip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    cleaned = strip(payload["event_data"])
    if cleaned == payload["event_data"]:
        return payload, False
    return dict(payload, event_data=cleaned), True


def _netloc(value: str, scheme: str) -> str:
    """'Host:80' -> 'host' for http (default ports dropped), lower case."""
    value = value.strip().lower()
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    return value[: -len(default)] if default and value.endswith(default) else value


def same_origin(origin: str, host: str, names_only: bool = False) -> bool:
    """Whether a browser's ``Origin`` is the site at ``host`` (a Host header value).
    ``names_only`` ignores ports (--share: a tunnel may rewrite them)."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or not host.strip():
        return False  # 'null' (sandboxed frames, file: pages) and anything odd
    if names_only:
        return host_name(parts.netloc) == host_name(host)
    return _netloc(parts.netloc, parts.scheme) == _netloc(host, parts.scheme)


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
                                                                           "/api/basket"),
                 upload_dir: str | None = None, share: bool = False,
                 merchandiser: bool = False):
        self.app = app
        self.merchandiser = merchandiser  # the merchandiser's endpoints answer (ui.routes)
        self.upload_dir = upload_dir or default_upload_dir()
        self.share = share
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
            self._check_origin(scope)
            path = scope.get("path", "")
            if scope["type"] == "websocket":
                if not route_allowed("GET", path, websocket=True):
                    raise Refusal(404, "not found")
                return await self.app(scope, receive, send)
            if self.photos is not None and path.startswith(self.photo_prefix):
                return await self.photos(scope, receive, send)
            own_photo = self._own_photo_link(scope, path)
            if own_photo is not None:  # gradio_client fetches gallery links through file=
                return await self.photos(dict(scope, path=own_photo), receive, send)
            self._check_file_route(path)
            if not route_allowed(scope.get("method", "GET"), path,
                                 merchandiser=self.merchandiser):
                raise Refusal(404, "not found")  # only what the page and the documented APIs use
            # The plain HTTP API gets the same body checks (cap, file count, no URLs).
            target = self.api if self.api is not None and path in self.api_paths else self.app
            if scope.get("method") in ("POST", "PUT", "PATCH"):
                body = await self._checked_body(scope, receive, api=path in self.api_paths)
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

    def _check_origin(self, scope: Scope) -> None:
        """Refuse requests a browser sends on behalf of another site (CORS and CSRF): Gradio
        reflects any Origin with credentials unless the Host is one of a few loopback names,
        so with --host ::1, a LAN address or 0.0.0.0 any web page could read the API."""
        headers = dict(scope.get("headers") or [])
        origin = headers.get(b"origin")
        if origin is None:
            return
        hosts = [headers.get(key, b"").decode("latin-1").split(",")[0]
                 for key in (b"host", b"x-forwarded-host") if key in headers]
        if not any(same_origin(origin.decode("latin-1"), host, self.share) for host in hosts):
            raise Refusal(403, "requests from another site's pages are refused")

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

    async def _checked_body(self, scope: Scope, receive: Receive, api: bool = False) -> bytes:
        """The request body, refused unless within its caps and free of URL inputs and
        foreign files. ``api``: a plain HTTP API body, whose ``where`` holds filter values
        (a column may be called ``path``), never files; everything else in it is checked."""
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
            if len(re.findall(r"(?:^|[;\s])boundary\s*=", ctype, re.IGNORECASE)) != 1:
                raise Refusal(400, "a multipart request needs exactly one boundary parameter")
            boundary = re.search(r'boundary="?([^";]+)"?', ctype, re.IGNORECASE)
            parts = body.count(b"--" + boundary.group(1).encode()) - 1 if boundary else 0
            if parts > MAX_FILES_PER_REQUEST:
                raise Refusal(413, f"{parts} files in one request; at most "
                                   f"{MAX_FILES_PER_REQUEST} are accepted")
        elif body.strip():
            # Every other body must be JSON, whatever it starts with: JSON parsers skip leading
            # whitespace, so a check keyed on the first byte let ' {"data": [url]}' through.
            try:
                payload = safe_json.loads(body)
            except safe_json.TooDeep:
                raise Refusal(400, "request body is nested too deeply") from None
            except ValueError:
                raise Refusal(400, "request body is not valid JSON") from None
            payload, stripped = without_event_files(payload)
            checked = payload
            if api and isinstance(payload, dict):
                checked = {k: v for k, v in payload.items() if k != "where"}
            if url_inputs(checked):
                raise Refusal(400, "inputs given as URLs are refused: upload the file or "
                                   "name a catalogue item")
            if foreign_paths(checked, self.upload_dir):
                raise Refusal(400, "only files uploaded to this server can be named")
            if stripped:
                body = json.dumps(payload).encode()
        return body


class NoCors:
    """Stands in for Gradio's CORS middleware: the page and the APIs are same-origin, so no
    ``Access-Control-*`` header is ever sent (Gradio's reflected any Origin, with credentials,
    whenever the Host was not one of its loopback names, e.g. ``[::1]`` or a LAN address)."""

    def __init__(self, app: ASGIApp, **_: Any):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def disable_gradio_cors() -> None:
    """Make Gradio build its app with :class:`NoCors` (call before ``launch``)."""
    import gradio.routes

    gradio.routes.CustomCORSMiddleware = NoCors  # type: ignore[attr-defined]
