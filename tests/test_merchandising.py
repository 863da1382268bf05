"""The merchandiser's tools: tag (missing labels from neighbours), audit (labels neighbours
dispute), duplicates (near-identical photos), through the Python API, the CLI on generated
photos, and the HTTP API."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from fai_infer import Catalog, Encoder
from fai_infer.merch.duplicates import duplicates
from fai_infer.merch.labels import apply_tags, audit, is_missing, tag
from tests.helpers import OTHER_MODEL, catalog_of, write_products

KINDS = ["Shirt", "Shoe", "Bag", "Watch"]
PER_KIND = 15


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(OTHER_MODEL)


def shop(encoder, blank: set[int] = frozenset(), flip: dict[int, str] | None = None):
    """Four kinds of item, each a direction with spread; some types blanked or mislabelled."""
    rng = np.random.default_rng(5)
    centres = unit(rng.normal(size=(len(KINDS), encoder.dim)))
    n = len(KINDS) * PER_KIND
    vectors = unit(np.repeat(centres, PER_KIND, axis=0) + 0.05 * rng.normal(size=(n, encoder.dim)))
    rows = []
    for i in range(n):
        kind = KINDS[i // PER_KIND]
        kind = (flip or {}).get(i, kind)
        rows.append({"type": "" if i in blank else kind, "gender": ["Men", "Women"][i % 2]})
    ids = [f"i{i:03d}" for i in range(n)]
    return catalog_of(encoder, ids, [""] * n, rows, vectors), vectors


def test_tag_fills_missing_labels_with_what_the_neighbours_agree_on(encoder):
    blank = {3, 20, 33, 50}
    cat, _ = shop(encoder, blank)
    found = tag(cat, ["type"])
    assert sorted(s.id for s in found) == [f"i{i:03d}" for i in sorted(blank)]
    for s in found:
        assert s.value == KINDS[int(s.id[1:]) // PER_KIND] and s.confidence == 1.0
        assert len(s.neighbours) == 10 and s.id not in s.neighbours
    assert [s.id for s in tag(cat, ["type"], where={"gender": "Women"})] == ["i003", "i033"]
    written = apply_tags(cat, found, 0.9)
    assert len(written) == 4 and cat.get("i020").metadata["type"] == "Shoe"
    assert tag(cat, ["type"]) == []  # nothing missing any more
    with pytest.raises(ValueError, match="no column 'colour'"):
        tag(cat, ["colour"])
    assert is_missing(" N/A ") and is_missing("nan") and not is_missing("Navy")


def test_audit_ranks_the_mislabelled_items_first(encoder):
    flip = {4: "Bag", 22: "Watch", 47: "Shirt"}
    cat, _ = shop(encoder, flip=flip)
    found = audit(cat, "type")
    assert {f.id for f in found[:3]} == {f"i{i:03d}" for i in flip}
    top = found[0]
    assert top.sureness > 0.8 and top.suggested == KINDS[int(top.id[1:]) // PER_KIND]
    assert top.label == flip[int(top.id[1:])]


def test_audit_puts_a_gross_error_before_near_synonyms(encoder):
    """Issue 34: a blazer labelled "Eyeglasses" ranked 342nd behind items such as a beanie
    labelled "Beanie" among "Hat/beanie" neighbours (sureness 1.00). Ranked by how far the
    stated label is from what the neighbours say, the blazer leads and the near-synonyms are
    not flagged at all."""
    rng = np.random.default_rng(11)
    hats, blazers, glasses = unit(rng.normal(size=(3, encoder.dim)))
    spread = lambda c, n: unit(c + 0.02 * rng.normal(size=(n, encoder.dim)))  # noqa: E731
    vectors = np.vstack([spread(hats, 40), spread(blazers, 20), spread(glasses, 20)])
    labels = (["Beanie"] * 4 + ["Hat/beanie"] * 36 + ["Blazer"] * 11 + ["Jacket"] * 8
              + ["Eyeglasses"] + ["Eyeglasses"] * 20)
    ids = [f"i{i:03d}" for i in range(len(labels))]
    cat = catalog_of(encoder, ids, [""] * len(ids), [{"type": t} for t in labels], vectors)
    found = audit(cat, "type")
    assert found[0].id == "i059" and found[0].label == "Eyeglasses"
    assert found[0].suggested == "Blazer" and found[0].distance > 0.5
    assert not {f.label for f in found} & {"Beanie", "Hat/beanie"}  # near-synonyms: not flagged
    assert len(found) <= 6  # the gross error and at most the jackets, not every dispute
    # The vote alone (the earlier ranking) put the beanies first.
    from fai_infer.merch.labels import column_labels, disputes
    from fai_infer.merch.neighbours import Neighbours

    nb = Neighbours.of_catalogue(cat, 30)
    old = disputes(nb, column_labels(nb, "type"), range(len(ids)), "type")
    assert old[0].label == "Beanie" and [f.id for f in old].index("i059") >= 3
    assert len(old) > 2 * len(found)


def test_duplicates_group_near_identical_items_only(encoder):
    cat, vectors = shop(encoder)
    rng = np.random.default_rng(9)
    twins = unit(vectors[[2, 31]] + 0.003 * rng.normal(size=(2, encoder.dim)))
    cat.add_embeddings(["twin-a", "twin-b", "twin-a2"],
                       np.vstack([twins, unit(twins[0] + 0.003 * rng.normal(size=encoder.dim))]))
    groups = duplicates(cat)
    assert [sorted(g.ids) for g in groups] == [["i002", "twin-a", "twin-a2"], ["i031", "twin-b"]]
    assert all(s >= 0.95 for g in groups for _, _, s in g.pairs)
    assert duplicates(cat, threshold=0.9999) == []
    with pytest.raises(ValueError, match="threshold"):
        duplicates(cat, threshold=1.5)


@pytest.fixture(scope="module")
def photo_catalog(tmp_path_factory):
    """Generated product photos (colour column), one re-encoded copy and one re-upload."""
    folder = tmp_path_factory.mktemp("shop")
    paths = write_products(folder, 30, size=64)
    img = cv2.imread(str(paths[5]))
    cv2.imwrite(str(folder / "images" / "copy-q40.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 40])
    shutil.copyfile(paths[9], folder / "images" / "reupload.jpg")
    csv = (folder / "metadata.csv").read_text().splitlines()
    csv = [line if not line.startswith("p012,") else ",".join(line.split(",")[:2] + ["", "Men"])
           for line in csv]
    (folder / "metadata.csv").write_text("\n".join(csv) + "\n")
    out = folder / "shop.catalog"
    from fai_infer.cli.main import main

    assert main(["index", str(folder / "images"), "--metadata", str(folder / "metadata.csv"),
                 "--out", str(out), "--model", str(OTHER_MODEL), "--name", "Test  Shop"]) == 0
    return out


def test_cli_tag_audit_duplicates_on_photos(photo_catalog, capsys):
    from fai_infer.cli.main import main

    capsys.readouterr()
    cat = str(photo_catalog)
    assert main(["duplicates", cat, "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    ids = [sorted(g["ids"]) for g in groups]
    assert ["copy-q40", "p005"] in ids and ["p009", "reupload"] in ids
    assert main(["tag", cat, "--columns", "colour", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # The blanked row and the two photos the CSV does not list.
    got = {s["id"]: s for s in out["suggestions"]}
    assert set(got) == {"p012", "copy-q40", "reupload"} and out["applied"] == 0
    assert main(["tag", cat, "--columns", "colour", "--where", "gender=Men", "--json"]) == 0
    assert [s["id"] for s in json.loads(capsys.readouterr().out)["suggestions"]] == ["p012"]
    assert main(["tag", cat, "--columns", "colour", "--apply", "--min-confidence", "0"]) == 0
    assert "3 at confidence >= 0 written" in capsys.readouterr().out
    assert Catalog.open(photo_catalog).get("p012").metadata["colour"] == got["p012"]["value"]
    assert main(["audit", cat, "--column", "colour", "--json"]) == 0
    findings = json.loads(capsys.readouterr().out)
    assert findings["count"] == len(findings["findings"])
    assert main(["audit", cat, "--column", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no column 'nope'" in err
    with pytest.raises(SystemExit) as usage:
        main(["duplicates", cat, "--threshold", "2"])
    assert usage.value.code == 2 and capsys.readouterr().err.count("\n") == 1
    assert main(["info", cat]) == 0
    assert "shop name: Test Shop" in capsys.readouterr().out


def test_http_tools_answer_and_refuse_unknown_keys(photo_catalog):
    from starlette.testclient import TestClient

    from ui.http_api import HttpApi
    from ui.merchandising import MerchService
    from ui.service import ShopService

    cat = Catalog.open(photo_catalog)
    service = ShopService(cat, "shop")
    client = TestClient(HttpApi.for_service(service, MerchService(cat)))
    r = client.post("/api/duplicates", json={"limit": 5})
    assert r.status_code == 200
    assert ["p009", "reupload"] in [sorted(g["ids"]) for g in r.json()["groups"]]
    r = client.post("/api/tag", json={"columns": ["colour"], "where": {"gender": "Men"}})
    assert r.status_code == 200, r.text
    r = client.post("/api/audit", json={"column": "colour", "limit": 3})
    assert r.status_code == 200 and len(r.json()["findings"]) <= 3
    for path, body, words in [("/api/audit", {"column": "colour", "apply": True}, "'apply'"),
                              ("/api/audit", {}, "column"),
                              ("/api/duplicates", {"threshold": "high"}, "threshold"),
                              ("/api/tag", {"limit": 0}, "limit"),
                              ("/api/similar", {"id": "p001", "colour": 0.5}, "no colour part"),
                              ("/api/similar", {"id": "p001", "colour": "red"}, "colour"),
                              ("/api/basket", {"ids": ["p001"], "colour": True}, "colour"),
                              ("/api/similar", {"id": "p001", "k": 2, "colur": 0}, "'colur'")]:
        r = client.post(path, json=body)
        assert r.status_code == 400 and words in r.json()["error"], (path, body, r.json())
    r = client.post("/api/similar", files={"image": open(cat.get("p001").path, "rb")},
                    data={"colour": "x"})
    assert r.status_code == 400 and "colour" in r.json()["error"]
    hits = client.post("/api/similar", json={"id": "p001", "k": 2}).json()["hits"]
    assert {"confidence", "match"} <= set(hits[0])
    assert TestClient(HttpApi.for_service(service)).post("/api/tag", json={}).status_code == 404
