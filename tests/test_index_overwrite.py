"""`fai index --out X` onto an existing catalogue: refused unless --force, naming what is lost
(issue 34: a re-index without --metadata silently wiped the shop's metadata)."""

from __future__ import annotations

from fai_infer.catalog.local import Catalog
from fai_infer.cli.main import main
from tests.helpers import OTHER_MODEL, write_products


def _index(folder, out, *extra):
    return main(["index", str(folder / "images"), "--out", str(out), "--model", str(OTHER_MODEL),
                 *extra])


def test_reindexing_onto_a_catalogue_is_refused_unless_forced(tmp_path, capsys):
    write_products(tmp_path / "shop", 6)
    out = tmp_path / "shop.catalog"
    assert _index(tmp_path / "shop", out, "--metadata", str(tmp_path / "shop" / "metadata.csv")) == 0
    capsys.readouterr()

    assert _index(tmp_path / "shop", out) == 1  # no --metadata: the columns would go
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--force" in err[0] and "6 items" in err[0]
    assert all(c in err[0] for c in ("colour", "gender", "split")), err[0]
    kept = Catalog.open(out)
    assert len(kept) == 6 and kept.get("p001").metadata["colour"]  # nothing was touched

    # With --metadata the metadata is replaced, not lost: the refusal names only the items.
    assert _index(tmp_path / "shop", out, "--metadata",
                  str(tmp_path / "shop" / "metadata.csv")) == 1
    err = capsys.readouterr().err
    assert "6 items" in err and "metadata columns" not in err

    assert _index(tmp_path / "shop", out, "--force") == 0
    assert not Catalog.open(out).info()["columns"]  # asked for: the metadata is gone


def test_a_new_or_empty_out_needs_no_force(tmp_path):
    write_products(tmp_path / "shop", 4, csv_name=None)
    (tmp_path / "empty").mkdir()
    assert _index(tmp_path / "shop", tmp_path / "empty") == 0
    assert _index(tmp_path / "shop", tmp_path / "new") == 0
