"""Issue 23, section 3, on a live server bound to IPv6 loopback: it starts (it crashed with a
traceback on --host ::1), other sites' pages cannot read it (any Origin was reflected with
credentials), and Gradio's extra routes do not answer. Traffic stays on ::1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.helpers import ROOT, read_until, write_products
from ui.guard import allowed_hosts, bind_address

pytestmark = [pytest.mark.service]  # a real ui.app server process


def request(url: str, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture(scope="module")
def ipv6_server(tmp_path_factory):
    from fai_infer import Catalog

    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    tmp = tmp_path_factory.mktemp("v6")
    write_products(tmp / "shop", 6)
    cat = Catalog.build(tmp / "shop" / "images")
    cat.save(tmp / "shop.catalog")
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, FAI_CACHE=str(tmp / "cache"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "ui.app", "--host", "::1", "--port",
                             str(port), "--index", str(tmp / "shop.catalog")], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    url = f"http://[::1]:{port}"
    try:
        read_until(proc, "Running on", timeout=180)  # Gradio says so once it listens
        yield url, port
    finally:
        proc.terminate()
        proc.wait(10)


def test_ipv6_binds_start_and_keep_their_host_check():
    assert bind_address("::1") == "[::1]" and bind_address("::") == "[::]"
    assert bind_address("[::1]") == "[::1]" and bind_address("127.0.0.1") == "127.0.0.1"
    assert allowed_hosts("[::]", False) is None and allowed_hosts("::", False) is None
    assert "::1" in allowed_hosts("[::1]", False) and "evil.example" not in allowed_hosts(
        "::1", False)


def test_ipv6_loopback_server_refuses_other_sites(ipv6_server):
    url, port = ipv6_server
    own = f"http://[::1]:{port}"
    status, _, body = request(url + "/api/similar", "POST", json.dumps({"id": "p001",
                              "k": 2}).encode(), {"content-type": "application/json",
                                                   "origin": own})
    assert status == 200 and len(json.loads(body)["hits"]) == 2
    for origin in ("https://evil.example", "null"):
        for method, path, body in (("GET", "/config", None),
                                   ("POST", "/api/similar", b'{"id": "p001"}'),
                                   ("GET", "/fai/photo/p001", None)):
            status, headers, _ = request(url + path, method, body,
                                         {"origin": origin, "content-type": "application/json"})
            assert status == 403, (origin, path)
            assert not any(k.lower().startswith("access-control") for k in headers), headers


@pytest.mark.parametrize("method,path", [("GET", "/monitoring/summary"),
                                         ("POST", "/gradio_api/process_recording"),
                                         ("GET", "/openapi.json"),
                                         ("GET", "/gradio_api/openapi.json"),
                                         ("GET", "/monitoring")])
def test_gradio_extras_do_not_answer(ipv6_server, method, path):
    url, _ = ipv6_server
    body = b"{}" if method == "POST" else None
    status, _, _ = request(url + path, method, body, {"content-type": "application/json"})
    assert status == 404


def test_the_page_and_client_routes_still_answer(ipv6_server):
    url, _ = ipv6_server
    for path in ("/", "/config", "/gradio_api/info", "/fai/photo/p001"):
        assert request(url + path)[0] == 200, path
