"""Confidence per hit (fai_infer/catalog/confidence.py through the contract) and the query-time colour
weight (fai_infer/model/parts.py) on a real catalogue: a kind the shop lacks says so, a near-twin is
"very close", the scale follows changes, and colour 0 / 1 rank as the algebra says."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from fai_infer import Catalog, Encoder
from fai_infer.catalog.confidence import NEIGHBOUR_RANK, NO_MATCH
from fai_infer.model.parts import ColourWeightError
from tests.helpers import (OTHER_MODEL, catalog_of, equal_luma, export_garment_colour, product)

KINDS, PER_KIND = 6, 20


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(OTHER_MODEL)


@pytest.fixture(scope="module")
def kinds(encoder):
    """Items of six kinds (each a direction with spread), and one kind the shop lacks."""
    rng = np.random.default_rng(3)
    centres = unit(rng.normal(size=(KINDS + 1, encoder.dim)))
    vectors = unit(np.repeat(centres[:KINDS], PER_KIND, axis=0)
                   + 0.06 * rng.normal(size=(KINDS * PER_KIND, encoder.dim)))
    return centres, vectors


def shop(encoder, vectors) -> Catalog:
    ids = [f"i{i:03d}" for i in range(len(vectors))]
    rows = [{"kind": f"k{i // PER_KIND}"} for i in range(len(vectors))]
    return catalog_of(encoder, ids, [""] * len(ids), rows, vectors)


def test_a_kind_the_shop_lacks_is_no_close_match_and_a_near_twin_is_very_close(encoder, kinds):
    centres, vectors = kinds
    cat = shop(encoder, vectors)
    stranger = cat.similar_to_vector(centres[KINDS], k=3)
    assert stranger[0].confidence < 0.03 and stranger[0].match == NO_MATCH
    rng = np.random.default_rng(1)
    twin = unit(vectors[17] + 0.005 * rng.normal(size=encoder.dim))
    best = cat.similar_to_vector(twin, k=3)
    assert best[0].id == "i017" and best[0].match == "very close" and best[0].confidence > 0.9
    assert all(0.0 <= h.confidence <= 1.0 for h in best + stranger)
    by_id = cat.similar("i017", k=PER_KIND)  # its own kind: ranked, confidences never rise
    conf = [h.confidence for h in by_id]
    assert conf == sorted(conf, reverse=True) and by_id[0].match in ("very close", "similar")
    assert by_id[0].to_dict()["match"] == by_id[0].match


def test_the_scale_is_refitted_after_add_and_remove(encoder, kinds, tmp_path):
    centres, vectors = kinds
    cat = shop(encoder, vectors)
    cat.save(tmp_path / "shop")
    cat = Catalog.open(tmp_path / "shop", encoder, live=True)
    query = unit(centres[0] + 0.25 * centres[KINDS])
    before = cat.similar_to_vector(query, k=1)[0].confidence
    fitted = cat.match_scale()
    assert cat.match_scale() is fitted  # cached while nothing changes
    # Five twins beside every item: each item's 5th-nearest other (what the scale is made of)
    # now scores ~1, so the same hit is worth less on the new scale.
    rng = np.random.default_rng(2)
    copies = np.repeat(vectors, NEIGHBOUR_RANK, axis=0)
    twins = unit(copies + 0.002 * rng.normal(size=copies.shape))
    other = Catalog.open(tmp_path / "shop", encoder)  # another process writes
    other.add_embeddings([f"t{i:03d}" for i in range(len(twins))], twins)
    after = cat.similar_to_vector(query, k=1)[0].confidence
    assert cat.match_scale() is not fitted and after < before
    assert cat.match_scale().to_dict()["nearest_neighbour_score_quantiles"]["50%"] > 0.99
    other.remove([f"t{i:03d}" for i in range(len(twins))])
    assert cat.similar_to_vector(query, k=1)[0].confidence == pytest.approx(before)


def test_a_tiny_catalogue_has_no_scale_and_its_hits_say_so(encoder, kinds):
    """No figure without a scale, but words (issue 33: a 1-item shop's hits showed nothing)."""
    from fai_infer.catalog.confidence import TOO_FEW

    cat = shop(encoder, kinds[1][:5])
    hit = cat.similar("i001", k=1)[0]
    assert cat.match_scale() is None and hit.confidence is None and hit.match == TOO_FEW


def test_a_colour_weight_needs_a_model_with_a_colour_part(encoder, kinds):
    cat = shop(encoder, kinds[1])
    with pytest.raises(ColourWeightError, match="no colour part"):
        cat.similar("i001", k=1, colour=0.0)
    with pytest.raises(ColourWeightError, match="from 0 to 1"):
        cat.similar_to_basket(["i001"], k=1, colour=1.5)
    assert cat.similar("i001", k=1, colour=None)[0].id  # the default needs no colour part


# -- the garment + colour model -------------------------------------------------------------
@pytest.fixture(scope="module")
def colour_shop(tmp_path_factory):
    """Red and teal shirts (one luma: one garment part) and red and teal trousers."""
    enc = Encoder(export_garment_colour(tmp_path_factory.mktemp("gc"), colour_weight=0.3))
    red = (200, 40, 40)
    teal = equal_luma(red)
    names = {"red-shirt": product(red), "teal-shirt": product(teal),
             "red-trousers": product(red, shape="trousers"),
             "teal-trousers": product(teal, shape="trousers")}
    cat = Catalog(enc)
    cat.add_embeddings(list(names), enc.embed_squares(np.stack(list(names.values()))))
    return cat, product(red)


def test_colour_zero_finds_the_design_in_any_colour_and_one_finds_the_colour(colour_shop):
    cat, red_shirt = colour_shop
    parts = cat.parts()
    assert parts.has_colour and parts.default_colour == pytest.approx(0.3)
    query = cat.encoder.embed([red_shirt])[0]
    (g0, g1), (h0, h1) = parts.garment, parts.colour
    c0 = parts.default_colour
    for w in (0.0, 0.3, 1.0):
        hits = cat.similar_to_vector(query, k=4, exclude=["red-shirt"], colour=w)
        # The algebra: (1 - w) g.g' + w h.h' over the parts' unit vectors.
        expected = {}
        for h in hits:
            v = cat.vector(h.id)
            g = (query[g0:g1] @ v[g0:g1]) / (1 - c0)
            c = (query[h0:h1] @ v[h0:h1]) / c0
            expected[h.id] = (1 - w) * g + w * c
        assert [h.score for h in hits] == pytest.approx([expected[h.id] for h in hits], abs=1e-4)
        assert [h.id for h in hits] == sorted(expected, key=expected.get, reverse=True)
    any_colour = cat.similar(red_shirt, k=2, colour=0.0)
    colour_only = cat.similar(red_shirt, k=2, colour=1.0)
    assert {h.id for h in any_colour} == {"red-shirt", "teal-shirt"}
    assert colour_only[1].id == "red-trousers"  # colour only: the red trousers before teal
    basket = cat.similar_to_basket(["red-shirt"], k=1, colour=0.0, diversity=0.0,
                                   same_design=True)
    assert basket[0].id == "teal-shirt"
    # Unless asked, the basket's own design in another colour is never suggested.
    assert "teal-shirt" not in {h.id for h in cat.similar_to_basket(["red-shirt"], k=3)}


def test_cli_colour_and_confidence(colour_shop, tmp_path, capsys, encoder, kinds):
    from fai_infer.cli.main import main

    cat, red_shirt = colour_shop
    cat.save(tmp_path / "gc.catalog")
    model = ["--model", str(cat.encoder.path)]
    assert main(["query", str(tmp_path / "gc.catalog"), "--id", "red-shirt", "-k", "1",
                 "--colour", "0", "--json", *model]) == 0
    hits = json.loads(capsys.readouterr().out)[0]["hits"]
    assert hits[0]["id"] == "teal-shirt" and set(hits[0]) >= {"confidence", "match"}
    assert main(["basket", str(tmp_path / "gc.catalog"), "red-shirt", "-k", "1",
                 "--colour", "1", "--same-design", "--json", *model]) == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] == "red-trousers"
    assert main(["query", str(tmp_path / "gc.catalog"), "--id", "red-shirt", "--colour", "2",
                 *model]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "colour weight must be from 0 to 1" in err

    plain = shop(encoder, kinds[1])
    plain.save(tmp_path / "plain.catalog")
    assert main(["query", str(tmp_path / "plain.catalog"), "--id", "i001", "--colour", "0.5",
                 "--model", str(OTHER_MODEL)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no colour part" in err
    assert main(["info", str(tmp_path / "plain.catalog"), "--model", str(OTHER_MODEL)]) == 0
    assert "match scale: nearest-neighbour scores of 120 sampled items" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "plain.catalog"), "--json",
                 "--model", str(OTHER_MODEL)]) == 0
    scale = json.loads(capsys.readouterr().out)["match_scale"]
    assert scale["sampled"] == 120 and set(scale["nearest_neighbour_score_quantiles"]) == {
        "5%", "25%", "50%", "75%", "95%"}


def test_another_colour_weight_is_fitted_in_the_background_never_by_a_query(colour_shop):
    enc = colour_shop[0].encoder
    rng = np.random.default_rng(4)
    cat = Catalog(enc)
    cat.add_embeddings([f"c{i:02d}" for i in range(40)], unit(rng.normal(size=(40, enc.dim))))
    default = cat.match_scale()  # stored by the add: the model's default weighting
    started, release = threading.Event(), threading.Event()
    real_fit = cat._fit_scale

    def held_back(colour):
        started.set()
        release.wait(120)
        return real_fit(colour)

    cat._fit_scale = held_back
    hits = cat.similar("c01", k=3, colour=0.0)  # answered while the fit is held back
    assert started.wait(120) and not release.is_set()
    assert hits[0].confidence is not None and cat.match_scale(0.0) is default  # provisional
    release.set()
    assert cat.wait_for_scales(timeout=120)
    fitted = cat.match_scale(0.0)
    assert fitted is not default
    assert np.allclose(fitted.neighbour_scores, real_fit(0.0).neighbour_scores)


def test_match_words_never_call_another_kind_similar():
    """Issue 34: a skirt photo matched five shorts, all "similar". Hits of a kind other than
    the query's (its own label; for a photo, the kind its top hits agree on) say "a different
    kind"; when a photo's top hits do not agree on a kind, nothing is "similar", only "could
    be". Weak words and the confidences stay."""
    from fai_infer.catalog.confidence import COULD_BE, DIFFERENT_KIND, kind_words

    encoder = Encoder(OTHER_MODEL)
    rng = np.random.default_rng(8)
    skirts, shorts = rng.normal(size=(2, encoder.dim))
    near = lambda c, n, s: c + s * rng.normal(size=(n, encoder.dim))  # noqa: E731
    # Skirts, and shorts that look nearly alike (the model's confusion); a few bags far away.
    vectors = np.vstack([near(skirts, 12, 0.5), near(skirts + 0.3 * shorts, 8, 0.5),
                         near(rng.normal(size=encoder.dim), 10, 0.5)]).astype(np.float32)
    kinds = ["Skirt"] * 12 + ["Shorts"] * 8 + ["Bag"] * 10
    ids = [f"i{i:02d}" for i in range(len(kinds))]
    cat = catalog_of(encoder, ids, [""] * len(ids),
                     [{"product_type_name": k} for k in kinds], vectors)
    hits = cat.similar("i00", k=15)
    assert {h.match for h in hits if h.metadata["product_type_name"] == "Shorts"} <= {
        DIFFERENT_KIND, "loosely similar", "no close match in this shop"}
    assert any(h.match == DIFFERENT_KIND for h in hits)
    assert all(h.match != DIFFERENT_KIND for h in hits if h.metadata["product_type_name"]
               == "Skirt")
    raw = [h.confidence for h in hits]
    # A photo: its kind is what the top hits agree on (here the skirts, as for i00 itself).
    photo = cat.similar_to_vector(skirts, k=10)
    top = [h.metadata["product_type_name"] for h in photo]
    assert top.count("Skirt") >= 7 and COULD_BE not in {h.match for h in photo}
    assert all(h.match == DIFFERENT_KIND for h in photo
               if h.metadata["product_type_name"] != "Skirt" and h.confidence >= 0.15)
    # A photo between kinds: the top ten disagree, so nothing is "similar".
    between = cat.similar_to_vector(skirts + 0.15 * shorts, k=10)
    top = [h.metadata["product_type_name"] for h in between]
    assert max(top.count(k) for k in set(top)) < 7, top
    assert not {h.match for h in between} & {"very close", "similar"}
    assert COULD_BE in {h.match for h in between}
    # Without a kind column the words are the scale's alone.
    plain = catalog_of(encoder, ids, [""] * len(ids), [{"x": "1"} for _ in ids], vectors)
    assert DIFFERENT_KIND not in {h.match for h in plain.similar("i00", k=15)}
    assert raw == [h.confidence for h in cat.similar("i00", k=15)]  # the bar is unchanged
    kind_words(hits, None)  # no kind column: nothing to say


def test_a_hits_words_do_not_change_with_how_many_are_asked_for():
    """The kind a photo shows is voted by its top hits; asking for fewer hits (k=1 on a phone)
    must not change that vote, so a hit reads the same words at every k (an outside review
    saw one trouser go "similar" -> "could be" -> "similar" as k went 1 -> 2 -> 5)."""
    from fai_infer.catalog.confidence import DIFFERENT_KIND

    enc = Encoder(OTHER_MODEL)
    rng = np.random.default_rng(5)
    q = rng.normal(size=enc.dim)
    q /= np.linalg.norm(q)
    near = q + 0.35 * rng.normal(size=(9, enc.dim)) / np.sqrt(enc.dim)
    far = rng.normal(size=(50, enc.dim))
    vectors = np.vstack([q, near, far]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    kinds = ["Shoes"] + ["Tshirts"] * 9 + [("Jeans", "Bags")[i % 2] for i in range(50)]
    ids = [f"i{i:02d}" for i in range(len(kinds))]
    rows = [{"articleType": t} for t in kinds]
    cat = catalog_of(enc, ids, [f"/nowhere/{i}.jpg" for i in ids], rows, vectors)
    answers = {k: cat.similar_to_vector(q, k=k) for k in (1, 2, 3, 5, 10)}
    assert answers[1][0].id == "i00" and answers[10][0].match == DIFFERENT_KIND  # 9 of 10 agree
    for k, hits in answers.items():
        assert [(h.id, h.match) for h in hits] == [(h.id, h.match) for h in answers[10][:k]], k
