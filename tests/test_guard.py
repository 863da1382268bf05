"""ui.guard and ui.photos as plain ASGI apps: what is refused before Gradio sees it (no server,
no network: the inner app only records whether a request got through)."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import unquote

import cv2
import numpy as np
import pytest

pytest.importorskip("anyio")
from ui.guard import MAX_FILES_PER_REQUEST, RequestGuard, allowed_hosts, host_name  # noqa: E402
from ui.photos import PhotoRoute, photo_url  # noqa: E402
from ui.text import markdown_escape  # noqa: E402
from tests.helpers import Inner, call  # noqa: E402




def guard(hosts=allowed_hosts("127.0.0.1", False), photos=None):
    inner = Inner()
    return RequestGuard(inner, hosts, max_upload_bytes=100_000, photos=photos), inner


def test_host_names():
    assert host_name("Example.com:7860") == "example.com"
    assert host_name("[::1]:7860") == "::1"
    assert host_name("localhost") == "localhost"
    assert allowed_hosts("0.0.0.0", False) is None and allowed_hosts("127.0.0.1", True) is None
    assert "192.168.1.5" in allowed_hosts("192.168.1.5", False)


@pytest.mark.parametrize("host", ["attacker.example:7860", "127.0.0.1.nip.io:7860",
                                  "evil.localhost.example"])
def test_dns_rebinding_hosts_are_refused(host):
    app, inner = guard()
    assert call(app, "/", host=host)[0] == 421
    assert call(app, "/", headers={"x-forwarded-host": host})[0] == 421
    assert inner.bodies == []


def test_loopback_hosts_pass_and_opened_servers_take_any_host():
    app, inner = guard()
    for host in ("127.0.0.1:7860", "localhost:7860", "[::1]:7860"):
        assert call(app, "/", host=host)[0] == 200
    opened, _ = guard(hosts=allowed_hosts("0.0.0.0", False))
    assert call(opened, "/", host="shop-kiosk.lan:7860")[0] == 200


@pytest.mark.parametrize("path", [
    "/gradio_api/file=https://203.0.113.9/x.jpg", "/gradio_api/file=http://169.254.169.254/",
    "/gradio_api/file=//203.0.113.9/x.jpg", "/file=https://203.0.113.9/x.jpg",
    "/gradio_api/file/https://203.0.113.9/x.jpg", "/gradio_api/proxy=https://203.0.113.9/"])
def test_url_file_routes_are_refused(path):
    app, inner = guard()
    assert call(app, path)[0] == 403
    assert inner.bodies == []


@pytest.mark.parametrize("path", ["https://203.0.113.9/x.jpg", "http://127.0.0.1:1/x.jpg",
                                  "//203.0.113.9/x.jpg", "ftp://h/x.jpg", "data:image/png,x"])
def test_filedata_with_a_url_is_refused(path):
    app, inner = guard()
    payload = {"data": [{"path": path, "url": path, "meta": {"_type": "gradio.FileData"}}, 5,
                        "{}"], "fn_index": 0, "session_hash": "x"}
    status, _, body = call(app, "/gradio_api/queue/join", "POST",
                           body=json.dumps(payload).encode(),
                           headers={"content-type": "application/json"})
    assert status == 400 and b"URL" in body
    assert inner.bodies == []


@pytest.mark.parametrize("prefix", [b" ", b"\n", b"\t", b"\r\n "])
def test_whitespace_before_the_json_does_not_hide_a_url(prefix):
    app, inner = guard()
    payload = {"data": [{"path": "https://example.com/x.jpg",
                         "meta": {"_type": "gradio.FileData"}}, 3, "{}"]}
    status, _, body = call(app, "/gradio_api/call/similar", "POST",
                           body=prefix + json.dumps(payload).encode(),
                           headers={"content-type": "application/json"})
    assert status == 400 and b"URL" in body
    assert inner.bodies == []


def test_a_body_that_is_not_json_is_refused():
    app, inner = guard()
    status, _, _ = call(app, "/gradio_api/call/similar", "POST", body=b"data=https://x.example",
                        headers={"content-type": "application/x-www-form-urlencoded"})
    assert status == 400 and inner.bodies == []


def test_uploaded_filedata_passes_with_its_body_intact():
    app, inner = guard()
    body = json.dumps({"data": [{"path": "/tmp/gradio/abc/x.jpg",
                                 "url": "http://127.0.0.1:7860/gradio_api/file=/tmp/x.jpg",
                                 "meta": {"_type": "gradio.FileData"}}]}).encode()
    assert call(app, "/gradio_api/queue/join", "POST", body=body,
                headers={"content-type": "application/json"})[0] == 200
    assert inner.bodies == [body]


def test_own_photo_links_echoed_by_the_page_pass_without_their_links():
    """Gallery clicks still work, but no link (own or foreign) reaches Gradio (issue 23)."""
    app, inner = guard(photos=PhotoRoute({}.get))
    own = "http://127.0.0.1:7860/fai/photo/shirt"
    body = json.dumps({"event_data": {"value": {"image": {"path": own, "url": own}}}}).encode()
    for sent in (body, body.replace(b"127.0.0.1:7860", b"203.0.113.9:7860")):
        assert call(app, "/gradio_api/queue/join", "POST", body=sent,
                    headers={"content-type": "application/json"})[0] == 200
        assert json.loads(inner.bodies[-1]) == {"event_data": {"value": {"image": None}}}


def multipart(files: int, size: int) -> tuple[bytes, str]:
    boundary = "----faiboundary"
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
             f"filename=\"f{i}.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n".encode()
             + b"x" * size + b"\r\n" for i in range(files)]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), \
        f"multipart/form-data; boundary={boundary}"


def test_upload_requests_are_capped_in_files_and_bytes():
    app, inner = guard()
    body, ctype = multipart(1, 50_000)
    assert call(app, "/gradio_api/upload", "POST", body=body,
                headers={"content-type": ctype})[0] == 200
    body, ctype = multipart(MAX_FILES_PER_REQUEST + 2, 10)
    assert call(app, "/gradio_api/upload", "POST", body=body,
                headers={"content-type": ctype})[0] == 413
    body, ctype = multipart(1, 400_000)  # no content-length: counted while reading
    assert call(app, "/gradio_api/upload", "POST", body=body,
                headers={"content-type": ctype})[0] == 413
    assert call(app, "/gradio_api/upload", "POST", body=b"x",
                headers={"content-type": ctype, "content-length": str(10**9)})[0] == 413
    assert len(inner.bodies) == 1


def test_photos_are_served_by_id_and_only_as_images(tmp_path):
    photo = tmp_path / "shirt.jpg"
    cv2.imwrite(str(photo), np.full((20, 20, 3), 90, np.uint8))
    page = tmp_path / "page.jpg"  # an HTML page under an image name, inside the photo folder
    page.write_text("<html><script>alert(1)</script></html>")
    (tmp_path / "secret.txt").write_text("key")
    files = {"shirt": str(photo), "page": str(page), "a/b": str(photo)}
    app, _ = guard(photos=PhotoRoute(files.get))
    status, headers, body = call(app, photo_url("shirt"))
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert headers["x-content-type-options"] == "nosniff" and body == photo.read_bytes()
    assert call(app, photo_url("a/b"))[0] == 200  # ids with slashes are quoted, not paths
    for refused in ("page", "secret", "../secret.txt", "shirt/../../secret.txt", "nope"):
        status, headers, body = call(app, photo_url(refused))
        assert status == 404 and b"key" not in body and b"script" not in body, refused
    assert call(app, "/fai/photo/../secret.txt")[0] == 404
    # gradio_client downloads gallery links through file=: our own photo links only, no fetch
    assert call(app, "/gradio_api/file=http://127.0.0.1:7860/fai/photo/shirt")[0] == 200
    assert call(app, "/gradio_api/file=http://203.0.113.9:7860/fai/photo/shirt")[0] == 403
    assert call(app, "/gradio_api/file=http://127.0.0.1:7860/fai/photo/page")[0] == 404
    assert call(app, photo_url("shirt"), host="attacker.example")[0] == 421


def test_markdown_escape_makes_ids_inert():
    text = markdown_escape("![t](https:203.0.113.9)<img src=x>\x1b[31m")
    assert "![" not in text and "](" not in text and "<img" not in text and "\x1b" not in text
    assert "203" in text
