"""Columns a shop chooses: filters and captions, with defaults that skip ids and codes."""

import subprocess
import sys

import pytest

from fai_infer import Catalog
from fai_infer.catalog.display import MAX_FILTERS, default_display
from tests.helpers import ROOT, hm_rows, write_csv, write_products

def test_defaults_skip_ids_and_codes_and_caption_with_the_name():
    filters, caption = default_display(hm_rows(), "article_id")
    assert caption == ["prod_name"]
    assert filters == ["product_type_name", "graphical_appearance_name", "colour_group_name",
                       "index_name", "section_name", "garment_group_name"]
    assert len(filters) <= MAX_FILTERS
    myntra = [{"id": str(i), "split": "train", "gender": "Men", "articleType": t,
               "year": "2012", "productDisplayName": f"Shirt {i}"} for i, t in
              enumerate(["Shirts", "Watches"] * 5)]
    assert default_display(myntra) == (["articleType"], ["productDisplayName"])


def test_chosen_columns_are_stored_with_the_catalogue_and_printed(tmp_path):
    write_products(tmp_path / "shop", 8, csv_name=None)
    rows = hm_rows(8)
    for i, r in enumerate(rows):
        r["article_id"] = f"p{i:03d}"
    csv = write_csv(tmp_path / "articles.csv", rows)
    cat = Catalog.build(tmp_path / "shop", csv, "article_id",
                        filters=["index_name", "product_type_name"],
                        caption=["prod_name", "colour_group_name"])
    cat.save(tmp_path / "cat")
    again = Catalog.open(tmp_path / "cat")
    assert again.display() == {"filters": ["index_name", "product_type_name"],
                               "caption": ["prod_name", "colour_group_name"]}
    assert again.caption(again.get("p001")) == "Strap top 1 · Colour 1"
    with pytest.raises(ValueError, match="no such metadata column"):
        again.set_display(filters=["colour"])
    with pytest.raises(ValueError, match="at most 6"):
        again.set_display(filters=list(rows[0])[:7])
    res = subprocess.run([sys.executable, "-m", "fai_infer", "query", str(tmp_path / "cat"),
                          "--id", "p001", "-k", "2"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0 and "Strap top" in res.stdout and "Colour" in res.stdout
    assert "108775" not in res.stdout  # no code columns in the human output
