"""The shop page's service without a browser: the title, readable labels, a varied catalogue
strip, cards in words, and the colour toggle's plumbing."""

from __future__ import annotations

import numpy as np
import pytest

from fai_infer import Encoder
from tests.helpers import OTHER_MODEL, catalog_of
from ui.service import ShopService
from ui.text import parse_labels, readable_column


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(OTHER_MODEL)


def csv_ordered_shop(encoder):
    """40 items in CSV order: 20 tights packs first, then 10 dresses, 6 shoes, 4 umbrellas."""
    kinds = ["Tights"] * 20 + ["Dress"] * 10 + ["Shoe"] * 6 + ["Umbrella"] * 4
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(kinds), encoder.dim)).astype(np.float32)
    ids = [f"a{i:02d}" for i in range(len(kinds))]
    rows = [{"prod_name": f"{k} {i}", "product_type_name": k,
             "perceived_colour_value_name": ["Dark", "Light"][i % 2]}
            for i, k in enumerate(kinds)]
    return catalog_of(encoder, ids, [""] * len(ids), rows, vectors)


def test_column_names_read_as_words():
    assert readable_column("perceived_colour_value_name") == "Perceived colour value"
    assert readable_column("articleType") == "Article type"
    assert readable_column("baseColour") == "Base colour"
    assert readable_column("price") == "Price"
    assert parse_labels("product_type_name=Type, colour_group_name = Colour") == {
        "product_type_name": "Type", "colour_group_name": "Colour"}
    with pytest.raises(ValueError, match="COLUMN=Label"):
        parse_labels("product_type_name")


def test_title_labels_and_a_varied_strip(encoder):
    cat = csv_ordered_shop(encoder)
    shop = ShopService(cat, "hm.catalog", labels={"product_type_name": "Type"})
    assert shop.title == "hm.catalog"  # no shop name: the catalogue's label
    cat.set_shop_name("Northwind  Fashion")
    shop = ShopService(cat, "hm.catalog", labels={"product_type_name": "Type"})
    assert shop.title == "Northwind Fashion"
    assert ShopService(cat, "x", title="Given").title == "Given"
    assert shop.labels["product_type_name"] == "Type"
    assert shop.labels["perceived_colour_value_name"] == "Perceived colour value"
    with pytest.raises(ValueError, match="no column 'typo'"):
        ShopService(cat, "x", labels={"typo": "T"})
    assert shop.kind_column == "product_type_name"
    _, ids = shop.browse(*([[]] * len(shop.filters)))
    kinds = [cat.get(i).metadata["product_type_name"] for i in ids]
    assert kinds[:4] == ["Tights", "Dress", "Shoe", "Umbrella"] and len(ids) == 40
    assert kinds[4:8] == ["Tights", "Dress", "Shoe", "Umbrella"]  # two of each before more


def test_cards_carry_words_not_timings(encoder):
    cat = csv_ordered_shop(encoder)
    shop = ShopService(cat, "shop")
    cards, status = shop.similar_to_item("a03", 4)
    assert "ms" not in status and "Tights 3" in status
    assert all(c["match"] in ("very close", "similar", "loosely similar", "a different kind",
                              "could be", "no close match in this shop") for c in cards)
    assert all(0.0 <= c["confidence"] <= 1.0 for c in cards)
    items, hits, line = shop.basket_view(["a03", "a25"], 4)
    assert [c["match"] for c in items] == [None, None] and "ms" not in line
    assert not shop.has_colour
    with pytest.raises(ValueError, match="no colour part"):
        shop.similar_to_item("a03", 4, colour=0.0)


def test_the_colour_toggle_weighs_colour_only_for_models_that_have_a_colour_part():
    from ui.app import LOOK_COLOUR, LOOKS, colour_for

    assert colour_for(LOOKS[0]) == LOOK_COLOUR and colour_for(LOOKS[1]) == 0.0
    assert colour_for(LOOKS[0], has_colour=False) is None  # no toggle, the model's own search


def test_card_names_drop_buying_office_text():
    from ui.text import shopper_name

    assert shopper_name("Printed CF Hood 24.99 B2") == "Printed CF Hood"
    assert shopper_name("JENKINS DRESS 19.99:-") == "Jenkins Dress"
    assert shopper_name("Pluto RW slacks (1)") == "Pluto RW slacks"
    assert shopper_name("KELLY SHIRT S.1") == "Kelly Shirt"
    assert shopper_name("20 den 1p Stockings") == "20 den 1p Stockings"  # words, kept
    assert shopper_name("Levi's 501") == "Levi's 501" and shopper_name("Tights 3") == "Tights 3"
    assert shopper_name("B2") == "B2"  # never emptied


def test_cards_name_items_cleanly_and_say_kind_and_colour(encoder):
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(6, encoder.dim)).astype(np.float32)
    rows = [{"prod_name": f"Printed Hood {19 + i}.99 B{i}", "product_code": str(108775 + i),
             "product_type_name": ["Hoodie", "Sweater"][i % 2],
             "colour_group_name": ["Black", "Grey", "Red"][i % 3]} for i in range(6)]
    cat = catalog_of(encoder, [f"0{108775015 + i}" for i in range(6)], [""] * 6, rows, vectors)
    shop = ShopService(cat, "shop", filters=["product_type_name", "colour_group_name"])
    card = shop.card(cat.get("0108775016"), score=False)
    assert card["name"] == "Printed Hood" and card["details"] == "Sweater · Grey"
    assert "108775" not in card["name"] + card["details"]
    bare = ShopService(catalog_of(encoder, ["0108775015", "0108775016"], ["", ""],
                                  [{"kind": "Hat"}, {"kind": "Belt"}], vectors[:2]), "shop")
    assert bare.card(bare.cat.get("0108775015"), score=False)["name"] == "Hat"  # not the id
