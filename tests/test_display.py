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
    # hm_rows' label columns are cycles of i (i % 20, % 11, % 9, % 7, % 4, % 3, % 2), so the
    # finer ones tell the coarser exactly (i % 9 gives i % 3): near-duplicates when the
    # coarser tells some of the finer back (i % 3 of i % 9) or their names share a word;
    # department (i % 20) and garment group (i % 4) are neither, so both stay.
    assert filters == ["product_type_name", "colour_group_name", "section_name",
                       "garment_group_name", "department_name"]
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


def test_near_duplicate_filter_columns_are_left_out_keeping_the_finer():
    """A colour group and a "perceived colour master" that nearly always agree, a product type
    and the product group it implies: one filter each, the one with more values; columns that
    only partly agree (a colour's lightness) stay."""
    from fai_infer.catalog.display import default_display

    rng = __import__("random").Random(3)
    colours = {"Black": "Black", "Dark Blue": "Blue", "Light Blue": "Blue", "Red": "Red",
               "Dark Red": "Red", "White": "White", "Off White": "White", "Grey": "Grey"}
    types = {"Hoodie": "Upper body", "T-shirt": "Upper body", "Sweater": "Upper body",
             "Trousers": "Lower body", "Shorts": "Lower body", "Dress": "Full body"}
    rows = []
    for i in range(400):
        colour, kind = rng.choice(sorted(colours)), rng.choice(sorted(types))
        master = colours[colour] if rng.random() > 0.03 else rng.choice(sorted(colours))
        rows.append({"id": str(i), "product_type_name": kind, "product_group_name": types[kind],
                     "colour_group_name": colour, "perceived_colour_master_name": master,
                     "perceived_colour_value_name": rng.choice(["Dark", "Light", "Medium"]),
                     "prod_name": f"Item {i}"})
    filters, caption = default_display(rows)
    assert filters == ["product_type_name", "colour_group_name", "perceived_colour_value_name"]
    assert caption == ["prod_name"]
    few = rows[:12]  # too few rows to tell: a chance agreement is not a duplicate
    assert "perceived_colour_master_name" in default_display(few)[0]


def test_a_catalogue_leaves_out_near_duplicate_filters_too(tmp_path):
    write_products(tmp_path / "shop", 60, size=16, csv_name=None)
    rows = [{"id": f"p{i:03d}", "kind": ["Hat", "Shoe", "Bag", "Belt", "Scarf"][i % 5],
             "kind_group": ["Accessories", "Shoes", "Accessories", "Accessories",
                            "Accessories"][i % 5], "tone": ["Dark", "Light"][i % 2]}
            for i in range(60)]
    csv = write_csv(tmp_path / "m.csv", rows)
    cat = Catalog.build(tmp_path / "shop", csv, "id")
    assert cat.display()["filters"] == ["kind", "tone"]


def test_a_finer_column_alone_does_not_make_coarse_ones_duplicates():
    """Found by CI after the near-duplicate rule: a price column (a value per few rows) tells
    the gender of every row, so gender and colour were left out and price was the only filter.
    A near-duplicate must tell the other back too."""
    rows = [{"gender": ["Women", "Men", "Unisex"][i % 3],
             "colour": ["Red", "blue", "GREEN"][i % 5 % 3],
             "price": "n/a" if i % 17 == 0 else f"{(i * 7) % 120}.5"} for i in range(3000)]
    assert default_display(rows)[0] == ["gender", "colour", "price"]
