"""Shoppers' uploads on the page: a file that is not an image is one sentence on the page and
one line in the log (issue 34 point 3)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from fai_infer import Encoder
from tests.helpers import OTHER_MODEL, catalog_of


def small_shop():
    encoder = Encoder(OTHER_MODEL)
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(12, encoder.dim)).astype(np.float32)
    rows = [{"name": f"Shirt {i}", "colour": ["red", "blue"][i % 2]} for i in range(12)]
    return catalog_of(encoder, [f"s{i:02d}" for i in range(12)], [""] * 12, rows, vectors)


def upload_event(app):
    """The page's own handler for a new upload in the photo box, and its inputs' defaults."""
    photo = next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == "fai-photo")
    fn = next(f for f in app.fns.values() if (photo._id, "upload") in f.targets)
    return fn, [getattr(b, "value", None) for b in fn.inputs[1:]]


def test_a_non_image_named_jpg_is_one_sentence_on_the_page_and_one_log_line(
        tmp_path, monkeypatch, capfd):
    from gradio.state_holder import SessionState

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    from ui.app import ShopDemo, build_app

    app = build_app(ShopDemo(small_shop(), "shop"))
    fake = tmp_path / "uploads" / "abc123" / "holiday.jpg"
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"%PDF-1.4\n% a document, not a photo\n" * 20)
    fn, rest = upload_event(app)
    payload = {"path": str(fake), "orig_name": "holiday.jpg", "size": fake.stat().st_size,
               "meta": {"_type": "gradio.FileData"}}
    capfd.readouterr()
    state = SessionState(app)
    out = asyncio.run(app.process_api(fn, [payload, *rest], state=state))
    status = out["data"][1]
    status = status.get("value", status) if isinstance(status, dict) else status
    assert state[fn.outputs[0]._id] == []  # no results, none kept from before
    assert status.startswith("Cannot use this photo:") and status.count(".") <= 2, status
    assert "Error" not in status and "Traceback" not in status
    log = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert len(log) == 1 and log[0].startswith("ui.app: upload refused:"), log


@pytest.mark.parametrize("garbage", [b"", b"GIF89a" + b"\x00" * 3, b"\x89PNG\r\n\x1a\n" + b"x" * 40])
def test_the_photo_box_hands_over_what_pil_cannot_open(tmp_path, garbage):
    from gradio.data_classes import ImageData

    from ui.app import photo_input

    path = tmp_path / "x.jpg"
    path.write_bytes(garbage)
    box = photo_input()
    assert box.preprocess(ImageData(path=str(path), orig_name="x.jpg")) == str(path)


def files_under(folder) -> list:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def multipart_upload(url: str, photo) -> list[str]:
    """POST one photo to Gradio's upload route, as the page does when a shopper picks one."""
    import json
    import urllib.request

    boundary = "faiboundary7a1"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\""
            f"{photo.name}\"\r\nContent-Type: image/jpeg\r\n\r\n").encode() + photo.read_bytes() \
        + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url + "gradio_api/upload", data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_uploads_go_once_embedded_and_on_sigterm(tmp_path, monkeypatch):
    """Issue 34 point 4: a searched upload is deleted once embedded, and one never searched is
    deleted when the server is stopped with SIGTERM (systemd, Docker, kill), not only Ctrl-C."""
    import json
    import signal

    from tests.helpers import write_products
    from ui.launch import local_client, start_app

    photos = write_products(tmp_path / "shop", 6)
    uploads = tmp_path / "uploads"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    (tmp_path / "cache").mkdir()
    proc, url = start_app(tmp_path / "cache", (
        "--catalog", str(tmp_path / "shop" / "images"), "--metadata",
        str(tmp_path / "shop" / "metadata.csv"), "--model", str(OTHER_MODEL)), timeout_s=300)
    try:
        from gradio_client import handle_file

        hits = json.loads(local_client(url).predict(handle_file(str(photos[2])), 3, "{}",
                                                    api_name="/similar"))
        assert hits[0]["id"] == "p002"
        assert files_under(uploads) == []  # answered: the shopper's photo is gone

        stored = multipart_upload(url, photos[3])
        assert len(stored) == 1 and files_under(uploads)  # picked but never searched
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    log = (tmp_path / "cache" / "ui.log").read_text()
    assert code == 0 and "Traceback" not in log, log
    assert files_under(uploads) == [], files_under(uploads)
