"""A plain HTTP API beside Gradio's: ``POST /api/similar``, ``/api/look`` and ``/api/basket``
-> JSON.

For a shop's back end that would rather speak curl than gradio_client. It sits behind the same
``RequestGuard`` as the page (loopback by default, Host check, the upload cap, no URL inputs),
and answers through the same service as the page (``ui/service.py``, no Gradio). Errors are
one JSON line that names the problem, never a server path or exception text.

    curl -F image=@photo.jpg -F k=5 http://127.0.0.1:7860/api/similar
    curl -H 'content-type: application/json' -d '{"id": "15970", "k": 5}' .../api/similar
    curl -H 'content-type: application/json' -d '{"ids": ["15970", "39386"]}' .../api/basket
    curl -H 'content-type: application/json' -d '{"id": "15970", "colour": 0}' .../api/similar
    curl -F image=@outfit.jpg -F k=4 http://127.0.0.1:7860/api/look   # one row per garment

A photo search answers with each hit's ``region`` (what was embedded: a garment group or
"whole photo"); ``/api/look`` answers ``{"size", "garments": [{group, kind, box, confidence,
share, hits}], "message"}``, and a photo with no garment has no rows and a message in words.

Every request may carry ``colour`` (0..1: how much colour counts, 0 = this design in any
colour; models with a colour part only); keys an endpoint does not know are refused by name.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import TYPE_CHECKING, Any, Callable

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse

from fai_infer import safe_json
from fai_infer.index.hits import NotInCatalogue
from fai_infer.image.preprocess import ImageError
from ui.api_checks import (BadRequest, Busy, basket_ids, check_keys, colour_value,  # noqa: F401
                           item_id, missing_item, strict_k)

if TYPE_CHECKING:
    from ui.merchandising import MerchService
    from ui.service import ShopService


def log_failure(what: str, exc: BaseException) -> None:
    """One line on the server's stderr for a failure the client only hears of as "failed"."""
    text = " ".join(str(exc).split())[:300]
    print(f"ui.app: {what} failed: {type(exc).__name__}: {text}", file=sys.stderr, flush=True)

SHOPPER_PATHS = ("/api/similar", "/api/look", "/api/basket")
PATHS = SHOPPER_PATHS + ("/api/tag", "/api/audit", "/api/duplicates")  # with --merchandiser
TOOL_KEYS = {"/api/tag": ("columns", "where", "limit"), "/api/audit": ("column", "where", "limit"),
             "/api/duplicates": ("threshold", "limit")}
Search = Callable[[Any, Any, Any, float | None], list[dict]]
Look = Callable[[str, int, Any, float | None], dict]


class HttpApi:
    """ASGI app for :data:`PATHS`; ``similar(upload_path, k, where)``, ``similar_id(id, k,
    where)``, ``basket(ids, k, where)`` and ``look(upload_path, k, where)`` do the searching
    (each also takes the colour weight)."""

    def __init__(self, similar: Search, similar_id: Search, basket: Search,
                 tools: "MerchService | None" = None, max_k: int = 50,
                 look: Look | None = None):
        self.max_k = max_k
        self.similar = similar
        self.similar_id = similar_id
        self.basket = basket
        self.tools = tools
        self.look = look

    @classmethod
    def for_service(cls, service: "ShopService", tools: "MerchService | None" = None
                    ) -> "HttpApi":
        """The API of a shop's service (``ui/service.py``), the one the page stands on too,
        and the merchandiser's tools (``ui/merchandising.py``) where given."""
        from ui.service import MAX_K

        return cls(service.answer, service.answer_id, service.answer_basket, tools, MAX_K,
                   service.answer_look)

    def _tool(self, path: str, body: dict) -> list[dict]:
        """tag / audit / duplicates: read-only findings (``ui/merchandising.py``)."""
        check_keys(body, TOOL_KEYS[path])
        limit = body.get("limit", 50)
        if path == "/api/tag":
            return self.tools.answer_tag(body.get("columns"), body.get("where", {}), limit)
        if path == "/api/audit":
            return self.tools.answer_audit(body.get("column"), body.get("where", {}), limit)
        return self.tools.answer_duplicates(body.get("threshold"), limit)

    async def __call__(self, scope, receive, send) -> None:
        request = Request(scope, receive)
        if request.method != "POST":
            response = JSONResponse({"error": "use POST"}, status_code=405)
        else:
            response = await self._answer(request)
        await response(scope, receive, send)

    async def _answer(self, request: Request) -> JSONResponse:
        try:
            if request.url.path in TOOL_KEYS:
                if self.tools is None:
                    return JSONResponse({"error": "not found"}, 404)
                body = await _json(request)
                found = await anyio.to_thread.run_sync(self._tool, request.url.path, body)
                key = "groups" if request.url.path == "/api/duplicates" else (
                    "suggestions" if request.url.path == "/api/tag" else "findings")
                return JSONResponse({key: found})
            if request.url.path == "/api/look":
                if self.look is None:
                    return JSONResponse({"error": "not found"}, 404)
                if not request.headers.get("content-type", "").startswith("multipart/"):
                    raise BadRequest("send the outfit photo as multipart field 'image'")
                return JSONResponse(await self._upload(request, self.look))
            if request.url.path == "/api/basket":
                body = await _json(request)
                check_keys(body, ("ids", "k", "where", "colour"))
                hits = await anyio.to_thread.run_sync(
                    self.basket, basket_ids(body.get("ids")),
                    strict_k(body.get("k", 10), self.max_k), body.get("where", {}),
                    colour_value(body.get("colour")))
            elif request.headers.get("content-type", "").startswith("multipart/"):
                hits = await self._upload(request)
            else:
                body = await _json(request)
                check_keys(body, ("id", "k", "where", "colour"))
                hits = await anyio.to_thread.run_sync(
                    self.similar_id, item_id(body), strict_k(body.get("k", 10), self.max_k),
                    body.get("where", {}), colour_value(body.get("colour")))
        except ImageError as exc:
            return JSONResponse({"error": f"cannot use this image: {exc.reason}"}, 400)
        except Busy as exc:
            return JSONResponse({"error": str(exc)}, 503)
        except NotInCatalogue as exc:
            return JSONResponse({"error": missing_item(exc.item_id)}, 404)
        except ValueError as exc:  # BadRequest and the search's own checks (k, where)
            return JSONResponse({"error": str(exc)}, 400)
        except Exception as exc:  # never pass internals (paths, stack details) to a client
            log_failure(request.url.path, exc)  # ... but the shop's operator sees why
            return JSONResponse({"error": "the search failed on the server"}, 500)
        return JSONResponse({"hits": hits})

    async def _upload(self, request: Request, answer: Callable | None = None) -> Any:
        """A multipart photo request, answered by ``answer`` (default: the photo search)."""
        form = await request.form(max_files=1, max_fields=5)
        check_keys(dict(form), ("image", "k", "where", "colour"))
        k = strict_k(form.get("k") or "10", self.max_k, form=True)
        colour = colour_value(form.get("colour"), form=True)
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
            return await anyio.to_thread.run_sync(answer or self.similar, path, k, where,
                                                  colour)
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
