"""A plain HTTP API beside Gradio's: ``POST /api/similar`` and ``POST /api/basket`` -> JSON.

For a shop's back end that would rather speak curl than gradio_client. It sits behind the same
``RequestGuard`` as the page (loopback by default, Host check, the upload cap, no URL inputs),
and answers through the same service as the page (``ui/service.py``, no Gradio). Errors are
one JSON line that names the problem, never a server path or exception text.

    curl -F image=@photo.jpg -F k=5 http://127.0.0.1:7860/api/similar
    curl -H 'content-type: application/json' -d '{"id": "15970", "k": 5}' .../api/similar
    curl -H 'content-type: application/json' -d '{"ids": ["15970", "39386"]}' .../api/basket
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import TYPE_CHECKING, Any, Callable

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse

from fai_infer.hits import NotInCatalogue
from fai_infer.preprocess import ImageError

if TYPE_CHECKING:
    from ui.service import ShopService


def log_failure(what: str, exc: BaseException) -> None:
    """One line on the server's stderr for a failure the client only hears of as "failed"."""
    text = " ".join(str(exc).split())[:300]
    print(f"ui.app: {what} failed: {type(exc).__name__}: {text}", file=sys.stderr, flush=True)

PATHS = ("/api/similar", "/api/basket")
Search = Callable[[str, Any, Any], list[dict]]


class BadRequest(ValueError):
    """A request this API cannot answer; its message is safe to show the client."""


class HttpApi:
    """ASGI app for :data:`PATHS`; ``similar(upload_path, k, where)``, ``similar_id(id, k,
    where)`` and ``basket(ids, k, where)`` do the searching."""

    def __init__(self, similar: Search, similar_id: Search, basket: Search):
        self.similar = similar
        self.similar_id = similar_id
        self.basket = basket

    @classmethod
    def for_service(cls, service: "ShopService") -> "HttpApi":
        """The API of a shop's service (``ui/service.py``), the one the page stands on too."""
        return cls(service.answer, service.answer_id, service.answer_basket)

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
                hits = await anyio.to_thread.run_sync(
                    self.basket, body.get("ids"), body.get("k", 10), body.get("where", {}))
            elif request.headers.get("content-type", "").startswith("multipart/"):
                hits = await self._upload(request)
            else:
                body = await _json(request)
                if not isinstance(body.get("id"), str):
                    raise BadRequest("send a photo as multipart field 'image', or JSON with "
                                     "an item 'id'")
                hits = await anyio.to_thread.run_sync(
                    self.similar_id, body["id"], body.get("k", 10), body.get("where", {}))
        except ImageError as exc:
            return JSONResponse({"error": f"cannot use this image: {exc.reason}"}, 400)
        except NotInCatalogue:
            return JSONResponse({"error": "that item is not in the catalogue"}, 404)
        except ValueError as exc:  # BadRequest and the search's own checks (k, where)
            return JSONResponse({"error": str(exc)}, 400)
        except Exception as exc:  # never pass internals (paths, stack details) to a client
            log_failure(request.url.path, exc)  # ... but the shop's operator sees why
            return JSONResponse({"error": "the search failed on the server"}, 500)
        return JSONResponse({"hits": hits})

    async def _upload(self, request: Request) -> list[dict]:
        form = await request.form(max_files=1, max_fields=4)
        image = form.get("image")
        if image is None or isinstance(image, str):
            raise BadRequest("multipart requests need the photo in a file field 'image'")
        try:
            where = json.loads(str(form.get("where") or "{}"))
        except ValueError:
            raise BadRequest("where must be a JSON object") from None
        data = await image.read()
        fd, path = tempfile.mkstemp(prefix="fai-api-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return await anyio.to_thread.run_sync(self.similar, path, form.get("k") or 10,
                                                  where)
        finally:
            os.unlink(path)


async def _json(request: Request) -> dict:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body
