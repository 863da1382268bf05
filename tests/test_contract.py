"""One contract, every back end: the same tests over an in-memory ``Catalog``, a stored one
reopened from disk, a Milvus Lite collection (only where the scale extra is installed) and a
collection on a real Milvus server (``milvus_server``, started once for the session; slow).

Built from vectors made elsewhere (``add_embeddings``) with the small 64 px model, so the suite
needs no photos to encode except in the ``add`` test."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fai_infer import BaseCatalog, Catalog, CatalogError, Encoder, NotInCatalogue
from fai_infer.index.filters import parse_where, passes
from fai_infer.index.search import exact_top_k
from tests.helpers import OTHER_MODEL, write_products

N = 120
BACKENDS = ["memory", "stored", "milvus", pytest.param("milvus-server", marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(OTHER_MODEL)


def reference(encoder: Encoder) -> Catalog:
    """The items every back end is loaded with: random unit vectors, a few metadata columns."""
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(N, encoder.dim)).astype(np.float32)
    ids = [f"i{i:03d}" for i in range(N)]
    rows = [{"name": f"Item {i}", "colour": ["Red", "Blue", "Green"][i % 3],
             "gender": ["Men", "Women"][i % 2], "price": str(10 + i)} for i in range(N)]
    cat = Catalog(encoder)
    cat.add_embeddings(ids, vectors, [f"/photos/{i}.jpg" for i in ids], rows)
    return cat


@pytest.fixture(params=BACKENDS)
def cat(request, encoder, tmp_path) -> BaseCatalog:
    ref = reference(encoder)
    if request.param == "memory":
        yield ref
    elif request.param == "stored":
        ref.save(tmp_path / "cat")
        yield Catalog.open(tmp_path / "cat", encoder)
    elif request.param == "milvus-server":
        from fai_infer.scale.milvus_catalog import MilvusCatalog, push

        server = request.getfixturevalue("milvus_server")
        name = f"shop_{request.node.name.split('[')[0][-20:]}_{id(ref) % 10**6}"
        physical = push(ref, server.uri, name)["physical"]
        milvus = MilvusCatalog(server.uri, name, encoder)
        yield milvus
        milvus.client.drop_alias(name)  # the server outlives the test: leave it empty
        milvus.client.drop_collection(physical)
        milvus.close()
    else:
        pytest.importorskip("pymilvus", reason="the 'scale' extra is not installed")
        pytest.importorskip("milvus_lite", reason="the 'scale' extra is not installed")
        from fai_infer.scale.milvus_catalog import MilvusCatalog, push

        uri = str(tmp_path / "shop.db")
        push(ref, uri, "shop")
        milvus = MilvusCatalog(uri, "shop", encoder)
        yield milvus
        milvus.close()


def brute_force(cat: BaseCatalog, query: np.ndarray, k: int, where=None,
                leave_out: str | None = None) -> list[str]:
    ids: list[str] = []
    rows: list[dict] = []
    batches = []
    for batch_ids, vectors, _, batch_rows in cat.iter_batches(1000):
        ids += batch_ids
        rows += batch_rows
        batches.append(vectors)
    vectors = np.concatenate(batches)
    clauses = parse_where(where)
    allowed = np.array([passes(clauses, r) and i != leave_out for i, r in zip(ids, rows)])
    return [ids[r] for r in exact_top_k(vectors, query, k, np.flatnonzero(allowed))[0]]


def test_every_back_end_is_a_base_catalog(cat):
    assert isinstance(cat, BaseCatalog)
    assert len(cat) == N and "i001" in cat and "nope" not in cat


def test_similar_by_id_leaves_the_item_out_and_ranks_exactly(cat):
    hits = cat.similar("i005", k=5)
    assert "i005" not in {h.id for h in hits}
    assert [h.id for h in hits] == brute_force(cat, cat.vector("i005"), 5, leave_out="i005")
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))


def test_similar_to_vector_normalises_and_filters(cat):
    query = cat.vector("i010") * 4.0
    where = ["colour!=Red", "price<100"]
    hits = cat.similar_to_vector(query, k=6, where=where, exclude=["i010"])
    assert [h.id for h in hits] == brute_force(cat, query / 4.0, 6, where, leave_out="i010")
    assert all(h.metadata["colour"] != "Red" and float(h.metadata["price"]) < 100 for h in hits)
    with pytest.raises(ValueError, match="zero or not finite"):
        cat.similar_to_vector(np.zeros(cat.encoder.dim), k=3)
    with pytest.raises(ValueError, match="values"):
        cat.similar_to_vector(np.ones(3), k=3)


def test_unknown_ids_and_columns_are_refused_by_name(cat):
    with pytest.raises(NotInCatalogue):
        cat.similar("no-such-item", k=3)
    with pytest.raises(NotInCatalogue):
        cat.get("no-such-item")
    with pytest.raises(NotInCatalogue):
        cat.vector("no-such-item")
    with pytest.raises(ValueError, match="gendr"):
        cat.similar("i001", k=3, where={"gendr": "Men"})


@pytest.mark.parametrize("mode", ["cover", "centroid"])
def test_basket_leaves_its_items_out_and_names_a_source(cat, mode):
    basket = ["i001", "i050", "i099"]
    hits = cat.similar_to_basket(basket, k=9, mode=mode, where={"gender": "Women"})
    assert len(hits) == 9 and not {h.id for h in hits} & set(basket)
    assert all(h.source in basket and h.metadata["gender"] == "Women" for h in hits)
    if mode == "cover":
        assert {h.source for h in hits} == set(basket)  # something for every item
    with pytest.raises(ValueError, match="empty"):
        cat.similar_to_basket([], k=3)
    with pytest.raises(ValueError, match="mode"):
        cat.similar_to_basket(basket, k=3, mode="median")


def test_local_and_other_back_ends_answer_the_same(cat, encoder):
    ref = reference(encoder)
    for item in ("i003", "i077"):
        assert [h.id for h in cat.similar(item, k=8)] == [h.id for h in ref.similar(item, k=8)]
    basket = ["i002", "i040"]
    got = [(h.id, h.source) for h in cat.similar_to_basket(basket, k=6)]
    assert got == [(h.id, h.source) for h in ref.similar_to_basket(basket, k=6)]


def test_display_and_captions(cat):
    cat.set_display(filters=["colour", "gender"], caption=["name", "colour"])
    assert cat.display() == {"filters": ["colour", "gender"], "caption": ["name", "colour"]}
    hit = cat.get("i004")
    assert cat.caption(hit) == "Item 4 · Blue" and cat.caption(hit, []) == "i004"
    with pytest.raises(ValueError, match="no such metadata column"):
        cat.set_display(filters=["colr"])
    assert set(cat.columns()) >= {"name", "colour", "gender", "price"}
    assert cat.matching({"colour": "Green"}, limit=3) and cat.matching({"colour": "Red"},
                                                                      limit=0) == []


def test_writes_are_seen_by_the_next_query(cat):
    v = cat.vector("i020")
    cat.add_embeddings(["fresh"], v[None] * 2, ["/photos/fresh.jpg"], [{"colour": "Red"}])
    assert cat.similar("i020", k=1)[0].id == "fresh"
    cat.add_embeddings(["fresh"], v[None], None, [{}])  # a new vector keeps the metadata
    assert cat.get("fresh").metadata == {"colour": "Red"}
    assert cat.update_metadata(["fresh", "ghost"], [{"price": "5"}, {"price": "6"}]) == ["ghost"]
    assert cat.get("fresh").metadata == {"colour": "Red", "price": "5"}
    assert cat.remove(["fresh", "ghost"]) == ["ghost"]
    assert "fresh" not in cat and len(cat) == N
    cat.refresh()  # nothing new from elsewhere: answers stay


def test_add_encodes_photos_by_file_stem(cat, tmp_path):
    photos = write_products(tmp_path / "shop", 3, size=64, csv_name=None)
    assert cat.add(photos) == []
    assert {"p000", "p001", "p002"} <= set(cat.matching({}, limit=None))
    top = cat.similar(str(photos[1]), k=1)[0]
    assert top.id == "p001" and top.score > 0.999


def test_another_models_catalogue_is_refused(encoder, tmp_path):
    reference(encoder).save(tmp_path / "cat")
    with pytest.raises(CatalogError, match="indexed with model .* but the loaded model"):
        Catalog.open(tmp_path / "cat", Encoder())


def test_hits_carry_a_confidence_and_the_scale_follows_writes(cat):
    hits = cat.similar("i020", k=3)
    assert all(0.0 <= h.confidence <= 1.0 and h.match for h in hits)
    fitted = cat.match_scale()
    assert cat.match_scale() is fitted
    cat.add_embeddings(["twin"], cat.vector("i020")[None])
    cat.wait_for_scales(timeout=120)  # a service refits in the background after its writes
    assert cat.match_scale() is not fitted
    best = cat.similar("i020", k=1)[0]
    assert best.id == "twin" and best.match == "very close"
    cat.remove(["twin"])


def test_a_paused_iteration_holds_up_no_search_in_another_thread(cat):
    batches = cat.iter_batches(10)
    first_ids = next(batches)[0]  # paused mid-iteration, as a slow upload pauses it
    done = threading.Event()
    found: list = []

    def search() -> None:
        found.extend(cat.similar("i001", k=3))
        done.set()

    worker = threading.Thread(target=search, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert done.is_set() and not worker.is_alive() and len(found) == 3
    if isinstance(cat, Catalog):  # the local store iterates a snapshot: a change made
        cat.add_embeddings(["late"], cat.vector("i001")[None])  # meanwhile is not in it
        rest = [i for ids, _, _, _ in batches for i in ids]
        assert "late" not in rest and len(first_ids) + len(rest) == N
    batches.close()


def test_version_batch_search_and_close_are_public(cat):
    before = cat.version
    assert cat.version == before  # nothing changed
    queries = np.stack([cat.vector("i003"), cat.vector("i040") * 3.0])
    found = cat.search_vectors(queries, k=4, exclude=[["i003"], ["i040"]])
    assert [[h.id for h in hits] for hits in found] == [
        [h.id for h in cat.similar("i003", k=4)], [h.id for h in cat.similar("i040", k=4)]]
    assert all(h.confidence is not None for hits in found for h in hits)
    with pytest.raises(ValueError, match="exclude"):
        cat.search_vectors(queries, k=2, exclude=[["i003"]])
    cat.add_embeddings(["fresh"], cat.vector("i003")[None])
    assert cat.version != before
    cat.remove(["fresh"])


def test_a_display_for_one_call_is_not_the_catalogues(cat):
    stored = cat.display()
    assert cat.display(filters=["gender"], caption=["price"]) == {"filters": ["gender"],
                                                                   "caption": ["price"]}
    assert cat.display() == stored
    with pytest.raises(ValueError, match="no such metadata column"):
        cat.display(filters=["colr"])


def test_the_stored_scale_is_what_a_fit_gives_and_no_query_fits_one(cat):
    fits: list = []
    real_fit = cat._fit_scale
    writes = [lambda: cat.add_embeddings(["i005"], cat.vector("i006")[None]),  # replaced
              lambda: cat.remove(["i007", "i008"]),
              lambda: cat.add_embeddings(["twin"], cat.vector("i020")[None])]
    for write in writes:
        write()
        cat.wait_for_scales(timeout=120)  # a service stores its refit in the background
        cat._fit_scale = lambda colour: fits.append(colour) or real_fit(colour)
        stored = cat.match_scale()
        assert fits == []  # the stored scale, never a fit on the query path
        assert np.allclose(stored.neighbour_scores, real_fit(None).neighbour_scores, atol=1e-5)
        del cat._fit_scale
    best = cat.similar("i020", k=1)[0]
    assert best.id == "twin" and best.match == "very close" and fits == []
