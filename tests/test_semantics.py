"""Updates that lose nothing, lookups that name their problem, output that cannot attack the
terminal (issue 17, items 5 and 7)."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import threading

import pytest

from fai_infer import Catalog, Encoder, NotInCatalogue
from tests.helpers import OTHER_MODEL, ROOT, catalog_of, write_products


@pytest.fixture()
def shop(tmp_path):
    write_products(tmp_path / "shop", 8)
    cat = Catalog.build(tmp_path / "shop", tmp_path / "shop" / "metadata.csv",
                        encoder=Encoder(OTHER_MODEL))  # plumbing: the small model
    cat.save(tmp_path / "cat")
    return tmp_path, cat


def test_replacing_a_photo_without_metadata_keeps_the_items_metadata(shop):
    tmp, cat = shop
    before = cat.get("p003").metadata
    assert before["gender"]
    new = tmp / "new" / "p003.jpg"
    new.parent.mkdir()
    shutil.copy(tmp / "shop" / "images" / "p005.jpg", new)
    assert cat.add([new]) == []
    assert cat.get("p003").metadata == before and cat.get("p003").path == str(new)
    assert Catalog.open(tmp / "cat").get("p003").metadata == before


def test_two_files_with_one_stem_are_refused_by_name(shop):
    tmp, cat = shop
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    shutil.copy(tmp / "shop" / "images" / "p001.jpg", tmp / "a" / "twin.jpg")
    shutil.copy(tmp / "shop" / "images" / "p002.jpg", tmp / "b" / "twin.png")
    with pytest.raises(ValueError, match="same id") as err:
        cat.add([tmp / "a" / "twin.jpg", tmp / "b" / "twin.png"])
    assert "a/twin.jpg" in str(err.value) and "b/twin.png" in str(err.value)
    assert "twin" not in cat and len(cat) == 8


def test_similar_to_a_removed_id_is_not_in_the_catalogue(shop):
    _, cat = shop
    cat.remove(["p004"])
    with pytest.raises(NotInCatalogue, match="not in the catalogue: p004"):
        cat.similar("p004", k=3)
    errors: list[BaseException] = []

    def query():
        for _ in range(200):
            try:
                cat.similar("p006", k=3)
            except NotInCatalogue:
                pass
            except BaseException as exc:  # noqa: BLE001 - the race must not produce these
                errors.append(exc)

    threads = [threading.Thread(target=query) for _ in range(3)]
    for t in threads:
        t.start()
    cat.remove(["p006"])
    for t in threads:
        t.join()
    assert errors == []


def test_cli_shows_control_sequences_instead_of_obeying_them(shop):
    tmp, cat = shop
    rows = list(csv.DictReader(open(tmp / "shop" / "metadata.csv")))
    for row in rows:
        row["colour"] = "red\x1b]0;owned\x07\x1b[2J"
    meta = tmp / "evil.csv"
    with open(meta, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    Catalog.build(tmp / "shop", meta, encoder=Encoder(OTHER_MODEL)).save(tmp / "evil")
    res = subprocess.run([sys.executable, "-m", "fai_infer", "query", str(tmp / "evil"), "p001",
                          "-k", "2"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout
    assert "red\\x1b]0;owned\\x07\\x1b[2J" in res.stdout


def test_where_on_an_unknown_column_names_it_and_the_close_ones():
    import numpy as np
    import pytest

    from fai_infer import Encoder

    enc = Encoder(OTHER_MODEL)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, enc.dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    rows = [{"product_type_name": "Dress" if i % 2 else "Shirt"} for i in range(6)]
    cat = catalog_of(enc, [f"i{i}" for i in range(6)], [""] * 6, rows, emb)
    with pytest.raises(ValueError, match="no such metadata column.*did you mean "
                                         "product_type_name"):
        cat.similar_to_vector(emb[0], k=3, where={"Product_type_name": "Dress"})
    hits = cat.similar_to_vector(emb[0], k=3, where={"product_type_name": "dress"})
    assert hits and all(h.metadata["product_type_name"] == "Dress" for h in hits)
