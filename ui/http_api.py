"""A plain HTTP API beside Gradio's: ``POST /api/similar`` and ``POST /api/basket`` -> JSON.

For a shop's back end that would rather speak curl than gradio_client. It sits behind the same
``RequestGuard`` as the page (loopback by default, Host check, the upload cap, no URL inputs),
and answers through the same search code as the page's own API. Errors are one JSON line that
names the problem, never a server path or exception text.

    curl -F image=@photo.jpg -F k=5 http://127.0.0.1:7860/api/similar
    curl -H 'content-type: application/json' -d '{"id": "15970", "k": 5}' .../api/similar
    curl -H 'content-type: application/json' -d '{"ids": ["15970", "39386"]}' .../api/basket
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any, Callable

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse

from fai_infer import ImageError, safe_json
from fai_infer.catalog import NotInCatalogue
from ui import api_checks
from ui.api_checks import BadRequest


def log_failure(what: str, exc: BaseException) -> None:
    """One line on the server's stderr for a failure the client only hears of as "failed"."""
    text = " ".join(str(exc).split())[:300]
    print(f"ui.app: {what} failed: {type(exc).__name__}: {text}", file=sys.stderr, flush=True)

PATHS = ("/api/similar", "/api/basket")
Search = Callable[[str, Any, Any], list[dict]]


class HttpApi:
    """ASGI app for :data:`PATHS`; ``similar(upload_path, k, where)``, ``similar_id(id, k,
    where)`` and ``basket(ids, k, where)`` do the searching."""

    def __init__(self, similar: Search, similar_id: Search, basket: Search, max_k: int = 50):
        self.max_k = max_k
        self.similar = similar
        self.similar_id = similar_id
        self.basket = basket

    async def __call__(self, scope, receive, send) -> None:
        request = Request(scope, receive)
        if request.method != "POST":
            response = JSONResponse({"error": "use POST"}, status_code=405)
        else:
            response = await self._answer(request)
        await response(scope, receive, send)

    async def _answer(self, request: Request) -> JSONResponse:
        try:
            if request.url.path == "/api/basket":
                body = await _json(request)
                api_checks.check_keys(body, ("ids", "k", "where"))
                hits = await anyio.to_thread.run_sync(
                    self.basket, api_checks.basket_ids(body.get("ids")),
                    api_checks.strict_k(body.get("k", 10), self.max_k), body.get("where", {}))
            elif request.headers.get("content-type", "").startswith("multipart/"):
                hits = await self._upload(request)
            else:
                body = await _json(request)
                api_checks.check_keys(body, ("id", "k", "where"))
                hits = await anyio.to_thread.run_sync(
                    self.similar_id, api_checks.item_id(body),
                    api_checks.strict_k(body.get("k", 10), self.max_k), body.get("where", {}))
        except ImageError as exc:
            return JSONResponse({"error": f"cannot use this image: {exc.reason}"}, 400)
        except NotInCatalogue as exc:
            return JSONResponse({"error": api_checks.missing_item(exc.item_id)}, 404)
        except ValueError as exc:  # BadRequest and the search's own checks (k, where)
            return JSONResponse({"error": str(exc)}, 400)
        except Exception as exc:  # never pass internals (paths, stack details) to a client
            log_failure(request.url.path, exc)  # ... but the shop's operator sees why
            return JSONResponse({"error": "the search failed on the server"}, 500)
        return JSONResponse({"hits": hits})

    async def _upload(self, request: Request) -> list[dict]:
        form = await request.form(max_files=1, max_fields=4)
        api_checks.check_keys(dict(form), ("image", "k", "where"))
        k = api_checks.strict_k(form.get("k") or "10", self.max_k, form=True)
        image = form.get("image")
        if image is None or isinstance(image, str):
            raise BadRequest("multipart requests need the photo in a file field 'image'")
        try:
            where = safe_json.loads(str(form.get("where") or "{}"))
        except ValueError:
            raise BadRequest("where must be a JSON object") from None
        data = await image.read()
        fd, path = tempfile.mkstemp(prefix="fai-api-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return await anyio.to_thread.run_sync(self.similar, path, k, where)
        finally:
            os.unlink(path)


async def _json(request: Request) -> dict:
    try:
        body = safe_json.loads(await request.body() or b"{}")
    except safe_json.TooDeep:
        raise BadRequest("the body is nested too deeply") from None
    except ValueError:
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body
