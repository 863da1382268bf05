"""The shop demo: starts with no arguments, serves only what it should, API and real browser."""

import json
import os
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """python -m ui.app with no catalogue arguments: the generated demo shop."""
    from bench.ui_load import start_app

    cache = tmp_path_factory.mktemp("cache")
    try:
        proc, url = start_app(cache, ("--max-upload-mb", "1"))
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield url, cache
    proc.terminate()
    proc.wait(10)


def demo_photo(cache: Path) -> Path:
    return sorted((cache / "demo-shop" / "images").glob("*.jpg"))[40]


def test_demo_shop_is_generated_deterministically(tmp_path):
    from ui.demo_catalog import generate

    a, b = generate(tmp_path / "a"), generate(tmp_path / "b")
    files = sorted(p.name for p in (a / "images").iterdir())
    assert len(files) > 100
    assert (a / "metadata.csv").read_text() == (b / "metadata.csv").read_text()
    assert (a / "images" / files[7]).read_bytes() == (b / "images" / files[7]).read_bytes()


def request(url: str, headers: dict[str, str] | None = None, data: bytes | None = None
            ) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_binds_loopback_and_serves_only_catalogue_images(app_url):
    url, cache = app_url
    assert url.startswith("http://127.0.0.1:")
    photo = demo_photo(cache)
    images = photo.parent
    (images.parent / "secret.txt").write_text("do not serve")
    (images / "page.html").write_text("<script>document.title='owned'</script>")
    (images / "notes.txt").write_text("do not serve")
    for path in ("/etc/passwd", ROOT / "pyproject.toml", photo, images / "page.html",
                 images / "notes.txt", f"{images}/../secret.txt"):
        assert get(url + f"gradio_api/file={path}")[0] in (403, 404), path
    status, headers, body = request(url + f"fai/photo/{photo.stem}")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert body == photo.read_bytes() and headers["x-content-type-options"] == "nosniff"
    for item in ("page", "notes", "secret", "..%2Fsecret.txt", "%2Fetc%2Fpasswd"):
        status, headers, body = request(url + f"fai/photo/{item}")
        assert status == 404 and b"serve" not in body and b"script" not in body, item


def test_other_host_names_and_url_inputs_are_refused(app_url):
    url, _ = app_url
    port = url.rsplit(":", 1)[1].strip("/")
    assert request(url, {"Host": f"localhost:{port}"})[0] == 200
    assert request(url, {"Host": f"attacker.example:{port}"})[0] == 421
    assert request(url + "config", {"Host": "rebind.example"})[0] == 421
    # A loopback URL, so that even an unguarded server could not reach outside.
    target = f"http://127.0.0.1:{port}/config"
    assert get(url + f"gradio_api/file={target}")[0] == 403
    payload = json.dumps({"data": [{"path": target, "url": target,
                                    "meta": {"_type": "gradio.FileData"}}, 3, "{}"]}).encode()
    status, _, body = request(url + "gradio_api/call/similar",
                              {"Content-Type": "application/json"}, payload)
    assert status == 400 and b"URL" in body


def test_page_references_nothing_outside_the_machine(app_url):
    url, _ = app_url
    status, html = get(url)
    assert status == 200
    external = [u for u in re.findall(rb'(?:src|href)=["\'](https?://[^"\']+)', html)
                if not re.match(rb"https?://(127\.0\.0\.1|localhost)", u)]
    assert external == []


def test_api_search_with_gradio_client(app_url):
    from gradio_client import handle_file

    from bench.ui_load import local_client

    url, cache = app_url
    client = local_client(url)
    photo = demo_photo(cache)
    hits = json.loads(client.predict(handle_file(str(photo)), 5, '{"type": "Dress"}',
                                     api_name="/similar"))
    assert len(hits) == 5 and all(h["metadata"]["type"] == "Dress" for h in hits)
    assert hits[0]["score"] >= hits[-1]["score"]
    gallery, status = client.predict(handle_file(str(photo)), 6, [], [], [], [],
                                     api_name="/search")
    assert len(gallery) == 6 and "ms" in status


def test_oversized_upload_is_refused(app_url, tmp_path):
    from gradio_client import handle_file

    from bench.ui_load import local_client

    url, _ = app_url
    big = tmp_path / "huge.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2 * 1024 * 1024))
    with pytest.raises(Exception, match="(?i)size|large|exceed|413"):
        local_client(url).predict(handle_file(str(big)), 3, "{}", api_name="/similar")


needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium not "
                                    "installed (apt-get install chromium; .ci/run does this)")


def launch_chromium(p):
    return p.chromium.launch(
        executable_path=CHROMIUM, headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run"])


@needs_chromium
def test_upload_in_a_real_browser_shows_k_results(app_url, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    url, cache = app_url
    outside = []
    with playwright.sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1300, "height": 1100})
        page.on("request", lambda r: None if r.url.startswith(
            (url, "data:", "blob:")) else outside.append(r.url))
        page.goto(url, wait_until="load")
        page.wait_for_selector("#fai-header", timeout=60_000)
        page.locator("#fai-photo input[type=file]").set_input_files(str(demo_photo(cache)))
        page.wait_for_function(
            "document.querySelectorAll('#fai-results img').length >= 8", timeout=60_000)
        page.wait_for_timeout(500)
        assert page.locator("#fai-results img").count() == 8  # the default k
        assert "ms" in page.locator("#fai-status").inner_text()
        shot = tmp_path / "ui.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("FAI_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["FAI_SCREENSHOT_DIR"]) / "ui-screenshot.png")
    assert outside == [], f"the page fetched from outside the machine: {outside}"


def test_concurrent_clients_get_no_errors(app_url):
    from bench.ui_load import run_load

    url, cache = app_url
    photos = sorted((cache / "demo-shop" / "images").glob("*.jpg"))
    result = run_load(url, photos, clients=8, searches=5)
    assert result["errors"] == 0, result["first_errors"]
    assert result["ok"] == 40


@needs_chromium
def test_basket_in_a_real_browser(app_url):
    playwright = pytest.importorskip("playwright.sync_api")
    url, _ = app_url
    with playwright.sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1300, "height": 1200})
        page.goto(url, wait_until="load")
        page.wait_for_selector("#fai-browse img", timeout=60_000)
        page.locator("#fai-browse img").nth(3).click()  # click a catalogue item
        page.wait_for_function(
            "document.querySelectorAll('#fai-results img').length >= 8", timeout=30_000)
        assert "Similar to" in page.locator("#fai-status").inner_text()
        page.get_by_role("button", name="Add selected item to basket").click()
        page.wait_for_function(
            "document.querySelectorAll('#fai-basket-results img').length >= 8",
            timeout=30_000)
        assert "basket of 1" in page.locator("#fai-status").inner_text()
        browser.close()


@pytest.mark.parametrize("fmt,mode", [("PNG", "RGB"), ("PNG", "RGBA"), ("WEBP", "RGB")])
def test_exif_orientation_is_one_decode_for_runtime_and_upload(tmp_path, fmt, mode):
    """A PNG with an eXIf chunk (and a WebP with an EXIF chunk) saying 'rotate 90 CW' embeds
    the same through the runtime and through the page's upload box, and as the upright photo."""
    import io

    import numpy as np
    from gradio.data_classes import ImageData
    from PIL import Image, ImageOps

    from fai_infer import Encoder
    from ui.app import photo_input

    rng = np.random.default_rng(6)
    pixels = np.full((60, 100, 4), 255, np.uint8)
    pixels[10:50, 5:40, :3] = rng.integers(0, 255, 3, dtype=np.uint8)
    pixels[20:40, 60:95, :3] = rng.integers(0, 255, 3, dtype=np.uint8)
    img = Image.fromarray(pixels).convert(mode)
    exif = img.getexif()
    exif[0x0112] = 6
    path = tmp_path / f"tagged.{fmt.lower()}"
    img.save(path, fmt, exif=exif, **({"lossless": True} if fmt == "WEBP" else {}))
    with Image.open(path) as check:
        assert check.getexif().get(0x0112) == 6
        upright = np.asarray(ImageOps.exif_transpose(check).convert("RGB"))
    assert upright.shape[:2] == (100, 60)

    uploaded = photo_input().preprocess(ImageData(path=str(path), orig_name=path.name))
    enc = Encoder()
    runtime, page, reference = enc.embed([str(path), uploaded, upright])
    assert np.allclose(runtime, page, atol=1e-6)
    assert np.allclose(runtime, reference, atol=1e-6)
    assert enc.embed(io.BytesIO(path.read_bytes()).getvalue()).tolist() == [runtime.tolist()]
