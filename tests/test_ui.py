"""The shop demo: starts with no arguments, serves only what it should, API and real browser."""

import csv
import json
import os
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.service, pytest.mark.browser]  # a server and a real browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MATCH_WORDS = re.compile("very close|similar|loosely similar|a different kind|could be|"
                         "no close match in this shop")


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """python -m ui.app with no catalogue arguments: the generated demo shop."""
    from ui.launch import start_app

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

    from ui.launch import local_client

    url, cache = app_url
    client = local_client(url)
    photo = demo_photo(cache)
    hits = json.loads(client.predict(handle_file(str(photo)), 5, '{"type": "Dress"}',
                                     api_name="/similar"))
    assert len(hits) == 5 and all(h["metadata"]["type"] == "Dress" for h in hits)
    assert hits[0]["score"] >= hits[-1]["score"]
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) \
        == {"/similar"}  # the page's own events are not an API


def test_oversized_upload_is_refused(app_url, tmp_path):
    from gradio_client import handle_file

    from ui.launch import local_client

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


def save_screenshot(shot: Path, name: str) -> None:
    """FAI_SCREENSHOT_DIR=docs keeps the README's screenshots in step with the page."""
    if os.environ.get("FAI_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["FAI_SCREENSHOT_DIR"]) / name)


def wait_for_cards(page, where: str, n: int) -> None:
    """At least n cards in ``where``, every photo loaded. The page loads card photos lazily
    (only near the viewport): a card below the fold would never load, so its photo is asked
    for eagerly here; the layout decides what is below the fold, not the test."""
    page.wait_for_function(
        f"(() => {{ const imgs = [...document.querySelectorAll('{where} .fai-card img')]; "
        f"imgs.forEach(i => {{ if (i.loading === 'lazy') i.loading = 'eager'; }}); "
        f"return imgs.length >= {n} && imgs.every(i => i.complete && i.naturalWidth > 0); }})()",
        timeout=60_000)


@needs_chromium
def test_upload_in_a_real_browser_shows_k_product_cards(app_url, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    url, cache = app_url
    outside = []
    with playwright.sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.on("request", lambda r: None if r.url.startswith(
            (url, "data:", "blob:")) else outside.append(r.url))
        page.goto(url, wait_until="load")
        page.wait_for_selector("#fai-header", timeout=60_000)
        header = page.locator("#fai-header").inner_text()
        assert "FAI demo shop" in page.locator("#fai-title").inner_text()
        assert "/" not in header and "exact" not in header
        page.locator("#fai-photo input[type=file]").set_input_files(str(demo_photo(cache)))
        wait_for_cards(page, "#fai-results", 8)
        cards = page.locator("#fai-results .fai-card")
        assert cards.count() == 8  # the default k
        first = cards.first.inner_text()
        assert MATCH_WORDS.search(first) and "More like this" in first
        assert "%" not in first  # words, not raw percentages
        assert re.search(r"\d+\.99", first)  # the demo's prices
        assert not re.search(r"\d\s*ms\b", page.locator("#fai-status").inner_text())
        shot = tmp_path / "ui.png"
        page.screenshot(path=str(shot), full_page=False)
        browser.close()
    assert shot.stat().st_size > 10_000
    save_screenshot(shot, "ui-screenshot.png")
    assert outside == [], f"the page fetched from outside the machine: {outside}"


def test_concurrent_clients_get_no_errors(app_url):
    from ui.launch import run_load

    url, cache = app_url
    photos = sorted((cache / "demo-shop" / "images").glob("*.jpg"))
    result = run_load(url, photos, clients=8, searches=5)
    assert result["errors"] == 0, result["first_errors"]
    assert result["ok"] == 40


@needs_chromium
def test_basket_in_a_real_browser_shows_what_goes_with_each_item(app_url, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    url, cache = app_url
    rows = list(csv.DictReader(open(cache / "demo-shop" / "metadata.csv")))
    shoe = next(r for r in rows if r["type"] == "Shoe")
    with playwright.sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1500})
        page.goto(url, wait_until="load")
        page.wait_for_selector("#fai-browse img", timeout=60_000)
        page.locator("#fai-browse img").nth(3).click()  # a catalogue item (a T-shirt)
        wait_for_cards(page, "#fai-results", 8)
        assert "More like" in page.locator("#fai-status").inner_text()
        page.locator("#fai-results .fai-add").first.click()
        wait_for_cards(page, "#fai-basket", 1)
        # "More like this" from a result, then a shoe photo, added too.
        page.locator("#fai-results .fai-more").nth(1).click()
        page.wait_for_timeout(1500)
        wait_for_cards(page, "#fai-results", 8)
        page.locator("#fai-photo input[type=file]").set_input_files(
            str(cache / "demo-shop" / "images" / f"{shoe['id']}.jpg"))
        page.wait_for_function("document.querySelector('#fai-status').innerText"
                               ".includes('your photo')", timeout=60_000)
        wait_for_cards(page, "#fai-results", 8)
        page.locator("#fai-results .fai-add").first.click()
        wait_for_cards(page, "#fai-basket", 2)
        wait_for_cards(page, "#fai-basket-results", 8)
        assert "basket of 2" in page.locator("#fai-status").inner_text()
        suggestions = page.locator("#fai-basket-results .fai-for").all_inner_texts()
        basket_names = page.locator("#fai-basket .fai-name").all_inner_texts()
        assert len(set(suggestions)) == 2, suggestions  # something for each basket item
        assert {s.removeprefix("goes with ") for s in suggestions} == set(basket_names)
        shot = tmp_path / "basket.png"
        page.locator("#fai-basket").scroll_into_view_if_needed()
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    save_screenshot(shot, "ui-basket.png")


@needs_chromium
def test_a_real_looking_csv_catalogue_in_a_real_browser(tmp_path):
    """H&M-shaped metadata (ids in article_id, code columns first, a prod_name): filters
    skip the codes, cards are captioned with the product name."""
    playwright = pytest.importorskip("playwright.sync_api")
    from ui.launch import start_app
    from tests.helpers import hm_rows
    from tests.helpers import write_csv
    from ui.demo_catalog import generate

    shop = generate(tmp_path / "shop")
    ids = sorted(p.stem for p in (shop / "images").iterdir())
    rows = hm_rows(len(ids))
    demo = {r["id"]: r for r in csv.DictReader(open(shop / "metadata.csv"))}
    for r, item in zip(rows, ids):
        r["article_id"] = item
        r["prod_name"] = demo[item]["name"].title()
        r["product_type_name"] = demo[item]["type"]
        r["colour_group_name"] = demo[item]["colour"]
    (shop / "metadata.csv").unlink()
    articles = write_csv(tmp_path / "articles.csv", rows)
    cache = tmp_path / "cache"
    cache.mkdir()
    proc, url = start_app(cache, ("--catalog", str(shop / "images"), "--metadata",
                                  str(articles), "--id-column", "article_id", "--caption",
                                  "prod_name,colour_group_name,index_name",
                                  "--title", "Northwind Fashion",
                                  "--labels", "product_type_name=Type"))
    try:
        with playwright.sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url, wait_until="load")
            page.wait_for_selector("#fai-browse img", timeout=60_000)
            page.locator("#fai-filters").get_by_text("Filters").first.click()  # folded
            page.wait_for_selector("#fai-filters input", state="visible", timeout=60_000)
            text = page.locator("body").inner_text()
            assert "Northwind Fashion" in page.locator("#fai-title").inner_text()
            assert "Type" in text and "Colour group" in text  # given and readable labels
            assert "product_type_name" not in text and "colour_group_name" not in text
            for code in ("article_id", "product_code", "product_type_no", "colour_group_code",
                         "index_code", "detail_desc"):
                assert code not in text, code
            page.locator("#fai-browse img").nth(5).click()
            wait_for_cards(page, "#fai-results", 8)
            first = page.locator("#fai-results .fai-card").first.inner_text()
            assert any(r["prod_name"] in first for r in rows), first  # captioned by name
            assert "108775" not in first and "·" in first
            header = page.locator("#fai-header").inner_text()
            assert str(tmp_path) not in header
            shot = tmp_path / "csv.png"
            page.screenshot(path=str(shot))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
    save_screenshot(shot, "ui-real-csv.png")


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
    # one photo alone (batch 1) against the same photo in a batch of 3: onnxruntime may pick
    # other kernels per batch size, equal to float rounding
    assert np.allclose(enc.embed(io.BytesIO(path.read_bytes()).getvalue()), [runtime],
                       atol=1e-6)


def test_plain_http_api_answers_uploads_ids_and_baskets(app_url):
    import httpx

    url, cache = app_url
    photo = demo_photo(cache)
    with httpx.Client(base_url=url, timeout=60) as client:
        r = client.post("api/similar", files={"image": ("shot.jpg", photo.read_bytes())},
                        data={"k": "5"})
        assert r.status_code == 200, r.text
        hits = r.json()["hits"]
        assert len(hits) == 5 and hits[0]["id"] == photo.stem and hits[0]["score"] > 0.99
        assert hits[0]["photo"].endswith(f"/fai/photo/{photo.stem}")
        r = client.post("api/similar", json={"id": photo.stem, "k": 3})
        ids = [h["id"] for h in r.json()["hits"]]
        assert r.status_code == 200 and len(ids) == 3 and photo.stem not in ids
        other = ids[0]
        r = client.post("api/basket", json={"ids": [photo.stem, other], "k": 4})
        assert r.status_code == 200
        hits = r.json()["hits"]
        assert len(hits) == 4 and {h["source"] for h in hits} <= {photo.stem, other}
        assert not {photo.stem, other} & {h["id"] for h in hits}


def test_plain_http_api_errors_are_one_safe_json_line(app_url):
    import httpx

    url, cache = app_url
    with httpx.Client(base_url=url, timeout=60) as client:
        cases = [
            (client.post("api/similar", json={"id": "no-such-item"}), 404),
            (client.post("api/similar", json={"id": demo_photo(cache).stem, "k": "lots"}), 400),
            (client.post("api/similar", files={"image": ("x.jpg", b"<html>not a photo")}), 400),
            (client.post("api/similar", json={"k": 3}), 400),
            (client.post("api/basket", json={"ids": "one"}), 400),
            (client.post("api/similar", content=b"{bad json",
                         headers={"content-type": "application/json"}), 400),
            (client.get("api/similar"), 405),
            (client.post("api/similar", files={"image": ("big.jpg", b"\xff" * 2_000_000)}), 413),
        ]
        for response, status in cases:
            assert response.status_code == status, (status, response.text)
            text = response.text
            assert "Traceback" not in text and str(cache) not in text and "/tmp" not in text
            if status != 413:
                assert set(response.json()) == {"error"}


def cards_layout(page, where: str) -> dict:
    """Cards per first row, their heights and widths, as the browser laid them out."""
    return page.evaluate(f"""() => {{
        const cards = [...document.querySelectorAll('{where} .fai-card')];
        const top = cards[0].getBoundingClientRect().top;
        return {{per_row: cards.filter(c => Math.abs(c.getBoundingClientRect().top - top) < 2)
                 .length, heights: cards.map(c => Math.round(c.getBoundingClientRect().height)),
                 width: cards[0].getBoundingClientRect().width}};
    }}""")


@needs_chromium
@pytest.mark.parametrize("width,height,name,per_row", [(390, 844, "ui-phone.png", (2, 2)),
                                                        (1400, 1000, "ui-desktop.png", (4, 8))])
def test_the_shop_page_on_a_phone_and_a_desktop(app_url, tmp_path, width, height, name,
                                                  per_row):
    """Two cards a row on a phone, four or more on a desktop, every card one height; the
    strip opens varied; "More like this" shows the item it is like; a basket item can be
    removed on its own; no timings or raw scores for shoppers. Results first: their top is on
    the first screen even on a phone, the filters folded; no "Use via API" for shoppers."""
    playwright = pytest.importorskip("playwright.sync_api")
    url, cache = app_url
    rows = {r["id"]: r for r in csv.DictReader(open(cache / "demo-shop" / "metadata.csv"))}
    with playwright.sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(url, wait_until="load")
        page.wait_for_selector("#fai-browse img", timeout=60_000)
        strip = page.locator("#fai-browse img")
        first_kinds = set()
        for i in range(6):
            src = strip.nth(i).get_attribute("src") or ""
            first_kinds.add(rows[src.rsplit("/", 1)[-1]]["type"])
        assert len(first_kinds) >= 4, first_kinds  # not the CSV's first rows of one kind
        # the colour toggle shows exactly when the shop's model has a colour part (v3 has)
        from fai_infer import Encoder

        parts = Encoder().info.parts
        assert page.locator("#fai-look").is_visible() == bool(parts and parts.has_colour)
        assert not page.locator("#fai-clear").is_visible()  # nothing to empty yet
        strip.nth(2).click()
        wait_for_cards(page, "#fai-results", 8)
        picked = (strip.nth(2).get_attribute("src") or "").rsplit("/", 1)[-1]
        assert page.locator("#fai-query img").get_attribute("src").endswith(picked)
        assert rows[picked]["name"].lower() in page.locator("#fai-query").inner_text().lower()
        layout = cards_layout(page, "#fai-results")
        assert per_row[0] <= layout["per_row"] <= per_row[1], layout
        page.evaluate("window.scrollTo(0, 0)")
        top = page.evaluate("document.querySelector('#fai-results .fai-card')"
                            ".getBoundingClientRect().top")
        assert top + 200 < height, top  # a first row of results shows on the first screen
        assert not page.locator("#fai-filters input").first.is_visible()  # folded
        assert "Use via API" not in page.locator("body").inner_text()
        assert not page.get_by_text("Settings", exact=True).count()
        shot = tmp_path / name
        page.screenshot(path=str(shot), full_page=False)
        assert len(set(layout["heights"])) == 1, layout  # buttons line up
        text = page.locator("#fai-results").inner_text()
        assert MATCH_WORDS.search(text) and "%" not in text
        assert not re.search(r"\d\s*ms\b", page.locator("body").inner_text())
        page.locator("#fai-results .fai-add").nth(0).click()
        wait_for_cards(page, "#fai-basket", 1)
        page.locator("#fai-results .fai-add").nth(1).click()
        wait_for_cards(page, "#fai-basket", 2)
        assert page.locator("#fai-clear").is_visible()
        names = page.locator("#fai-basket .fai-name").all_inner_texts()
        page.locator("#fai-basket .fai-remove").first.click()
        page.wait_for_function("document.querySelectorAll('#fai-basket .fai-card').length == 1",
                               timeout=60_000)
        assert page.locator("#fai-basket .fai-name").all_inner_texts() == names[1:]
        browser.close()
    assert shot.stat().st_size > 10_000
    save_screenshot(shot, name)


@needs_chromium
def test_the_merchandiser_page_lists_findings_with_photos(app_url, tmp_path):
    """python -m ui.app --merchandiser: disputed labels, then duplicates, photos side by side."""
    playwright = pytest.importorskip("playwright.sync_api")
    from ui.launch import start_app

    _, cache = app_url  # the demo shop, already indexed
    proc, url = start_app(cache, ("--merchandiser",))
    try:
        with playwright.sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, wait_until="load")
            page.wait_for_selector("#fai-audit", timeout=60_000)
            assert "catalogue checks" in page.locator("#fai-title").inner_text()
            page.locator("#fai-audit").click()
            page.wait_for_function("document.querySelector('#fai-audit-list').innerText"
                                   ".length > 20", timeout=120_000)
            findings = page.locator("#fai-audit-list .fai-finding")
            if findings.count():
                assert findings.first.locator("img").count() >= 2  # the item and neighbours
                assert "neighbours say" in findings.first.inner_text()
            page.get_by_role("tab", name="Duplicates").click()
            page.locator("#fai-dupes").click()
            page.wait_for_function("document.querySelector('#fai-dupes-list').innerText"
                                   ".length > 20", timeout=120_000)
            page.get_by_role("tab", name="Labels to check").click()
            shot = tmp_path / "merch.png"
            page.screenshot(path=str(shot), full_page=False)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
    save_screenshot(shot, "ui-merchandiser.png")
