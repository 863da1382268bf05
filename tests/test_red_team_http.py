"""Issue 23, sections 3 and 4: what the red team got through the guard and the plain HTTP API.
Plain ASGI calls (no server, no network): the inner app records what got through."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("anyio")
from fai_infer.index.hits import NotInCatalogue  # noqa: E402
from tests.helpers import Inner, call  # noqa: E402
from ui.api_checks import MAX_BASKET  # noqa: E402
from ui.guard import RequestGuard, allowed_hosts  # noqa: E402
from ui.http_api import HttpApi  # noqa: E402
from ui.photos import PhotoRoute  # noqa: E402

JSON = {"content-type": "application/json"}


def guard(tmp_path, bind="127.0.0.1", share=False):
    inner = Inner()
    app = RequestGuard(inner, allowed_hosts(bind, share), max_upload_bytes=100_000,
                       photos=PhotoRoute({}.get), upload_dir=str(tmp_path / "uploads"),
                       share=share)
    return app, inner


def filedata(path: str) -> bytes:
    return json.dumps({"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}, 5, "{}"],
                       "fn_index": 0, "session_hash": "x"}).encode()


@pytest.mark.parametrize("bind,host,path", [
    ("127.0.0.1", "127.0.0.1:7860", "http://127.0.0.1:7860/fai/photo/shirt"),
    ("0.0.0.0", "attacker.example", "http://attacker.example/fai/photo/x/../../big"),
    ("0.0.0.0", "attacker.example", "https://attacker.example/fai/photo/x"),
])
def test_filedata_naming_this_servers_own_photo_link_is_refused(tmp_path, bind, host, path):
    """Before: the 'own photo' exemption let Gradio download it (from the attacker's host)."""
    app, inner = guard(tmp_path, bind)
    status, _, body = call(app, "/gradio_api/queue/join", "POST", host=host,
                           body=filedata(path), headers=JSON)
    assert status == 400 and b"URL" in body
    assert inner.bodies == []


@pytest.mark.parametrize("path", ["/etc/passwd", "relative.jpg", "UPLOADS/../../secret.jpg",
                                  "UPLOADS", "/tmp/gradio-other/x.jpg", 7])
def test_filedata_that_is_not_an_upload_of_this_server_is_refused(tmp_path, path):
    app, inner = guard(tmp_path)
    if isinstance(path, str):
        path = path.replace("UPLOADS", str(tmp_path / "uploads"))
    status, _, body = call(app, "/gradio_api/queue/join", "POST", body=filedata(path),
                           headers=JSON)
    assert status == 400, body
    assert inner.bodies == []
    ok = filedata(str(tmp_path / "uploads" / "abc" / "photo.jpg"))
    assert call(app, "/gradio_api/queue/join", "POST", body=ok, headers=JSON)[0] == 200
    assert inner.bodies == [ok]


def test_gallery_event_links_are_dropped_before_gradio(tmp_path):
    """The page's gallery echoes photo links in event_data; the app only reads the index, so
    the links never reach Gradio (and a foreign one cannot be smuggled there)."""
    app, inner = guard(tmp_path)
    for link in ("http://127.0.0.1:7860/fai/photo/shirt", "http://203.0.113.9/x.jpg"):
        payload = {"data": [None, 8], "event_data": {"index": 3, "value": {
            "image": {"path": link, "url": link}, "caption": "shirt"}}}
        status, _, _ = call(app, "/gradio_api/queue/join", "POST",
                            body=json.dumps(payload).encode(), headers=JSON)
        assert status == 200
        passed = json.loads(inner.bodies[-1])
        assert passed["event_data"] == {"index": 3, "value": {"image": None, "caption": "shirt"}}
        assert b"http" not in inner.bodies[-1]


@pytest.mark.parametrize("bind,host", [("::1", "[::1]:7860"), ("[::1]", "[::1]:7860"),
                                       ("0.0.0.0", "192.168.1.5:7860"),
                                       ("192.168.1.5", "192.168.1.5:7860"),
                                       ("127.0.0.1", "127.0.0.1:7860")])
def test_other_sites_cannot_call_or_read_the_server(tmp_path, bind, host):
    """Before: with --host ::1 Gradio reflected any Origin with credentials (Chromium read
    /api/similar, /config and photos from another site)."""
    app, inner = guard(tmp_path, bind)
    for origin in ("https://evil.example", "null", "http://127.0.0.1:9999",
                   f"http://{host}.evil.example"):
        for method, path in (("GET", "/config"), ("POST", "/api/similar"),
                             ("GET", "/fai/photo/shirt"), ("OPTIONS", "/api/similar")):
            status, headers, _ = call(app, path, method, host=host,
                                      headers={"origin": origin, **JSON}, body=b"{}")
            assert status == 403, (origin, path, status)
            assert "access-control-allow-origin" not in headers
    assert inner.bodies == []
    status, _, _ = call(app, "/config", host=host, headers={"origin": f"http://{host}"})
    assert status == 200


@pytest.mark.parametrize("method,path", [
    ("GET", "/monitoring/summary"), ("GET", "/monitoring"), ("GET", "/gradio_api/monitoring"),
    ("POST", "/gradio_api/process_recording"), ("GET", "/openapi.json"),
    ("GET", "/gradio_api/openapi.json"), ("POST", "/gradio_api/vibe-edit"),
    ("GET", "/gradio_api/run-history/records"), ("GET", "/docs"), ("GET", "/gradio_api/runs"),
    ("POST", "/login"), ("GET", "/gradio_api/dev/reload"), ("POST", "/gradio_api/stream/1"),
    ("GET", "/gradio_api/deep_link")])
def test_routes_the_page_does_not_need_do_not_answer(tmp_path, method, path):
    app, inner = guard(tmp_path)
    body = b"{}" if method == "POST" else b""
    assert call(app, path, method, body=body, headers=JSON)[0] == 404
    assert inner.bodies == []


@pytest.mark.parametrize("method,path", [
    ("GET", "/"), ("GET", "/config"), ("GET", "/gradio_api/info"), ("GET", "/theme.css"),
    ("GET", "/assets/index-abc.js"), ("GET", "/gradio_api/queue/data"),
    ("GET", "/gradio_api/heartbeat/abc"), ("POST", "/gradio_api/queue/join"),
    ("POST", "/gradio_api/call/similar"), ("GET", "/gradio_api/call/similar/ev1"),
    ("POST", "/gradio_api/cancel"), ("GET", "/favicon.ico")])
def test_routes_the_page_and_clients_use_still_answer(tmp_path, method, path):
    app, inner = guard(tmp_path)
    body = b"{}" if method == "POST" else b""
    assert call(app, path, method, body=body, headers=JSON)[0] == 200


@pytest.mark.parametrize("ctype", [
    "multipart/form-data; boundary=aaa; boundary=bbb",
    "multipart/form-data; boundary=bbb; BOUNDARY=aaa",
    "multipart/form-data; charset=utf-8"])
def test_multipart_needs_exactly_one_boundary(tmp_path, ctype):
    """Before: the guard counted parts by one boundary while the parser used the other."""
    app, inner = guard(tmp_path)
    parts = b"".join(b"--bbb\r\nContent-Disposition: form-data; name=\"f\"; filename=\"%d\"\r\n"
                     b"\r\nx\r\n" % i for i in range(20)) + b"--bbb--\r\n"
    status, _, _ = call(app, "/gradio_api/upload", "POST", body=parts,
                        headers={"content-type": ctype})
    assert status == 400 and inner.bodies == []


def test_deeply_nested_json_is_a_400_not_a_500(tmp_path):
    app, inner = guard(tmp_path)
    deep = b"[" * 5000 + b"]" * 5000
    for path in ("/gradio_api/queue/join", "/api/similar"):
        status, _, body = call(app, path, "POST", body=deep, headers=JSON)
        assert status == 400 and b"nested" in body
    assert inner.bodies == []
    api, _ = fake_api()
    status, _, body = call(api, "/api/similar", "POST", headers=JSON,
                           body=b'{"id": "a", "where": ' + b"[" * 5000 + b"]" * 5000 + b"}")
    assert status == 400 and b"nested" in body


def fake_api():
    calls: list[tuple] = []

    def similar(query, k, where, colour=None):
        calls.append((query, k, where))
        return []

    def basket(ids, k, where, colour=None):
        calls.append((ids, k, where))
        for item in ids:
            if item.startswith("ghost"):
                raise NotInCatalogue(item)
        return []

    return HttpApi(similar, similar, basket, max_k=50), calls


def post_json(app, path: str, payload) -> tuple[int, dict]:
    status, _, body = call(app, path, "POST", body=json.dumps(payload).encode(), headers=JSON)
    return status, json.loads(body)


@pytest.mark.parametrize("k", [0, -3, 2.5, 5000, True, "2.5", None, "5"])
def test_http_api_refuses_a_bad_k_naming_it(k):
    """Before: 0, -3, 2.5 and 5000 silently became 1, 1, 2 and 50."""
    api, calls = fake_api()
    for path, payload in (("/api/similar", {"id": "a", "k": k}),
                          ("/api/basket", {"ids": ["a"], "k": k})):
        status, out = post_json(api, path, payload)
        assert status == 400 and "'k'" in out["error"], out
    assert calls == []
    assert post_json(api, "/api/similar", {"id": "a", "k": 7})[0] == 200
    assert post_json(api, "/api/similar", {"id": "a", "k": 7, "colour": 0})[0] == 200
    assert calls == [("a", 7, {}), ("a", 7, {})]  # main's colour key is taken too


@pytest.mark.parametrize("path,payload,key", [
    ("/api/similar", {"id": "a", "wher": {"gender": "Women"}}, "wher"),
    ("/api/basket", {"ids": ["a"], "K": 3}, "K"),
    ("/api/similar", {"id": "a", "path": "x"}, "path")])
def test_http_api_refuses_unknown_keys_naming_them(path, payload, key):
    api, calls = fake_api()
    status, out = post_json(api, path, payload)
    assert status == 400 and repr(key) in out["error"], out
    assert calls == []


def test_http_api_multipart_fields_are_checked_too():
    api, calls = fake_api()
    for fields in ({"k": "0"}, {"k": "2.5"}, {"wher": "{}"}):
        parts = b"".join(b"--b\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                         % (name.encode(), value.encode()) for name, value in fields.items())
        parts += (b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.jpg\""
                  b"\r\n\r\nxx\r\n--b--\r\n")
        status, _, body = call(api, "/api/similar", "POST", body=parts,
                               headers={"content-type": "multipart/form-data; boundary=b"})
        assert status == 400 and repr(next(iter(fields))) in json.loads(body)["error"], body
    assert calls == []


def test_a_number_as_an_id_is_named_as_such():
    api, _ = fake_api()
    status, out = post_json(api, "/api/similar", {"id": 15970})
    assert status == 400 and "'id' must be a string" in out["error"] and "15970" in out["error"]
    status, out = post_json(api, "/api/basket", {"ids": ["a", 15970]})
    assert status == 400 and "15970" in out["error"]


def test_an_unknown_basket_id_is_named():
    api, _ = fake_api()
    status, out = post_json(api, "/api/basket", {"ids": ["a", "ghost-42"]})
    assert status == 404 and "'ghost-42'" in out["error"]


def test_a_huge_basket_is_refused_at_once():
    """Before: 40,000 ids in one request cost about a minute of CPU."""
    api, calls = fake_api()
    status, out = post_json(api, "/api/basket", {"ids": [f"i{n}" for n in range(40_000)]})
    assert status == 400 and str(MAX_BASKET) in out["error"]
    assert calls == []  # refused before any catalogue work
    assert post_json(api, "/api/basket", {"ids": ["a"] * MAX_BASKET})[0] == 200
