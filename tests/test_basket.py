"""Baskets that cover every item: per-item neighbours merged round-robin, MMR diversity."""

import numpy as np
import pytest

from fai_infer import Catalog, Encoder
from tests.helpers import catalog_of


@pytest.fixture(scope="module")
def encoder():
    return Encoder()


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def kinds_catalog(encoder, n_kinds: int, per_kind: int = 30, seed: int = 0) -> Catalog:
    """n_kinds clusters, plus a 'hub' kind sitting at the mean of their centres, which is
    exactly where the mean-embedding ranking looks (the shirt + shoes -> 10 shoes failure)."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(n_kinds, encoder.dim)))
    hub = _unit(centres.mean(axis=0))
    ids, rows, vecs = [], [], []
    for kind, centre in [*enumerate(centres), ("hub", hub)]:
        spread = 0.05 if kind == "hub" else 0.35
        for j in range(per_kind):
            ids.append(f"{kind}-{j}")
            rows.append({"kind": str(kind)})
            vecs.append(_unit(centre + spread * rng.normal(size=encoder.dim) / encoder.dim**0.5))
    return catalog_of(encoder, ids, [f"{i}.jpg" for i in ids], rows, np.stack(vecs))


@pytest.mark.parametrize("n", [2, 3, 5])
def test_a_basket_of_n_kinds_gets_every_kind_in_its_top_2n(encoder, n):
    cat = kinds_catalog(encoder, n, seed=n)
    basket = [f"{kind}-0" for kind in range(n)]
    hits = cat.similar_to_basket(basket, k=2 * n)
    kinds = {h.metadata["kind"] for h in hits}
    assert kinds >= {str(kind) for kind in range(n)}, kinds
    assert not set(basket) & {h.id for h in hits}
    for h in hits:  # each hit names the basket item it was found for, of its own kind
        assert h.source in basket and h.source.split("-")[0] == h.metadata["kind"]
    # The old ranking, kept as mode="centroid", collapses onto the hub between them.
    old = cat.similar_to_basket(basket, k=2 * n, mode="centroid")
    assert {h.metadata["kind"] for h in old} == {"hub"}
    assert all(h.source in basket for h in old)


def test_diversity_collapses_near_duplicates(encoder):
    rng = np.random.default_rng(1)
    a, b = _unit(rng.normal(size=(2, encoder.dim)))
    # Item a has 6 near-identical twins (one product photographed six times) and then a
    # spread of genuinely different neighbours.
    twins = [_unit(a + 0.02 * rng.normal(size=encoder.dim) / encoder.dim**0.5)
             for _ in range(6)]
    others = [_unit(a + 0.9 * rng.normal(size=encoder.dim) / encoder.dim**0.5)
              for _ in range(20)]
    near_b = [_unit(b + 0.5 * rng.normal(size=encoder.dim) / encoder.dim**0.5)
              for _ in range(20)]
    vecs = np.stack([a, b, *twins, *others, *near_b])
    ids = ["a", "b"] + [f"twin{i}" for i in range(6)] + [f"other{i}" for i in range(20)] + [
        f"nb{i}" for i in range(20)]
    cat = catalog_of(encoder, ids, [f"{i}.jpg" for i in ids], [{} for _ in ids], vecs)

    def twins_in(hits):
        return sum(h.id.startswith("twin") for h in hits)

    # The twins are a's own design (nearly one vector): asked for, MMR collapses them; by
    # default they are not suggested at all (the next test).
    plain = cat.similar_to_basket(["a", "b"], k=8, diversity=0.0, same_design=True)
    diverse = cat.similar_to_basket(["a", "b"], k=8, diversity=0.5, same_design=True)
    assert twins_in(plain) == 4 and twins_in(diverse) == 1
    assert twins_in(cat.similar_to_basket(["a", "b"], k=8)) == 0
    assert [h.source for h in diverse[:2]] == ["a", "b"]
    with pytest.raises(ValueError, match="diversity"):
        cat.similar_to_basket(["a"], diversity=2)
    with pytest.raises(ValueError, match="mode"):
        cat.similar_to_basket(["a"], mode="average")


def test_basket_with_a_filter(encoder):
    cat = kinds_catalog(encoder, 2)
    hits = cat.similar_to_basket(["0-0", "1-0"], k=6, where={"kind": ["0", "hub"]})
    assert {h.metadata["kind"] for h in hits} <= {"0", "hub"} and len(hits) == 6
    assert {h.source for h in hits} == {"0-0", "1-0"}


def colourways_catalog(encoder, seed: int = 4) -> Catalog:
    """Two hoodie designs in five colourways each (colourways nearly one vector), other
    hoodies, and a few other kinds a little further away (what a shop's neighbours look like)."""
    rng = np.random.default_rng(seed)
    hoodie = _unit(rng.normal(size=encoder.dim))
    noise = lambda s: s * rng.normal(size=encoder.dim) / encoder.dim**0.5  # noqa: E731
    ids, rows, vecs = [], [], []
    for design in ("d1", "d2"):
        base = _unit(hoodie + noise(0.6))
        for c in range(5):
            ids.append(f"{design}-c{c}")
            rows.append({"design": design, "kind": "Hoodie"})
            vecs.append(_unit(base + noise(0.15)))
    for j in range(30):
        ids.append(f"h{j}")
        rows.append({"design": f"h{j}", "kind": "Hoodie"})
        vecs.append(_unit(hoodie + noise(0.8)))
    for kind in ("Sweater", "T-shirt", "Jacket", "Trousers"):
        for j in range(6):
            ids.append(f"{kind}-{j}")
            rows.append({"design": f"{kind}{j}", "kind": kind})
            vecs.append(_unit(hoodie + noise(1.1)))
    return catalog_of(encoder, ids, [f"{i}.jpg" for i in ids], rows, np.stack(vecs))


def test_a_basket_never_brings_back_its_own_designs_unless_asked(encoder):
    cat = colourways_catalog(encoder)
    basket = ["d1-c0", "d2-c0"]
    asked = cat.similar_to_basket(basket, k=10, same_design=True)
    assert sum(h.metadata["design"] in ("d1", "d2") for h in asked) >= 4  # the old behaviour
    by_column = cat.similar_to_basket(basket, k=10, design_column="design")
    assert len(by_column) == 10
    assert not any(h.metadata["design"] in ("d1", "d2") for h in by_column)
    by_embedding = cat.similar_to_basket(basket, k=10)  # no column named: near-twins go
    assert not any(h.metadata["design"] in ("d1", "d2") for h in by_embedding)
    with pytest.raises(ValueError, match="no metadata column 'nope'"):
        cat.similar_to_basket(basket, k=10, design_column="nope")


def test_two_hoodies_spread_over_kinds_as_far_as_diversity_says(encoder):
    cat = colourways_catalog(encoder)
    basket = ["d1-c0", "d2-c0"]

    def kinds(**kw):
        hits = cat.similar_to_basket(basket, k=10, design_column="design", **kw)
        return {h.metadata["kind"] for h in hits}

    assert kinds() == {"Hoodie"}  # nearest first: more hoodies
    assert kinds(kind_column="kind", diversity=0.0) == {"Hoodie"}
    spread = kinds(kind_column="kind")
    assert len(spread) >= 4, spread
    assert len(kinds(kind_column="kind", diversity=0.1)) <= len(spread)
