"""Garments in a shopper's photo (issue 30): the runtime parser, garment-view photo queries,
shop the look (Catalog.look, ``fai look``, POST /api/look).

The parser here is a tiny ONNX file written by the test: a per-pixel nearest-colour rule (one
1x1 convolution, at the input's full resolution and as large as the photos, so no pixel mixes
two colours), so a synthetic "person" made of coloured rectangles parses exactly and every
check below can fail. A random-weight parser
exported by ``export.parser_onnx`` shows the runtime reads a real export. The encoder is the
shipped model: a garment view then finds its packshot twin."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from fai_infer.catalog.garments import NO_GARMENT, PHOTOGRAPHED_GROUPS, WHOLE
from fai_infer.catalog.local import Catalog
from fai_infer.errors import ImageError
from fai_infer.index.hits import NotInCatalogue
from fai_infer.model.encoder import Encoder
from fai_infer.model.parser import (METADATA_KEY, GarmentParser, box_of, garment_view)
from tests.helpers import SHIPPED, call

GROUPS = ("background", "skin", "hair", "upper", "lower", "whole", "outer", "shoes", "bag",
          "accessory")
COLOURS = {"background": (255, 255, 255), "skin": (224, 172, 140), "hair": (60, 35, 15),
           "upper": (200, 30, 30), "lower": (30, 30, 200), "whole": (150, 30, 150),
           "outer": (30, 150, 30), "shoes": (230, 200, 20), "bag": (230, 120, 20),
           "accessory": (20, 200, 200)}
SIZE = 240  # the long side of every test photo: the letterbox does not resample them


def colour_rule_parser(path, size: int = SIZE) -> None:
    """An ONNX parser whose logits are -distance to each group's colour (scaled): a 1x1
    convolution on the normalised input."""
    protos = np.array([COLOURS[g] for g in GROUPS], np.float32) / 255.0 * 2 - 1  # input space
    scale = 20.0
    weight = (2 * scale * protos).reshape(len(GROUPS), 3, 1, 1).astype(np.float32)
    bias = (-scale * (protos ** 2).sum(1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w", "b"], ["logits"])],
        "colour-rule", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                      ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                       ["batch", len(GROUPS), size, size])],
        [helper.make_tensor("w", TensorProto.FLOAT, weight.shape, weight.ravel()),
         helper.make_tensor("b", TensorProto.FLOAT, bias.shape, bias)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    meta = {"format": 1, "groups": list(GROUPS), "garment_groups": list(GROUPS[3:]),
            "preprocess": {"size": size, "pad_value": 255, "resize": "area",
                           "scale": 1 / 255, "mean": [0.5] * 3, "std": [0.5] * 3},
            "output_stride": 1, "train_config": {"held_apart": 0.2, "val_fraction": 0.1}}
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(meta))
    onnx.save(model, str(path))


def person(h: int = 240, w: int = 160) -> np.ndarray:
    """A standing figure of rectangles on white: hair, face, a red top, blue trousers, yellow
    shoes; and the boxes each garment occupies (x0, y0, x1, y1)."""
    img = np.full((h, w, 3), 255, np.uint8)
    boxes = {"hair": (60, 8, 100, 24), "skin": (62, 24, 98, 52), "upper": (44, 52, 116, 124),
             "lower": (52, 124, 108, 208), "shoes": (48, 208, 112, 232)}
    for group, (x0, y0, x1, y1) in boxes.items():
        img[y0:y1, x0:x1] = COLOURS[group]
    return img, boxes


def packshot(group: str, h: int = 240, w: int = 180) -> np.ndarray:
    """One garment as a packshot: its block from :func:`person` (a dress: a tall block), twice
    the size, centred on white; no skin, no hair."""
    x0, y0, x1, y1 = person()[1].get(group, (0, 0, 50, 110))
    bh, bw = 2 * (y1 - y0), 2 * (x1 - x0)
    img = np.full((h, w, 3), 255, np.uint8)
    top, left = (h - bh) // 2, (w - bw) // 2
    img[top : top + bh, left : left + bw] = COLOURS[group]
    return img


@pytest.fixture(scope="module")
def parser(tmp_path_factory) -> GarmentParser:
    path = tmp_path_factory.mktemp("parser") / "rule.onnx"
    colour_rule_parser(path)
    return GarmentParser(path)


@pytest.fixture(scope="module")
def shop(tmp_path_factory, parser) -> Catalog:
    """Packshots of a top, trousers, shoes and a dress, through the shipped encoder."""
    folder = tmp_path_factory.mktemp("shop")
    paths = []
    for group in ("upper", "lower", "shoes", "whole", "bag"):
        path = folder / f"{group}.png"
        cv2.imwrite(str(path), packshot(group)[..., ::-1])
        paths.append(path)
    cat = Catalog(Encoder(SHIPPED))
    cat.add(paths)
    cat.parser = parser
    return cat


def test_a_person_parses_into_consistent_regions(parser):
    img, boxes = person()
    found = parser.parse(img)
    assert found.size == img.shape[:2]
    assert [r.group for r in found.regions] == ["upper", "lower", "shoes"]  # largest first
    union = np.zeros(img.shape[:2], bool)
    for r in found.regions:
        assert r.mask.shape == img.shape[:2] and r.mask.dtype == bool
        assert r.box == box_of(r.mask)  # the box is the mask's
        assert r.box == boxes[r.group]
        assert r.share == pytest.approx(r.mask.mean())
        x0, y0, x1, y1 = r.box
        assert r.mask[y0:y1, x0:x1].all() and r.mask.sum() == (x1 - x0) * (y1 - y0)
        assert 0.9 < r.confidence <= 1.0
        assert r.kind and r.kind != r.group or r.group == "shoes"
        assert not (union & r.mask).any()  # one group per pixel
        union |= r.mask
    assert not (union & (found.skin | found.hair | found.background)).any()
    assert found.person_share == pytest.approx((found.skin | found.hair).mean())
    assert 0.03 < found.person_share < 0.1


def test_tiny_regions_are_dropped_and_bad_input_is_one_line(parser, tmp_path):
    img, _ = person()
    img[5:7, 5:7] = COLOURS["bag"]  # 4 pixels of "bag": noise, not a garment
    assert "bag" not in [r.group for r in parser.parse(img).regions]
    for bad in (b"<html>not a photo", b"", tmp_path / "missing.jpg"):
        with pytest.raises(ImageError) as err:
            parser.parse(bad)
        assert "\n" not in str(err.value)


def test_a_garment_view_keeps_only_the_garments_pixels(parser):
    img, boxes = person()
    upper = parser.parse(img).region("upper")
    view = garment_view(img, upper, margin=0.1)
    x0, y0, x1, y1 = upper.box
    assert view.shape[:2] == (round((y1 - y0) * 1.2), round((x1 - x0) * 1.2))
    colours = {tuple(c) for c in view.reshape(-1, 3)}
    assert colours == {COLOURS["upper"], (255, 255, 255)}  # no skin, no trousers


def test_a_photo_query_embeds_the_garment_and_says_which(shop):
    img, _ = person()
    whole = shop.similar(img, k=5, region="whole")
    assert {h.region for h in whole} == {WHOLE}
    found = shop.parser.parse(img)
    for group in ("upper", "lower", "shoes"):
        hits = shop.similar(img, k=5, region=group)
        assert {h.region for h in hits} == {group}
        # worn garments are embedded as photographed, shoes (and bags) painted like a packshot
        view = garment_view(img, found.region(group), paint=group not in PHOTOGRAPHED_GROUPS)
        expected = shop.encoder.embed([view])[0]
        assert [h.score for h in hits] == pytest.approx(
            [float(shop.vector(h.id) @ expected) for h in hits], abs=1e-5)
    assert shop.similar(img, k=5, region="shoes")[0].id == "shoes"  # its packshot twin
    # auto: the largest garment (the top) or the whole photo, whichever matches better
    auto = shop.similar(img, k=5)
    # beside a person's garment the frame is embedded alone (no centre crop)
    from fai_infer.catalog.garments import frame_vectors
    candidates = {"upper": shop.similar(img, k=5, region="upper"),
                  "whole": shop.similar_to_vector(frame_vectors(shop.encoder, img, 0.0)[0], k=5)}
    best = max(candidates, key=lambda g: (candidates[g][0].score, g == "whole"))
    assert [(h.id, h.score) for h in auto] == [(h.id, h.score) for h in candidates[best]]
    assert auto[0].region == ("upper" if best == "upper" else WHOLE)
    assert shop.similar(img, k=2, region="whole-body")[0].region == WHOLE  # no dress here
    with pytest.raises(ValueError, match="region 'shirt' is not one of auto, whole"):
        shop.similar(img, region="shirt")


def test_a_packshot_stays_whole(shop):
    shot = packshot("lower")
    hits = shop.similar(shot, k=3)
    assert {h.region for h in hits} == {WHOLE}
    assert hits[0].id == "lower"
    expected = shop.similar(shot, k=3, region="whole")
    assert [(h.id, round(h.score, 6)) for h in hits] == [(h.id, round(h.score, 6))
                                                       for h in expected]
    assert shop.similar("upper", k=2)[0].region == ""  # a catalogue id: nothing parsed


def test_a_whole_photo_query_averages_the_frame_with_its_centre_crop(shop):
    """A shopper frames the garment in the middle of a room: the whole-frame query vector is
    the mean of the frame's and its centre crop's embeddings (QUERY_CENTRE_CROP); a
    catalogue item's own photo is still answered as itself, at about 1.0."""
    from fai_infer.catalog.garments import QUERY_CENTRE_CROP, frame_vectors
    from fai_infer.image.preprocess import centre_crop

    room = np.full((SIZE, SIZE, 3), (90, 140, 60), np.uint8)  # a green room ...
    room[60:180, 60:180] = cv2.resize(packshot("lower"), (120, 120))  # ... trousers in the middle
    square = shop.encoder.prepare(room)
    frame_only = shop.encoder.embed_squares(square[None])[0]
    cropped = shop.encoder.embed_squares(centre_crop(square, QUERY_CENTRE_CROP)[None])[0]
    expected = (frame_only + cropped) / np.linalg.norm(frame_only + cropped)
    assert float(frame_only @ expected) < 0.9999  # the crop really changes the query
    hits = shop.similar(room, k=5, region="whole")
    assert {h.region for h in hits} == {WHOLE}
    assert [h.score for h in hits] == pytest.approx(
        [float(shop.vector(h.id) @ expected) for h in hits], abs=1e-5)
    own = shop.similar(packshot("lower"), k=2, region="whole")  # the item's own photo
    assert own[0].id == "lower" and own[0].score > 0.999
    rows = frame_vectors(shop.encoder, room, QUERY_CENTRE_CROP, also=packshot("upper"))
    assert rows.shape[0] == 3 and rows[2] == pytest.approx(
        shop.encoder.embed([packshot("upper")])[0], abs=1e-5)
    assert frame_vectors(shop.encoder, room, 0.0).shape[0] == 1  # 0: the frame alone
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="crop_share"):
            frame_vectors(shop.encoder, room, bad)


def test_the_page_searches_an_upload_as_the_api_does(shop, tmp_path, monkeypatch):
    """The shop page's upload box asks the runtime's photo query (garment of a person, frame
    beside its centre crop), not a plain whole-frame embedding: a page and ``/api/similar``
    answer one photo alike."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    from ui.app import ShopDemo

    page = ShopDemo(shop, "shop")
    img, _ = person()
    for name, photo in (("outfit.png", img), ("trousers.png", packshot("lower"))):
        path = tmp_path / "uploads" / "one" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), photo[..., ::-1])
        expected = shop.photo_query(str(path), k=4)
        cards = page.search_upload(str(path), 4)
        assert not path.exists()  # the upload is deleted once embedded
        assert [(c["id"], c["score"]) for c in cards] == [
            (h.id, round(h.score, 4)) for h in expected.hits]
    assert expected.region == WHOLE  # a packshot: its frame (and centre crop)
    assert shop.photo_query(img, k=4).region == "upper"  # a person: the largest garment
    with pytest.raises(NotInCatalogue):  # a name is never a file search, as in similar()
        shop.photo_query("upper")


def test_look_has_one_row_per_garment_and_words_for_none(shop):
    img, boxes = person()
    look = shop.look(img, k=3)
    assert [row.region.group for row in look.rows] == ["upper", "lower", "shoes"]
    for row in look.rows:
        assert len(row.hits) == 3
        assert {h.region for h in row.hits} == {row.region.group}
        alone = shop.similar(img, k=3, region=row.region.group)  # the same query, the same answer
        assert [(h.id, h.score) for h in alone] == [(h.id, h.score) for h in row.hits]
    out = look.to_dict()
    assert look.rows[2].hits[0].id == "shoes"
    assert out["size"] == {"height": 240, "width": 160} and out["message"] == ""
    assert [g["group"] for g in out["garments"]] == ["upper", "lower", "shoes"]
    empty = shop.look(np.full((120, 90, 3), 255, np.uint8), k=3)
    assert empty.rows == [] and empty.message == NO_GARMENT
    with pytest.raises(ImageError):
        shop.look(b"GIF89a broken", k=3)


def test_fai_look_in_process(shop, parser, tmp_path, capsys):
    from fai_infer.cli.main import main

    store = tmp_path / "shop.catalog"
    shop.save(store)
    img, _ = person()
    photo = tmp_path / "outfit.png"
    cv2.imwrite(str(photo), img[..., ::-1])
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((80, 60, 3), 255, np.uint8))
    args = ["look", str(store), "--parser", str(parser.path), "-k", "2"]
    assert main(args + [str(photo), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [g["group"] for g in out["garments"]] == ["upper", "lower", "shoes"]
    assert out["garments"][2]["hits"][0]["id"] == "shoes"
    assert main(args + [str(photo)]) == 0
    text = capsys.readouterr().out
    assert "top (upper, box" in text and "shoes (shoes, box" in text
    assert main(args + [str(blank)]) == 0
    assert NO_GARMENT in capsys.readouterr().out
    dress = np.full((240, 160, 3), 255, np.uint8)  # the text names whole-body as region= does
    dress[8:24, 60:100], dress[24:52, 62:98] = COLOURS["hair"], COLOURS["skin"]
    dress[52:200, 40:120] = COLOURS["whole"]
    cv2.imwrite(str(tmp_path / "dress.png"), dress[..., ::-1])
    assert main(args + [str(tmp_path / "dress.png")]) == 0
    text = capsys.readouterr().out
    assert "(whole-body, box" in text and "(whole, box" not in text
    assert main(args + [str(tmp_path / "nope.jpg")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("fai look: error:") and "file not found" in err
    assert len(err.splitlines()) == 1
    assert main(["query", str(store), str(photo), "--parser", str(parser.path),
                 "--region", "shoes", "-k", "1", "--json"]) == 0
    hit = json.loads(capsys.readouterr().out)[0]["hits"][0]
    assert hit["id"] == "shoes" and hit["region"] == "shoes"


def _multipart(fields: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = "----faitestboundary"
    body = b""
    for name, value in fields.items():
        extra = f'; filename="{name}.png"' if name == "image" else ""
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"{extra}"
                 f"\r\n\r\n").encode() + value + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_http_look_route(shop):
    from ui.http_api import HttpApi
    from ui.routes import route_allowed
    from ui.service import ShopService

    app = HttpApi.for_service(ShopService(shop, "test shop"))
    img, _ = person()
    ok, png = cv2.imencode(".png", img[..., ::-1])
    body, ctype = _multipart({"image": png.tobytes(), "k": b"2"})
    status, _, raw = call(app, "/api/look", "POST", body=body, headers={"content-type": ctype})
    assert status == 200, raw
    out = json.loads(raw)
    assert [g["group"] for g in out["garments"]] == ["upper", "lower", "shoes"]
    first = out["garments"][0]
    assert first["box"] == [44, 52, 116, 124] and len(first["hits"]) == 2
    hit = out["garments"][2]["hits"][0]
    assert hit["id"] == "shoes" and hit["photo"].endswith("/shoes") and "path" not in hit
    ok, blank = cv2.imencode(".png", np.full((80, 60, 3), 255, np.uint8))
    body, ctype = _multipart({"image": blank.tobytes()})
    status, _, raw = call(app, "/api/look", "POST", body=body, headers={"content-type": ctype})
    assert status == 200 and json.loads(raw) == {"size": {"height": 80, "width": 60},
                                                 "garments": [], "message": NO_GARMENT}
    for fields, words in (({"image": b"<html>not a photo"}, "cannot use this image"),
                          ({"image": png.tobytes(), "k": b"0"}, "'k' must be"),
                          ({"image": png.tobytes(), "wher": b"{}"}, "unknown key")):
        body, ctype = _multipart(fields)
        status, _, raw = call(app, "/api/look", "POST", body=body,
                              headers={"content-type": ctype})
        assert status == 400 and words in json.loads(raw)["error"], raw
    status, _, raw = call(app, "/api/look", "POST", body=b"{}",
                          headers={"content-type": "application/json"})
    assert status == 400 and "multipart field 'image'" in json.loads(raw)["error"]
    assert route_allowed("POST", "/api/look") and not route_allowed("POST", "/api/looks")


def test_a_real_parser_export_is_read_by_the_runtime(tmp_path):
    torch = pytest.importorskip("torch")
    from export.parser_onnx import export_parser
    from train.parser_model import GarmentParser as TorchParser, ParserConfig

    torch.manual_seed(0)
    model = TorchParser(ParserConfig(image_size=64, channels=16)).eval()
    img, _ = person()
    files = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), np.roll(img, 7 * i, axis=1)[..., ::-1])
        files.append(path)
    out = tmp_path / "parser.onnx"
    export_parser(model, {"epoch": 0, "train_config": {}}, out, files)
    runtime = GarmentParser(out)
    assert runtime.groups == GROUPS and runtime.spec.size == 64
    found = runtime.parse(files[0])
    assert found.size == img.shape[:2]
    probs = runtime.probabilities(img)
    assert probs.shape == (len(GROUPS),) + img.shape[:2]
    assert np.allclose(probs.sum(0), 1, atol=1e-4)
    labels = probs.argmax(0)
    for r in found.regions:  # whatever a random parser finds is consistent
        assert r.mask.sum() <= (labels == GROUPS.index(r.group)).sum()
        assert r.box == box_of(r.mask) and r.share >= runtime.min_share


def test_the_look_panel_outlines_each_garment_and_lists_its_row(shop, tmp_path):
    from ui.look_panel import GROUP_COLOURS, answer
    from ui.service import ShopService

    service = ShopService(shop, "test shop")
    img, boxes = person()
    photo = tmp_path / "outfit.png"
    cv2.imwrite(str(photo), img[..., ::-1])
    drawn, rows = answer(service, str(photo), 2)
    assert drawn.shape == img.shape
    x0, y0, x1, y1 = boxes["shoes"]
    assert tuple(drawn[y1 - 1, (x0 + x1) // 2]) == GROUP_COLOURS["shoes"]  # its box's edge
    inside = (slice(y0 + 8, y1 - 8), slice(x0 + 20, x1 - 8))  # away from the box and its tag
    assert (drawn[inside] == img[inside]).all()
    assert rows.count('class="fai-look-row"') == 3 and rows.count('class="fai-look-card"') == 6
    assert rows.index("</span>Top") < rows.index("</span>Trousers, skirt or shorts") \
        < rows.index("</span>Shoes")
    # the shipped model names colours: each row says its garment's colour (or nothing when
    # no name is likely enough), never more than two names
    for said in rows.split('class="fai-look-colour">(')[1:]:
        assert 1 <= said.split(")</span>")[0].count(",") + 1 <= 2
    assert "/fai/photo/shoes" in rows and str(tmp_path) not in rows
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((80, 60, 3), 255, np.uint8))
    drawn, rows = answer(service, str(blank))
    assert drawn.shape == (80, 60, 3) and "No garment found in this photo." in rows
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"<html>not a photo")
    drawn, rows = answer(service, str(bad))
    assert drawn is None and rows.count("Cannot use this photo") == 1 and "\n" not in rows


def test_a_file_that_is_not_a_parser_is_one_line(tmp_path):
    notes = tmp_path / "notes.onnx"
    notes.write_text("not a model")
    with pytest.raises(ValueError, match="notes.onnx: refused: not an ONNX model"):
        GarmentParser(notes)
    with pytest.raises(ValueError, match="not a garment parser model"):
        GarmentParser(SHIPPED)  # the encoder: no fai_parser metadata
    with pytest.raises(FileNotFoundError, match="garment parser file not found"):
        GarmentParser(tmp_path / "missing.onnx")


def outfit_photo(demo_shop, path) -> None:
    """A drawn figure (skin, hair, a wall and a floor) wearing the demo shop's red T-shirt,
    navy trousers and black shoes, with its brown handbag: an outfit photo made only of
    generated pictures."""
    import csv

    rows = list(csv.DictReader(open(demo_shop / "metadata.csv")))

    def paste(canvas, kind, colour, x0, y0, w, h):
        item = next(r["id"] for r in rows if r["type"] == kind and r["colour"] == colour)
        img = cv2.imread(str(demo_shop / "images" / f"{item}.jpg"))[..., ::-1]
        ys, xs = np.nonzero(img.astype(int).sum(2) < 690)  # the product, not its white
        img = img[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        keep = img.astype(int).sum(2) < 690
        canvas[y0 : y0 + h, x0 : x0 + w][keep] = img[keep]

    c = np.zeros((640, 420, 3), np.uint8)
    c[:], c[520:] = (214, 206, 190), (150, 140, 125)
    skin, hair = (222, 178, 150), (70, 45, 30)
    cv2.ellipse(c, (210, 70), (34, 42), 0, 0, 360, skin, -1)
    cv2.ellipse(c, (210, 48), (38, 28), 0, 180, 360, hair, -1)
    cv2.rectangle(c, (198, 105), (222, 130), skin, -1)
    cv2.rectangle(c, (120, 140), (146, 330), skin, -1)
    cv2.rectangle(c, (274, 140), (300, 330), skin, -1)
    paste(c, "Tshirt", "Red", 120, 122, 180, 170)
    paste(c, "Trousers", "Navy Blue", 145, 285, 130, 260)
    paste(c, "Shoe", "Black", 128, 540, 80, 50)
    paste(c, "Shoe", "Black", 214, 540, 80, 50)
    paste(c, "Handbag", "Brown", 292, 300, 90, 90)
    cv2.imwrite(str(path), c[..., ::-1])


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.slow
@pytest.mark.service
@pytest.mark.browser
@pytest.mark.skipif(not __import__("os").path.exists(CHROMIUM),
                    reason="Chromium not installed (apt-get install chromium)")
def test_the_look_panel_in_chromium_at_390_and_1400_px(tmp_path):
    """The demo page with the shipped parser: the panel outlines the garments of an outfit and
    shows a row each, without a page-wide horizontal scroll, on a phone and a desktop.
    FAI_SCREENSHOT_DIR=docs writes docs/ui-look-phone.png and docs/ui-look-desktop.png."""
    import os
    import shutil

    from playwright.sync_api import sync_playwright

    from ui.launch import start_app

    proc, url = start_app(tmp_path, ())
    try:
        outfit = tmp_path / "outfit.jpg"
        outfit_photo(tmp_path / "demo-shop", outfit)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            for width, height, name in ((390, 844, "phone"), (1400, 1000, "desktop")):
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(url)
                page.locator("#fai-look-panel button").first.click()  # open the accordion
                page.locator("#fai-look-photo input[type=file]").set_input_files(str(outfit))
                page.wait_for_selector("#fai-look-photo img", timeout=60_000)
                page.locator("#fai-look-go").click()
                page.wait_for_selector("#fai-look-outlined img", timeout=120_000)
                page.wait_for_function(
                    "document.querySelectorAll('#fai-look-rows .fai-look-card img').length > 0"
                    " && Array.from(document.querySelectorAll('#fai-look-rows img'))"
                    ".every(i => i.complete && i.naturalWidth > 0)", timeout=120_000)
                heads = page.locator("#fai-look-rows .fai-look-head").all_inner_texts()
                assert any("Top" in h for h in heads) and any("Trousers" in h for h in heads)
                assert page.locator("#fai-look-rows .fai-look-card").count() >= 6 * 2
                assert not page.evaluate(
                    "document.documentElement.scrollWidth > window.innerWidth")
                shot = tmp_path / f"ui-look-{name}.png"
                page.locator("#fai-look-panel").screenshot(path=str(shot))
                if os.environ.get("FAI_SCREENSHOT_DIR"):
                    shutil.copy(shot, Path(os.environ["FAI_SCREENSHOT_DIR"]) / shot.name)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_dress_is_named_so_that_region_takes_the_name_back(shop):
    """The parser's whole-body group is called "whole", but region="whole" is the photo: every
    answer names the group "whole-body", which region= takes back."""
    img = np.full((240, 160, 3), 255, np.uint8)
    img[8:24, 60:100], img[24:52, 62:98] = COLOURS["hair"], COLOURS["skin"]
    img[52:200, 40:120] = COLOURS["whole"]
    hits = shop.similar(img, k=2, region="whole-body")
    assert {h.region for h in hits} == {"whole-body"}
    assert hits[0].to_dict()["region"] == "whole-body"
    assert shop.look(img, k=1).to_dict()["garments"][0]["group"] == "whole-body"
    assert {h.region for h in shop.similar(img, k=2, region="whole")} == {WHOLE}


@pytest.mark.parametrize("forge", ["identity", "nan"])
def test_a_file_that_only_copies_a_parsers_metadata_is_refused(tmp_path, forge):
    """Found by an outside red team: an Identity graph (3 channels for 10 declared groups) or
    one multiplying by NaN, with a parser's metadata copied in, loaded and silently found "no
    garment" in every photo."""
    real = tmp_path / "real.onnx"
    colour_rule_parser(real)
    meta = onnx.load(str(real)).metadata_props
    if forge == "identity":
        nodes, out_channels = [helper.make_node("Identity", ["image"], ["logits"])], 3
        inits = []
    else:
        nodes = [helper.make_node("Slice", ["image", "s", "e", "a"], ["one"]),
                 helper.make_node("Tile", ["one", "r"], ["ten"]),
                 helper.make_node("Mul", ["ten", "nan"], ["logits"])]
        out_channels = len(GROUPS)
        inits = [helper.make_tensor("s", TensorProto.INT64, [1], [0]),
                 helper.make_tensor("e", TensorProto.INT64, [1], [1]),
                 helper.make_tensor("a", TensorProto.INT64, [1], [1]),
                 helper.make_tensor("r", TensorProto.INT64, [4], [1, len(GROUPS), 1, 1]),
                 helper.make_tensor("nan", TensorProto.FLOAT, [1], [float("nan")])]
    graph = helper.make_graph(
        nodes, "forged", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                        ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                       ["batch", out_channels, SIZE, SIZE])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for prop in meta:
        model.metadata_props.add(key=prop.key, value=prop.value)
    forged = tmp_path / f"{forge}.onnx"
    onnx.save(model, str(forged))
    with pytest.raises(ValueError, match="does not answer like the garment parser") as info:
        GarmentParser(forged)
    assert "\n" not in str(info.value) and str(forged) in str(info.value)


def test_each_look_row_searches_its_groups_kinds_when_the_shop_names_kinds(parser):
    """A shoes row answers with shoes: with a kind column, each row searches the shop's kinds
    of its group (by their words: "Sneakers" is shoes, "Vest top" upper), whatever the
    embedding prefers. An outside review saw belts and a bralette in a shoes row."""
    from fai_infer.catalog.garments import group_of_kind

    assert [group_of_kind(k) for k in ("Sports Shoes", "Sweatshirts", "Vest top", "Trousers",
                                       "Dresses", "Handbags", "Belts", "Blazer", "Plant")] == [
        "shoes", "upper", "upper", "lower", "whole", "bag", "accessory", "outer", None]
    # the head noun and the longest word decide (an outside review saw socks in a shoes row)
    assert [group_of_kind(k) for k in ("Sneaker Socks", "3p Socks", "Capri Pants", "Capris",
                                       "Bodysuit", "Shirt Dress", "Flip Flops", "Caps")] == [
        "accessory", "accessory", "lower", "lower", "upper", "whole", "shoes", "accessory"]
    rng = np.random.default_rng(2)
    enc = Encoder(SHIPPED)
    # Three kinds whose packshots look alike (one colour block each: the yellow of the shoes,
    # so the embedding alone would mix them), and one top.
    folder_items = {"s1": ("shoes", "Sneakers"), "s2": ("shoes", "Boots"),
                    "b1": ("shoes", "Belts"), "b2": ("shoes", "Bracelet"),
                    "t1": ("upper", "T-shirt")}
    cat = Catalog(enc)
    vectors = []
    for item, (group, _) in folder_items.items():
        img = packshot(group).astype(np.int16) + rng.integers(-20, 20, size=(240, 180, 3))
        vectors.append(enc.embed([np.clip(img, 0, 255).astype(np.uint8)])[0])
    cat.add_embeddings(list(folder_items), np.stack(vectors),
                       metadata=[{"product_type_name": kind} for _, kind in
                                 folder_items.values()])
    cat.parser = parser
    look = cat.look(person()[0], k=4)
    shoes = next(row for row in look.rows if row.region.group == "shoes")
    assert {h.metadata["product_type_name"] for h in shoes.hits} <= {"Sneakers", "Boots"}
    assert len(shoes.hits) == 2
    # the caller's own choice of kinds stands
    mine = cat.look(person()[0], k=4, where={"product_type_name": ["Belts", "Sneakers"]})
    shoes = next(row for row in mine.rows if row.region.group == "shoes")
    assert {h.metadata["product_type_name"] for h in shoes.hits} == {"Belts", "Sneakers"}
