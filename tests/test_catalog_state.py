"""The in-memory state alone (``fai_infer/store/state.py``), driven by deltas and checked
against a plain dict, with no folder, lock or encoder: the rules every replayed or live change
follows (removals, then additions that replace and keep metadata, then updates of ids present),
and compaction keeping exactly the live rows."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from fai_infer.store.state import CatalogState
from fai_infer.store.delta import Delta

DIM = 8
POOL = [f"item{i:02d}" for i in range(12)]
VALUES = {"colour": ["red", "Blue", ""], "price": ["5", "70", "n/a"]}

ids_st = st.lists(st.sampled_from(POOL), min_size=1, max_size=4, unique=True)
row_st = st.fixed_dictionaries({}, optional={c: st.sampled_from(v) for c, v in VALUES.items()})


def unit(seed: int, item: str) -> np.ndarray:
    v = np.random.default_rng([seed, POOL.index(item)]).normal(size=DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


class StateMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.state = CatalogState(DIM, exact_below=4)  # HNSW once 4 items are live
        self.vec: dict[str, np.ndarray] = {}
        self.meta: dict[str, dict[str, str]] = {}
        self.path: dict[str, str] = {}

    @rule(ids=ids_st, seed=st.integers(0, 2**16), rows=st.lists(row_st, min_size=4, max_size=4))
    def add(self, ids, seed, rows):
        vectors = np.stack([unit(seed, i) for i in ids])
        rows = rows[:len(ids)]
        self.state.apply(Delta(add_ids=ids, add_paths=[f"/{i}-{seed}.jpg" for i in ids],
                               add_rows=rows, vectors=vectors))
        for i, v, r in zip(ids, vectors, rows):
            self.vec[i], self.path[i] = v, f"/{i}-{seed}.jpg"
            if r or i not in self.meta:  # an empty row keeps the item's metadata
                self.meta[i] = dict(r)

    @rule(ids=ids_st)
    def remove(self, ids):
        self.state.apply(Delta(remove=ids))
        for i in ids:
            self.vec.pop(i, None), self.meta.pop(i, None), self.path.pop(i, None)

    @rule(ids=ids_st, row=row_st)
    def update(self, ids, row):
        self.state.apply(Delta(update_ids=ids, update_rows=[row] * len(ids)))
        for i in ids:
            if i in self.meta:
                self.meta[i].update(row)

    @rule()
    def compact(self):
        before = self.state.version
        self.state = self.state.compacted()
        assert self.state.version > before and len(self.state.ids) == len(self.vec)

    @invariant()
    def equals_the_model(self):
        st_ = self.state
        assert len(st_) == len(self.vec) and set(st_.row_of) == set(self.vec)
        for i, v in self.vec.items():
            row = st_.row_of[i]
            hit = st_.hit(row)
            assert (hit.id, hit.path) == (i, self.path[i])
            assert {c: x for c, x in hit.metadata.items() if x} == \
                {c: x for c, x in self.meta[i].items() if x}
            assert float(st_.vector_of(i) @ v) > 0.9999
            rows, _ = st_.index.search(v, 1)
            assert st_.ids[rows[0]] == i  # its own vector finds it first
        assert st_.resolve("not-there") is None


StateMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("FAI_SM_EXAMPLES", "40")), stateful_step_count=25,
    deadline=None, suppress_health_check=[HealthCheck.too_slow])
test_catalog_state_machine = StateMachine.TestCase
