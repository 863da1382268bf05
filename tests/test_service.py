"""ui/service.py: the shop's answers without any web framework, over any catalogue back end."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from fai_infer import Encoder, NotInCatalogue
from tests.helpers import OTHER_MODEL, ROOT, catalog_of


@pytest.fixture(scope="module")
def service():
    from ui.service import ShopService

    enc = Encoder(OTHER_MODEL)
    rng = np.random.default_rng(1)
    ids = [f"i{i}" for i in range(20)]
    rows = [{"name": f"Shirt {i}", "colour": ["Red", "Blue"][i % 2], "price": str(9 + i)}
            for i in range(20)]
    cat = catalog_of(enc, ids, [f"/p/{i}.jpg" for i in ids], rows,
                     rng.normal(size=(20, enc.dim)))
    return ShopService(cat, "test shop", 5, filters=["colour"], caption=["name", "colour"])


def test_the_service_and_the_http_api_load_no_gradio():
    code = ("import sys, ui.service, ui.http_api\n"
            "sys.exit(1 if 'gradio' in sys.modules else 0)")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_json_answers_link_photos_by_id_and_bound_k(service):
    hits = service.answer_id("i3", 10_000, {"colour": "Blue"})
    assert 0 < len(hits) <= 50 and all(h["metadata"]["colour"] == "Blue" for h in hits)
    assert all(h["photo"].endswith(h["id"]) and "/p/" not in h["photo"] for h in hits)
    basket = service.answer_basket(["i1", "i2"], 4, ["price<20"])
    assert len(basket) == 4 and all(h["source"] in ("i1", "i2") for h in basket)


def test_mistakes_are_the_errors_each_front_end_translates(service):
    with pytest.raises(NotInCatalogue):
        service.answer_id("nope", 3, {})
    with pytest.raises(ValueError, match="non-empty list"):
        service.answer_basket("i1", 3, {})
    with pytest.raises(ValueError, match="where must be"):
        service.answer_id("i1", 3, "colour=Red")


def test_cards_carry_name_details_and_the_basket_item(service):
    items, cards, status = service.basket_view(["i1", "gone"], 3)
    assert [c["id"] for c in items] == ["i1"] and len(cards) == 3
    assert items[0]["name"] == "Shirt 1" and items[0]["details"] == "Blue"
    assert all(c["for"] == "Shirt 1" for c in cards) and "basket of 1" in status


def test_filter_values_that_are_numbers_filter_and_other_json_is_refused(service):
    """Found by the outside review (issue 26): a JSON number was dropped without a word and the
    answer came back unfiltered; null, true and objects were dropped the same way."""
    assert [h["id"] for h in service.answer_id("i5", 5, {"price": 12})] == ["i3"]
    assert sorted(h["metadata"]["price"] for h in
                  service.answer_id("i1", 5, {"price": [12, 14.0]})) == ["12", "14"]
    for bad in (None, True, {"x": 1}, [None]):
        with pytest.raises(ValueError, match="is not a value"):
            service.answer_id("i3", 5, {"price": bad})


def test_a_value_named_twice_or_in_another_case_gives_each_item_once(service):
    hits = service.answer_id("i3", 10, {"colour": ["Red", "red", "Red"]})
    ids = [h["id"] for h in hits]
    assert len(ids) == len(set(ids)) == 10 and all(h["metadata"]["colour"] == "Red"
                                                   for h in hits)
