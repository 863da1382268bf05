"""What a shop's engineer meets first: filters with negation and ranges, CSVs whose ids do not
quite match the photo names, catalogues used from another directory, and commands that need no
--model once a catalogue knows its model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fai_infer import Catalog, CatalogError, Encoder
from fai_infer.index.filters import Clause, parse_where, passes
from fai_infer.catalog.sources import normalise_id
from tests.helpers import OTHER_MODEL, ROOT, catalog_of, write_csv, write_products


def run_fai(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "fai_infer", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(OTHER_MODEL)


@pytest.fixture(scope="module")
def priced(encoder) -> Catalog:
    rng = np.random.default_rng(0)
    n = 300
    rows = [{"colour": ["Red", "Blue", "Black"][i % 3], "price": str(5 * (i % 40)),
             "size": ["S", "M", "L", ""][i % 4]} for i in range(n)]
    rows[7]["price"] = "n/a"
    return catalog_of(encoder, [f"i{i}" for i in range(n)], [""] * n, rows,
                      rng.normal(size=(n, encoder.dim)))


def test_where_forms_parse_to_the_same_clauses():
    assert parse_where({"colour": ["Red", "blue"]}) == [Clause("colour", "in", ("red", "blue"))]
    assert parse_where(["colour=Red", "colour=Blue", "price<50"]) == [
        Clause("colour", "in", ("red", "blue")), Clause("price", "<", 50.0)]
    assert parse_where("size!=S") == [Clause("size", "not_in", ("s",))]
    for bad in ("price<cheap", "=x", "colour"):
        with pytest.raises(ValueError, match="filter"):
            parse_where([bad])


@pytest.mark.parametrize("where", [
    ["colour!=red"], ["price<50"], ["price>=100", "colour=Blue"], ["price<=10", "price>0"],
    {"colour": ["Red", "Black"]}, ["size="], ["size!=", "colour!=black"]])
def test_filters_match_the_reference_semantics_row_by_row(priced, where):
    clauses = parse_where(where)
    expected = {i for i, row in zip(priced.ids, priced.rows) if passes(clauses, row)}
    assert set(priced.matching(where)) == expected and expected
    hits = priced.similar("i1", k=len(priced), where=where)
    assert {h.id for h in hits} == expected - {"i1"}
    assert all(passes(clauses, h.metadata) for h in hits)


def test_a_range_never_matches_a_value_that_is_not_a_number(priced):
    assert "i7" not in priced.matching(["price>=0"])
    assert "i7" in priced.matching(["colour=" + priced.get("i7").metadata["colour"]])


def test_unknown_columns_and_values_are_errors_naming_close_matches(priced):
    with pytest.raises(ValueError, match=r"'color'.*did you mean colour"):
        priced.similar("i1", where={"color": "Red"})
    with pytest.raises(ValueError, match=r"colour='rde'.*did you mean Red"):
        priced.similar("i1", where=["colour=rde"])
    with pytest.raises(ValueError, match="holds no numbers"):
        priced.similar("i1", where=["colour<3"])


def test_normalised_ids_meet_across_zeros_case_and_spaces():
    assert normalise_id("0111565001") == normalise_id(" 111565001") == "111565001"
    assert normalise_id("SKU-7") == normalise_id("sku-7")
    assert normalise_id("000") == "0"


@pytest.fixture
def zero_padded_shop(tmp_path) -> tuple[Path, Path]:
    """Photos named 0000100.jpg.. and a CSV whose ids lost their leading zeros, as a
    spreadsheet does."""
    paths = write_products(tmp_path / "shop", 10, csv_name=None)
    named = [p.rename(p.with_name(f"{100 + i:07d}.jpg")) for i, p in enumerate(paths)]
    csv = write_csv(tmp_path / "articles.csv", [
        {"article_id": str(100 + i), "colour": ["red", "blue"][i % 2]} for i in range(10)])
    return named[0].parent, csv


def test_a_csv_that_matches_no_photo_names_both_sides_and_offers_the_fix(zero_padded_shop):
    folder, csv = zero_padded_shop
    with pytest.raises(CatalogError) as err:
        Catalog.build(folder, csv, "article_id", encoder=Encoder(OTHER_MODEL))
    text = str(err.value)
    assert "0 of 10 photos" in text and "'0000100'" in text and "'100'" in text
    assert "--id-normalise" in text
    cat = Catalog.build(folder, csv, "article_id", encoder=Encoder(OTHER_MODEL),
                        id_normalise=True)
    assert cat.get("0000101").metadata["colour"] == "blue" and not cat.warnings


def test_a_partial_match_is_a_warning_with_an_example(tmp_path):
    write_products(tmp_path / "shop", 10, csv_name=None)
    csv = write_csv(tmp_path / "m.csv", [{"id": f"p{i:03d}", "colour": "red"}
                                         for i in range(4)] + [{"id": "zz9", "colour": "x"}])
    res = run_fai("index", str(tmp_path / "shop"), "--metadata", str(csv), "--out",
                  str(tmp_path / "cat"), "--model", str(OTHER_MODEL))
    assert res.returncode == 0, res.stderr
    warning = [ln for ln in res.stderr.splitlines() if "warning" in ln]
    assert len(warning) == 1 and "4 of 10 photos" in warning[0] and "'zz9'" in warning[0]


def test_paths_are_absolute_and_the_model_is_remembered(tmp_path):
    write_products(tmp_path / "shop", 8)
    res = run_fai("index", "shop", "--metadata", "shop/metadata.csv", "--out", "cat",
                  "--model", str(OTHER_MODEL), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # No --model: the catalogue's own model (not the shipped default) is loaded.
    res = run_fai("query", str(tmp_path / "cat"), "--id", "p001", "-k", "3", "--json",
                  cwd=elsewhere)
    assert res.returncode == 0, res.stderr
    hits = json.loads(res.stdout)[0]["hits"]
    assert len(hits) == 3 and all(Path(h["path"]).is_absolute() and Path(h["path"]).is_file()
                                  for h in hits)
    photo = next((tmp_path / "shop").rglob("p002.jpg"))
    res = run_fai("query", "../cat", str(photo), "-k", "1", "--json", cwd=elsewhere)
    assert res.returncode == 0 and json.loads(res.stdout)[0]["hits"][0]["id"] == "p002"


def test_compact_and_update_from_the_command_line(tmp_path):
    write_products(tmp_path / "shop", 8)
    cat = tmp_path / "cat"
    assert run_fai("index", str(tmp_path / "shop"), "--out", str(cat), "--metadata",
                   str(tmp_path / "shop" / "metadata.csv"),
                   "--model", str(OTHER_MODEL)).returncode == 0
    assert run_fai("remove", str(cat), "p003").returncode == 0
    csv = write_csv(tmp_path / "prices.csv", [{"id": "p001", "price": "19.90"},
                                              {"id": "nope", "price": "1"}])
    res = run_fai("update", str(cat), "--metadata", str(csv))
    assert res.returncode == 1 and "1 item(s) updated" in res.stdout and "nope" in res.stderr
    info = json.loads(run_fai("info", str(cat), "--json").stdout)
    assert info["deltas"] == 2 and info["count"] == 7
    res = run_fai("compact", str(cat))
    assert res.returncode == 0 and "2 delta(s) folded" in res.stdout, res.stderr
    again = Catalog.open(cat)
    assert again.info()["deltas"] == 0 and len(again) == 7
    assert again.get("p001").metadata["price"] == "19.90"
    assert again.matching(["price<20"]) == ["p001"]


def test_a_reader_follows_a_compaction_without_reloading_the_catalogue(tmp_path, encoder,
                                                                        monkeypatch):
    rng = np.random.default_rng(3)
    vecs = rng.normal(size=(40, encoder.dim))
    writer = catalog_of(encoder, [f"i{i}" for i in range(30)], None,
                        [{"colour": "red"}] * 30, vecs[:30])
    writer.save(tmp_path / "cat")
    reader = Catalog.open(tmp_path / "cat", encoder)
    writer.add_embeddings(["a1", "a2"], vecs[30:32], metadata=[{"colour": "blue"}] * 2)
    reader.refresh()  # applied a1, a2 from the first generation's deltas
    writer.add_embeddings(["a3"], vecs[32:33], metadata=[{"colour": "blue"}])  # not yet seen
    writer.remove(["i0"])
    writer.compact()
    from fai_infer.store.replica import Replica

    monkeypatch.setattr(Replica, "open", lambda self: pytest.fail("reloaded"))
    assert reader.refresh()
    assert sorted(reader.matching({"colour": "blue"})) == ["a1", "a2", "a3"]
    assert "i0" not in reader and len(reader) == 32
    writer.add_embeddings(["a4"], vecs[33:34])  # a delta of the new generation
    assert reader.refresh() and "a4" in reader
    assert reader.similar_to_vector(vecs[33], k=1)[0].id == "a4"


def test_a_normalised_catalogue_finds_items_by_the_csvs_ids_later(zero_padded_shop, tmp_path):
    folder, csv = zero_padded_shop
    built = Catalog.build(folder, csv, "article_id", encoder=Encoder(OTHER_MODEL),
                          id_normalise=True)
    built.save(tmp_path / "cat")
    cat = Catalog.open(tmp_path / "cat")
    assert "101" in cat and cat.get("101").id == "0000101"
    assert cat.similar("101", k=3)[0].id != "0000101"  # the item itself is left out
    prices = write_csv(tmp_path / "prices.csv", [{"article_id": "102", "price": "9"}])
    res = run_fai("update", str(tmp_path / "cat"), "--metadata", str(prices),
                  "--id-column", "article_id")
    assert res.returncode == 0, res.stderr
    row = Catalog.open(tmp_path / "cat").get("0000102").metadata
    assert row["price"] == "9" and row["article_id"] == "102"  # the key is not rewritten
    assert run_fai("remove", str(tmp_path / "cat"), "103").returncode == 0
    res = run_fai("remove", str(tmp_path / "cat"), "999")
    assert res.returncode == 1 and "not in the catalogue: 999" in res.stderr


def test_european_csvs_semicolons_and_windows_1252(tmp_path):
    write_products(tmp_path / "shop", 6, csv_name=None)
    text = "Artikelnummer;Farbe;Preis\n" + "".join(
        f"p{i:03d};{'Weiß' if i % 2 else 'Grün'};{10 + i},99\n" for i in range(6))
    (tmp_path / "artikel.csv").write_bytes(text.encode("cp1252"))
    cat = Catalog.build(tmp_path / "shop", tmp_path / "artikel.csv", "Artikelnummer",
                        encoder=Encoder(OTHER_MODEL))
    assert cat.get("p001").metadata == {"Artikelnummer": "p001", "Farbe": "Weiß",
                                        "Preis": "11,99"}
    assert sorted(cat.matching({"Farbe": "grün"})) == ["p000", "p002", "p004"]


def test_odd_settings_and_huge_values_are_one_short_line(priced, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), FAI_LOCK_TIMEOUT="abc")
    write_products(tmp_path / "shop", 4)
    res = subprocess.run([sys.executable, "-m", "fai_infer", "index", str(tmp_path / "shop"),
                          "--out", str(tmp_path / "cat"), "--model", str(OTHER_MODEL)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "FAI_LOCK_TIMEOUT='abc'" in res.stderr and len(res.stderr.splitlines()) == 1
    assert not (tmp_path / "cat").exists()  # a failed first index leaves no empty husk
    with pytest.raises(ValueError) as err:
        priced.similar("i1", where={"colour": "x" * 100_000})
    assert len(str(err.value)) < 500


@pytest.mark.parametrize("text,says", [("", "the CSV is empty"),
                                       ("article_id,prod_name\n", "a header but no rows")])
def test_an_empty_or_header_only_csv_is_one_line_not_a_catalogue_without_metadata(
        tmp_path, text, says):
    """Found by an outside review: a header-only CSV indexed 20 photos with no metadata,
    exit 0, where a CSV whose ids match nothing is refused."""
    from fai_infer.catalog.sources import read_metadata
    from fai_infer.errors import CatalogError

    csv_path = tmp_path / "articles.csv"
    csv_path.write_text(text)
    with pytest.raises(CatalogError, match=says) as info:
        read_metadata(csv_path, "article_id")
    assert "\n" not in str(info.value) and str(csv_path) in str(info.value)
