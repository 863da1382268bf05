"""Issue 33, point 9: the minor findings, one test each."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

pytest.importorskip("anyio")
from fai_infer import Encoder  # noqa: E402
from fai_infer.errors import ImageError  # noqa: E402
from fai_infer.image.decode import load_rgb  # noqa: E402
from tests.helpers import OTHER_MODEL, Inner, call, catalog_of  # noqa: E402
from ui.guard import RequestGuard, allowed_hosts  # noqa: E402
from ui.http_api import HttpApi  # noqa: E402
from ui.photos import PhotoRoute  # noqa: E402

JSON = {"content-type": "application/json"}


def fake_api():
    """An HttpApi whose searches record their arguments and find nothing."""
    calls: list[tuple] = []

    def search(query, k, where, colour=None):
        calls.append((query, k, where, colour))
        return []

    return HttpApi(search, search, search, max_k=50), calls


def guard(tmp_path):
    inner = Inner()
    return RequestGuard(inner, allowed_hosts("127.0.0.1", False), max_upload_bytes=100_000,
                        photos=PhotoRoute({}.get), upload_dir=str(tmp_path / "uploads")), inner


def post_json(app, path: str, payload) -> tuple[int, dict]:
    status, _, body = call(app, path, "POST", body=json.dumps(payload).encode(), headers=JSON)
    return status, json.loads(body)


def test_a_4000_digit_colour_is_a_400_not_a_500():
    api, calls = fake_api()
    status, body = post_json(api, "/api/similar", {"id": "a", "colour": 10 ** 3999})
    assert status == 400 and "colour" in body["error"], (status, body)
    status, body = post_json(api, "/api/basket", {"ids": ["a"], "colour": -10 ** 3999})
    assert status == 400 and "colour" in body["error"], (status, body)
    assert calls == []


def test_a_where_on_a_column_named_path_reaches_the_api(tmp_path):
    """The guard took ``{"path": ...}`` inside ``where`` for a Gradio file and refused it."""
    app, inner = guard(tmp_path)
    body = json.dumps({"id": "a", "where": {"path": "summer/2024"}}).encode()
    status, _, answer = call(app, "/api/similar", "POST", body=body, headers=JSON)
    assert status == 200 and len(inner.bodies) == 1, answer
    # ... while a FileData anywhere else in an API body, or in Gradio's, is still checked
    for path, payload in (("/api/similar", {"id": {"path": "/etc/passwd"}}),
                          ("/gradio_api/queue/join", {"data": [{"path": "/etc/passwd"}]})):
        status, _, _ = call(app, path, "POST", body=json.dumps(payload).encode(), headers=JSON)
        assert status == 400


def gif_frame_outside_its_screen() -> bytes:
    head = b"GIF89a" + struct.pack("<HHBBB", 64, 64, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 60000, 60000, 0) + b"\x02\x02\x44\x01\x00"
    return head + frame + b"\x3b"


def tiff_with_a_4_tb_tile() -> bytes:
    entries = [(256, 3, 1, 64), (257, 3, 1, 64), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 1), (277, 3, 1, 1), (322, 4, 1, 1 << 20), (323, 4, 1, 1 << 20),
               (324, 4, 1, 200), (325, 4, 1, 64)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e)
                                                     for e in entries) + b"\0\0\0\0"
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\0" * 64


def test_opencv_says_nothing_on_stderr_for_frame_and_tile_bombs(capfd):
    for make in (gif_frame_outside_its_screen, tiff_with_a_4_tb_tile):
        with pytest.raises(ImageError) as err:
            load_rgb(make(), target=224)
        assert "\n" not in str(err.value)
    out, errors = capfd.readouterr()
    assert errors == "", errors


def test_a_one_item_catalogue_says_why_it_has_no_match_words():
    from starlette.testclient import TestClient

    from fai_infer.catalog.confidence import TOO_FEW
    from ui.http_api import HttpApi
    from ui.service import ShopService

    enc = Encoder(OTHER_MODEL)
    vector = np.ones((1, enc.dim), np.float32) / np.sqrt(enc.dim)
    cat = catalog_of(enc, ["only"], [""], [{"kind": "Shirt"}], vector)
    hit = cat.similar_to_vector(vector[0], k=1)[0]
    assert hit.id == "only" and hit.confidence is None and hit.match == TOO_FEW
    client = TestClient(HttpApi.for_service(ShopService(cat, "shop")))
    hits = client.post("/api/similar", json={"id": "only", "k": 1}).json()["hits"]
    assert all(h["match"] == TOO_FEW for h in hits)
