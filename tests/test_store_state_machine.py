"""A Hypothesis state machine over the live store, checked against a plain-dict model.

Two ``Catalog`` instances share one directory and take turns changing it (each commit must
start from the newest state, so a stale instance's change never erases the other's), a third
is ``live=True`` and never told to refresh, and after every step a fresh ``Catalog.open`` must
equal the model: the same ids, metadata, vectors (cosine >= 0.9999), len, filter results, and
an item's own vector must find itself first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fai_infer import Catalog, Encoder
from tests.helpers import OTHER_MODEL
import pytest

pytestmark = [pytest.mark.soak]  # hypothesis drives three catalogues through many steps

ENC = Encoder(OTHER_MODEL)
POOL = [f"item{i:02d}" for i in range(14)]
COLS = ["colour", "size", "price"]
VALUES = {"colour": ["red", "Blue", "green", ""], "size": ["S", "M", "L"],
          "price": ["5", "19.5", "70", "n/a"]}

ids_st = st.lists(st.sampled_from(POOL), min_size=1, max_size=4, unique=True)
row_st = st.fixed_dictionaries({}, optional={c: st.sampled_from(VALUES[c]) for c in COLS})
who_st = st.sampled_from([0, 1])


def vector_for(seed: int, item: str) -> np.ndarray:
    v = np.random.default_rng([seed, POOL.index(item)]).normal(size=ENC.dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="fai-sm-"))
        self.root = self.dir / "cat"
        Catalog(ENC, exact_below=5).save(self.root)  # small: HNSW from 5 live items
        self.cats = [Catalog.open(self.root, ENC), Catalog.open(self.root, ENC)]
        self.live = Catalog.open(self.root, ENC, live=True)
        self.last = 0  # the instance that committed last (it is up to date)
        self.vec: dict[str, np.ndarray] = {}
        self.meta: dict[str, dict[str, str]] = {}

    def teardown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- rules -------------------------------------------------------------------------------
    @rule(who=who_st, ids=ids_st, seed=st.integers(0, 2**16),
          rows=st.one_of(st.none(), st.lists(row_st, min_size=4, max_size=4)))
    def add(self, who, ids, seed, rows):
        vectors = np.stack([vector_for(seed, i) for i in ids]) * 3.0  # any scale
        given = None if rows is None else rows[:len(ids)]
        self.cats[who].add_embeddings(ids, vectors, metadata=given)
        for n, i in enumerate(ids):
            row = {} if given is None else dict(given[n])
            if i in self.meta and not row:
                row = self.meta[i]
            self.vec[i], self.meta[i] = vector_for(seed, i), dict(row)
        self.last = who

    @rule(who=who_st, ids=st.lists(st.sampled_from(POOL + ["ghost"]), max_size=4))
    def remove(self, who, ids):
        missing = self.cats[who].remove(ids)
        assert missing == [i for i in dict.fromkeys(ids) if i not in self.vec]
        for i in ids:
            self.vec.pop(i, None), self.meta.pop(i, None)
        self.last = who

    @rule(who=who_st, ids=ids_st, rows=st.lists(row_st, min_size=4, max_size=4))
    def update(self, who, ids, rows):
        missing = self.cats[who].update_metadata(ids, rows[:len(ids)])
        assert missing == [i for i in ids if i not in self.meta]
        for i, row in zip(ids, rows):
            if i in self.meta:
                self.meta[i].update(row)
        self.last = who

    @rule(who=who_st)
    def compact(self, who):
        self.cats[who].compact()
        assert not list((self.root / self.cats[who]._gen).glob("delta-*"))
        self.last = who

    @rule(who=who_st)
    def save_and_reopen(self, who):
        self.cats[who].save()  # where it lives: a compaction
        self.cats[who] = Catalog.open(self.root, ENC)
        self.last = who

    @rule(who=who_st)
    def refresh(self, who):
        self.cats[who].refresh()
        self.check(self.cats[who], "refreshed instance")

    @precondition(lambda self: self.vec)
    @rule(data=st.data())
    def search_own_vector(self, data):
        item = data.draw(st.sampled_from(sorted(self.vec)))
        for cat in (self.cats[self.last], self.live):
            hits = cat.similar_to_vector(self.vec[item], k=3)
            assert hits[0].id == item and hits[0].score > 0.9999
            assert [h.id for h in cat.similar_to_vector(self.vec[item], k=3, exclude=[item])
                    ][:1] != [item]

    # -- invariants --------------------------------------------------------------------------
    def check(self, cat: Catalog, what: str):
        assert len(cat) == len(self.vec), what
        assert sorted(cat.ids) == sorted(self.vec), what
        for i, v in self.vec.items():
            assert cat.get(i).metadata == self.meta[i], (what, i)
            assert float(cat.vector(i) @ v) >= 0.9999, (what, i)
            assert cat.similar_to_vector(v, k=1)[0].id == i, (what, i)
        for colour in {m.get("colour") for m in self.meta.values()} - {None}:
            want = {i for i, m in self.meta.items() if m.get("colour", "").casefold()
                    == colour.casefold()}
            assert set(cat.matching({"colour": colour})) == want, (what, colour)
            assert set(cat.matching(f"colour!={colour}")) == set(self.vec) - want, what
        if any(m.get("price") not in (None, "n/a") for m in self.meta.values()):
            cheap = {i for i, m in self.meta.items() if m.get("price") in ("5", "19.5")}
            assert set(cat.matching("price<20")) == cheap, what
            hits = cat.similar_to_vector(np.ones(ENC.dim), k=20, where="price<20")
            assert {h.id for h in hits} == cheap, what

    @invariant()
    def writer_equals_model(self):
        self.check(self.cats[self.last], "last writer")

    @invariant()
    def disk_equals_model(self):
        self.check(Catalog.open(self.root, ENC), "opened from disk")

    @invariant()
    def live_reader_needs_no_refresh(self):
        assert set(self.live.matching(None)) == set(self.vec)  # matching() refreshes first
        self.check(self.live, "live reader")


# FAI_SM_EXAMPLES=400 for a longer hunt (passed at 400 when this was written, ~4 min)
StoreMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("FAI_SM_EXAMPLES", "25")), stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_store_state_machine = StoreMachine.TestCase
