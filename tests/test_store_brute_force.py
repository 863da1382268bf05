"""Search against a numpy brute force over the live items, as hnswlib's own tests do.

A few thousand clustered unit vectors with categorical and numeric metadata; every checkpoint
(fresh, after add/remove/replace/update churn, a second instance's view of the deltas,
after compaction, after reopening) compares ``similar_to_vector`` top-10 with the exact answer
under many filters (equality, any-of, ``!=``, ranges, combinations, 2% and broad) and with
``exclude``: the exact engine must give the same ids, HNSW recall@10 >= 0.99 on average, and
neither may ever return a removed item or one failing the filter.
"""

from __future__ import annotations

import numpy as np
import pytest

from fai_infer import Catalog, Encoder
from fai_infer.index import vector_index
from fai_infer.index.search import HnswSearch
from tests.helpers import OTHER_MODEL

DIM_MODEL = OTHER_MODEL  # the smallest model file: vectors here come from numpy, not photos
N = 4000
K = 10
COLOURS = ["red", "green", "blue", "black", "white", "beige", "navy", "pink"]
KINDS = [f"k{i:02d}" for i in range(50)]  # one kind is ~2% of the items


@pytest.fixture(scope="module")
def enc():
    return Encoder(DIM_MODEL)


# -- the reference ---------------------------------------------------------------------------
def fold(row, col):
    return str(row.get(col, "")).casefold()


def price(row):
    try:
        return float(row["price"])
    except (KeyError, ValueError):
        return None


def in_range(lo=None, hi=None, lo_strict=False, hi_strict=False):
    def pred(row):
        p = price(row)
        if p is None:
            return False
        if lo is not None and (p <= lo if lo_strict else p < lo):
            return False
        if hi is not None and (p >= hi if hi_strict else p > hi):
            return False
        return True
    return pred


def ALL(row):
    return True


# (name, where, predicate written independently of fai_infer.index.filters)
FILTERS = [
    ("none", None, ALL),
    ("eq", {"colour": "red"}, lambda r: fold(r, "colour") == "red"),
    ("eq-case", "colour=RED", lambda r: fold(r, "colour") == "red"),
    ("any-of", {"colour": ["Red", "BLUE", "navy"]},
     lambda r: fold(r, "colour") in ("red", "blue", "navy")),
    ("any-of-strings", ["kind=k07", "kind=K31"], lambda r: fold(r, "kind") in ("k07", "k31")),
    ("selective-2%", {"kind": "k13"}, lambda r: fold(r, "kind") == "k13"),
    ("not", "gender!=men", lambda r: fold(r, "gender") != "men"),
    ("not-colour", "colour!=red", lambda r: fold(r, "colour") != "red"),
    ("lt", "price<50", in_range(hi=50, hi_strict=True)),
    ("range", ["price>=20", "price<=40"], in_range(lo=20, hi=40)),
    ("gt", "price>150", in_range(lo=150, lo_strict=True)),
    ("combo", [{"gender": "Women"}, "colour!=green", "price>100"],
     lambda r: fold(r, "gender") == "women" and fold(r, "colour") != "green"
     and in_range(lo=100, lo_strict=True)(r)),
    ("combo-selective", [{"kind": ["k03", "k04"]}, "price<=120", "gender!=women"],
     lambda r: fold(r, "kind") in ("k03", "k04") and in_range(hi=120)(r)
     and fold(r, "gender") != "women"),
]


class Model:
    """The live items as plain dicts, and brute-force search over them."""

    def __init__(self, dim):
        self.dim = dim
        self.vec: dict[str, np.ndarray] = {}
        self.meta: dict[str, dict[str, str]] = {}

    def add(self, ids, vectors, rows=None):
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        for i, (id_, v) in enumerate(zip(ids, vectors)):
            row = rows[i] if rows is not None else {}
            if id_ in self.meta and not row:
                row = self.meta[id_]  # a new vector for an item keeps its metadata
            self.vec[id_] = v.astype(np.float32)
            self.meta[id_] = dict(row)

    def remove(self, ids):
        for id_ in ids:
            self.vec.pop(id_, None)
            self.meta.pop(id_, None)

    def update(self, ids, rows):
        for id_, row in zip(ids, rows):
            if id_ in self.meta:
                self.meta[id_].update(row)

    def snapshot(self):
        """Freeze the live items as a matrix for the queries of one checkpoint."""
        self.order = sorted(self.vec)
        self.matrix = np.stack([self.vec[i] for i in self.order])
        self._masks = {}

    def mask(self, pred):
        if pred not in self._masks:
            self._masks[pred] = np.array([pred(self.meta[i]) for i in self.order], bool)
        return self._masks[pred]

    def scores(self, queries):
        """(items, queries) cosine scores in one matrix product (one BLAS call per batch:
        a gemv per query is slow on a busy 2-core machine)."""
        q = np.asarray(queries, np.float32).reshape(-1, self.dim)
        return self.matrix @ (q / np.linalg.norm(q, axis=1, keepdims=True)).T

    def top(self, scores, k, pred, exclude=()):
        """Best k ids (and scores) among items passing ``pred``, from one column of scores."""
        allowed = self.mask(pred).copy()
        for i in exclude:
            allowed[self.order.index(i)] = False
        scores = np.where(allowed, scores, -np.inf)
        k = min(k, int(allowed.sum()))
        if k == 0:
            return [], np.zeros(0, np.float32)
        part = np.argpartition(-scores, k - 1)[:k]
        order = part[np.argsort(-scores[part], kind="stable")]
        return [self.order[j] for j in order], scores[order]


def clustered(rng, n, dim, centres):
    c = centres[rng.integers(0, len(centres), n)]
    v = c + 0.35 * rng.normal(size=(n, dim)).astype(np.float32) / np.sqrt(dim)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def rows_for(rng, n):
    rows = []
    for _ in range(n):
        row = {"colour": COLOURS[rng.integers(len(COLOURS))],
               "gender": ["Women", "Men"][rng.integers(2)],
               "kind": KINDS[rng.integers(len(KINDS))],
               "price": f"{rng.uniform(1, 200):.2f}"}
        if rng.random() < 0.05:
            del row["price"]  # a missing number never passes a range
        if rng.random() < 0.03:
            row["price"] = "n/a"  # nor does one that is not a number
        rows.append(row)
    return rows


# -- the check -------------------------------------------------------------------------------
def check(cat: Catalog, model: Model, rng, centres, exact: bool, label: str):
    assert len(cat) == len(model.vec), label
    model.snapshot()
    assert set(cat.ids) == set(model.vec), label
    recalls = []
    for name, where, pred in FILTERS:
        matching = {i for i, ok in zip(model.order, model.mask(pred)) if ok}
        assert set(cat.matching(where)) == matching, f"{label}/{name}: matching()"
        queries = np.concatenate([
            clustered(rng, 10, model.dim, centres),
            np.stack([model.vec[i] for i in rng.choice(model.order, 10, replace=False)])
            + 0.02 * rng.normal(size=(10, model.dim)).astype(np.float32)])
        brute = model.scores(queries)
        for j, q in enumerate(queries):
            want, want_scores = model.top(brute[:, j], K, pred)
            hits = cat.similar_to_vector(q, k=K, where=where)
            got = [h.id for h in hits]
            where_ = f"{label}/{name}"
            assert len(got) == len(set(got)), f"{where_}: repeated hit"
            assert all(g in model.vec for g in got), f"{where_}: returned a removed item"
            assert all(pred(model.meta[g]) for g in got), f"{where_}: hit fails the filter"
            assert all(h.metadata == model.meta[h.id] for h in hits), f"{where_}: metadata"
            scores = np.array([h.score for h in hits])
            assert np.all(np.diff(scores) <= 1e-6), f"{where_}: not sorted"
            true = np.array([model.vec[g] @ (q / np.linalg.norm(q)) for g in got])
            np.testing.assert_allclose(scores, true, atol=1e-4, err_msg=where_)
            if exact:
                assert len(got) == len(want), where_
                np.testing.assert_allclose(scores, want_scores, atol=1e-5, err_msg=where_)
                # identical ids; only a tie at the 10th place (closer than float32 noise)
                # may pick a different item
                if set(got) != set(want):
                    boundary = want_scores[-1]
                    odd = [g for g in got if g not in want] + [w for w in want if w not in got]
                    gap = max(abs(float(model.vec[i] @ (q / np.linalg.norm(q))) - boundary)
                              for i in odd)
                    assert gap < 1e-5, f"{where_}: {got} != {want} (gap {gap:g})"
            else:
                if want:
                    recalls.append(len(set(got) & set(want)) / len(want))
    # exclude: an item's own vector, leaving out itself and its nearest neighbours
    picked = rng.choice(model.order, 15, replace=False)
    brute = model.scores([model.vec[i] for i in picked])
    for j, id_ in enumerate(picked):
        q = model.vec[id_]
        near, _ = model.top(brute[:, j], 4, ALL)
        exclude = set(near) | {id_}
        want, _ = model.top(brute[:, j], K, ALL, exclude)
        got = [h.id for h in cat.similar_to_vector(q, k=K, exclude=exclude)]
        assert not exclude & set(got), f"{label}: exclude ignored"
        assert len(got) == K
        if exact:
            assert set(got) == set(want), f"{label}: exclude"
        else:
            recalls.append(len(set(got) & set(want)) / K)
    if not exact:
        assert np.mean(recalls) >= 0.99, f"{label}: recall@10 {np.mean(recalls):.4f}"
        assert np.min(recalls) >= 0.7, f"{label}: a query with recall {np.min(recalls)}"


def churn(cat: Catalog, model: Model, rng, centres, next_id: int) -> int:
    """Remove ~20%, replace ~10% (half keeping metadata), add ~15%, update ~8%."""
    live = sorted(model.vec)
    gone = list(rng.choice(live, len(live) // 5, replace=False))
    assert cat.remove(gone + ["never-there"]) == ["never-there"]
    model.remove(gone)
    live = sorted(model.vec)
    again = list(rng.choice(live, len(live) // 10, replace=False))
    half = len(again) // 2
    v = clustered(rng, len(again), model.dim, centres)
    cat.add_embeddings(again[:half], v[:half])  # keeps metadata
    model.add(again[:half], v[:half])
    rows = rows_for(rng, len(again) - half)
    cat.add_embeddings(again[half:], v[half:], metadata=rows)
    model.add(again[half:], v[half:], rows)
    new = [f"n{next_id + i}" for i in range(len(live) * 15 // 100)]
    v, rows = clustered(rng, len(new), model.dim, centres), rows_for(rng, len(new))
    for s in range(0, len(new), 97):  # several deltas
        cat.add_embeddings(new[s:s + 97], v[s:s + 97], metadata=rows[s:s + 97])
    model.add(new, v, rows)
    live = sorted(model.vec)
    upd = list(rng.choice(live, len(live) * 8 // 100, replace=False))
    urows = [{"colour": COLOURS[rng.integers(len(COLOURS))]} if j % 2 else
             {"price": f"{rng.uniform(1, 200):.2f}", "kind": KINDS[rng.integers(len(KINDS))]}
             for j in range(len(upd))]
    assert cat.update_metadata(upd + ["ghost"], urows + [{"colour": "red"}]) == ["ghost"]
    model.update(upd, urows)
    return next_id + len(new)


@pytest.mark.soak
@pytest.mark.parametrize("engine,filter_path", [("exact", "-"), ("hnsw", "gather"),
                                                ("hnsw", "scan"), ("hnsw", "graph")])
def test_search_matches_brute_force_through_churn_compaction_and_reopen(
        tmp_path, enc, monkeypatch, engine, filter_path):
    """Every way a filter is searched (its rows gathered, a narrow copy scanned, the graph
    filtered after) is forced in turn and must agree with brute force through adds, removes,
    metadata updates, compactions and reopening."""
    if filter_path == "gather":
        monkeypatch.setattr(vector_index, "EXACT_FILTER_BELOW", 10**9)
    if filter_path in ("scan", "graph"):
        monkeypatch.setattr(vector_index, "EXACT_FILTER_BELOW", 0)
        monkeypatch.setattr(vector_index, "SCAN_FROM", 0)
        monkeypatch.setattr(vector_index, "SCAN_BELOW", 10**9 if filter_path == "scan" else 0)
    exact = engine == "exact"
    answered = {"plain": 0}  # unfiltered queries HNSW answered in full (no fallback)
    plans: dict[str, int] = {}
    query, plan = HnswSearch.query, vector_index.VectorIndex.filter_plan

    def spy(self, vector, k, allowed=None, ef=0):
        labels, scores = query(self, vector, k, allowed, ef)
        if len(labels) >= k and ef == 0:
            answered["plain"] += 1
        return labels, scores

    def plan_spy(self, chosen):
        chosen_plan = plan(self, chosen)
        plans[chosen_plan] = plans.get(chosen_plan, 0) + 1
        return chosen_plan

    monkeypatch.setattr(HnswSearch, "query", spy)
    monkeypatch.setattr(vector_index.VectorIndex, "filter_plan", plan_spy)
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(30, enc.dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    model = Model(enc.dim)
    cat = Catalog(enc, exact_below=10**7 if exact else 200)
    ids = [f"p{i}" for i in range(N)]
    v, rows = clustered(rng, N, enc.dim, centres), rows_for(rng, N)
    cat.add_embeddings(ids[:N // 2], v[:N // 2], metadata=rows[:N // 2])
    cat.add_embeddings(ids[N // 2:], v[N // 2:], metadata=rows[N // 2:])
    model.add(ids, v, rows)
    assert cat.engine == engine
    check(cat, model, rng, centres, exact, "fresh")

    root = tmp_path / "cat"
    cat.save(root)
    reader = Catalog.open(root, enc)  # opened before the churn, catches up with refresh()
    next_id = churn(cat, model, rng, centres, 0)
    assert sorted((root / cat._gen).glob("delta-*")), "churn should commit deltas"
    check(cat, model, rng, centres, exact, "after churn")
    assert reader.refresh()
    check(reader, model, rng, centres, exact, "reader after refresh")
    check(Catalog.open(root, enc), model, rng, centres, exact, "opened: base + deltas")

    cat.compact()
    assert not list((root / cat._gen).glob("delta-*"))
    check(cat, model, rng, centres, exact, "after compact")
    next_id = churn(cat, model, rng, centres, next_id)  # tombstones reused after compaction
    check(cat, model, rng, centres, exact, "churn after compact")
    cat.compact()
    reopened = Catalog.open(root, enc)
    assert reopened.engine == engine
    check(reopened, model, rng, centres, exact, "reopened")
    assert reader.refresh()  # a reader across two compactions
    check(reader, model, rng, centres, exact, "reader after compactions")
    if engine == "hnsw":
        assert answered["plain"] > 100
        assert plans.get(filter_path, 0) > 20, plans  # once per filter and version at least
    else:
        assert answered == {"plain": 0} and set(plans) == {"gather"}, plans


# -- filter errors ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(enc):
    rng = np.random.default_rng(3)
    cat = Catalog(enc, exact_below=50)
    n = 120
    cat.add_embeddings([f"i{i}" for i in range(n)], rng.normal(size=(n, enc.dim)),
                       metadata=rows_for(rng, n))
    return cat


@pytest.mark.parametrize("where,names", [
    ({"colr": "red"}, ["'colr'", "colour"]),
    ("gendr=Men", ["'gendr'", "gender"]),
    ("Colour=red", ["'Colour'", "colour"]),
    ("prise<50", ["'prise'", "price"]),
    ({"colour": "rde"}, ["colour", "'rde'", "red"]),
    ("colour!=gren", ["colour", "'gren'", "green"]),
    (["gender=Women", "kind=k077"], ["kind", "'k077'", "k07"]),
])
def test_unknown_column_or_value_is_one_valueerror_with_close_matches(small, where, names):
    for call in (lambda: small.similar_to_vector(np.ones(small.encoder.dim), 5, where),
                 lambda: small.matching(where),
                 lambda: small.similar("i0", 5, where)):
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message
        for name in names:
            assert name in message, f"{message!r} should name {name}"


@pytest.mark.parametrize("where,text", [("colour<5", "holds no numbers"),
                                        ("price<cheap", "not a number"),
                                        ("=red", "expected column=value")])
def test_malformed_filters_are_valueerrors(small, where, text):
    with pytest.raises(ValueError, match=text):
        small.similar_to_vector(np.ones(small.encoder.dim), 5, where)
