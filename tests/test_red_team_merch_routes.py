"""Issue 33, point 2: the shopper's server does not answer the merchandiser's endpoints.

Before, ``launch()`` always built the merchandiser's service, so a shopper page on a LAN
answered ``/api/tag``, ``/api/audit`` and ``/api/duplicates`` with 200. Both modes are started
here in this process through ``ui.app.launch`` and asked over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest

pytest.importorskip("gradio")
from tests.helpers import write_products  # noqa: E402

TOOLS = ("/api/tag", "/api/audit", "/api/duplicates")
BODIES = {"/api/tag": {"columns": ["colour"]},
          "/api/audit": {"column": "colour"}, "/api/duplicates": {}}


def post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    from fai_infer import Catalog

    tmp = tmp_path_factory.mktemp("merch")
    write_products(tmp / "shop", 8)
    Catalog.build(tmp / "shop" / "images", tmp / "shop" / "metadata.csv").save(tmp / "cat")
    return tmp


def serve(catalogue, *flags: str):
    """(url, app) of an in-process server started by ``ui.app.launch``."""
    from ui.app import launch, parse_args

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = parse_args(["--index", str(catalogue / "cat"), "--port", str(port),
                      "--cache-dir", str(catalogue / "cache"), *flags])
    app = launch(cfg, block=False)
    return f"http://127.0.0.1:{port}", app


@pytest.mark.parametrize("mode", ["shopper", "merchandiser"])
def test_merchandiser_endpoints_answer_only_with_the_flag(catalogue, mode):
    flags = ("--merchandiser",) if mode == "merchandiser" else ()
    url, app = serve(catalogue, *flags)
    try:
        for path in TOOLS:
            status, body = post(url + path, BODIES[path])
            if mode == "shopper":
                assert status == 404, (path, status, body)
            else:
                assert status == 200, (path, status, body)
        status, body = post(url + "/api/similar", {"id": "p001", "k": 3})
        assert status == 200 and len(body["hits"]) == 3
    finally:
        app.close()


def test_the_guard_refuses_the_tool_routes_in_shopper_mode():
    """Defence in depth: even an API that had the tools is not reached without the flag."""
    from ui.routes import route_allowed

    for path in TOOLS:
        assert not route_allowed("POST", path)
        assert route_allowed("POST", path, merchandiser=True)
    for path in ("/api/similar", "/api/basket"):
        assert route_allowed("POST", path) and route_allowed("POST", path, merchandiser=True)
