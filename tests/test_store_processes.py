"""The store shared by real processes: concurrent writers lose nothing, readers never fail or
go back in time, a waiting writer gives up with one line naming the holder, and a long-lived
reader sees other processes' changes (after ``refresh()``, or at once with ``live=True``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest

from fai_infer import Catalog, CatalogError, Encoder
from fai_infer.store.journal import is_delta_name
from tests.helpers import OTHER_MODEL, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.soak]  # real processes racing on one catalogue

WRITERS, ADDS = 4, 50
DEADLINE_S = 120  # no child may outlive this, whatever happens

HELPERS = f"""
import json, os, sys, time, traceback, zlib
import numpy as np
import fai_infer.store.replica
from fai_infer import Catalog, Encoder
from fai_infer.store.journal import writer_lock
ENC = Encoder({str(OTHER_MODEL)!r})

def vec(item):
    v = np.random.default_rng(zlib.crc32(item.encode())).normal(size=ENC.dim)
    return (v / np.linalg.norm(v)).astype(np.float32)
"""

WRITER = HELPERS + """
root, w, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fai_infer.store.replica.COMPACT_MAX_DELTAS = 37  # automatic compactions happen mid-run too
cat = Catalog.open(root, ENC, lock_timeout=60)
print("ready", flush=True)
assert sys.stdin.readline().strip() == "go"
for i in range(n):
    item = f"w{w}-{i:03d}"
    cat.add_embeddings([item], vec(item)[None], metadata=[{"writer": str(w), "n": str(i)}])
    if w == 0 and i % 15 == 14:
        cat.compact()  # an explicit compaction while the others write
print("done", flush=True)
"""

READER = HELPERS + """
root, stop, out = sys.argv[1], sys.argv[2], sys.argv[3]
errors, reads, seen, last = [], 0, 0, set()
rng = np.random.default_rng(os.getpid())
print("ready", flush=True)
held = Catalog.open(root, ENC, live=True)  # long-lived: refreshes before every search
t0 = time.monotonic()
while time.monotonic() - t0 < 60:
    done = os.path.exists(stop)  # one last full round after the writers finished
    try:
        cat = Catalog.open(root, ENC, live=True)
        hits = cat.similar_to_vector(rng.normal(size=ENC.dim), k=5)
        assert len(hits) == min(5, len(cat)), "short result"
        cat.refresh()
        ids = set(cat.ids)
        assert all(h.id in ids for h in hits), "a hit that is not in the catalogue"
        assert ids >= last, f"went back in time: lost {sorted(last - ids)[:3]}"
        own = next(iter(ids), None)
        if own is not None:
            assert cat.similar_to_vector(vec(own), k=1)[0].id == own, "own vector"
        held.similar_to_vector(rng.normal(size=ENC.dim), k=3)
        held_ids = set(held.ids)
        assert held_ids >= last, "long-lived reader went back in time"
        last, seen, reads = ids, max(seen, len(ids)), reads + 1
    except Exception:
        errors.append(traceback.format_exc(limit=6))
    if done or len(errors) > 5:
        break
with open(out, "w") as fh:
    json.dump({"reads": reads, "errors": errors, "seen": seen}, fh)
"""

HOLD_LOCK = HELPERS + """
with writer_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.readline()  # until the test says so (or closes the pipe)
"""

ADD_AND_MAYBE_COMPACT = HELPERS + """
cat = Catalog.open(sys.argv[1], ENC)
cat.add_embeddings(["other"], vec("other")[None], metadata=[{"by": "other process"}])
if sys.argv[2] == "compact":
    cat.compact()
"""


def vec(item: str, dim: int) -> np.ndarray:
    v = np.random.default_rng(zlib.crc32(item.encode())).normal(size=dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def spawn(script: str, *args, stdin=subprocess.PIPE) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], cwd=ROOT,
                            env=env, stdin=stdin, stdout=subprocess.PIPE, text=True)


def kill_all(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


@pytest.fixture(scope="module")
def enc():
    return Encoder(OTHER_MODEL)


@pytest.fixture()
def root(tmp_path, enc):
    """A stored catalogue of 20 items, HNSW from 50 (crossed while the writers run)."""
    cat = Catalog(enc, exact_below=50)
    seed = [f"seed{i}" for i in range(20)]
    cat.add_embeddings(seed, np.stack([vec(s, enc.dim) for s in seed]),
                       metadata=[{"writer": "seed", "n": str(i)} for i in range(20)])
    cat.save(tmp_path / "cat")
    return tmp_path / "cat"


def test_concurrent_writers_lose_nothing_and_readers_never_fail(root, tmp_path, enc):
    stop = tmp_path / "stop"
    procs = []
    try:
        readers = [spawn(READER, root, stop, tmp_path / f"reader{r}.json") for r in range(2)]
        writers = [spawn(WRITER, root, w, ADDS) for w in range(WRITERS)]
        procs = readers + writers
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for w in writers:  # all at once, so they really contend for the lock
            w.stdin.write("go\n")
            w.stdin.flush()
        t0 = time.monotonic()
        for w in writers:
            assert w.stdout.readline().strip() == "done", "a writer failed (see stderr)"
            assert w.wait(timeout=max(1, DEADLINE_S - (time.monotonic() - t0))) == 0
        stop.write_text("")
        for r in readers:
            assert r.wait(timeout=max(1, DEADLINE_S - (time.monotonic() - t0))) == 0
    finally:
        kill_all(procs)

    reports = [json.loads((tmp_path / f"reader{r}.json").read_text()) for r in range(2)]
    for rep in reports:
        assert rep["errors"] == [], rep["errors"][0]
        assert rep["reads"] >= 3  # they really read while the writers wrote
        assert rep["seen"] == 20 + WRITERS * ADDS  # the last round saw everything

    cat = Catalog.open(root, enc)  # opens cleanly: every checksum, every delta
    want = {f"seed{i}" for i in range(20)} | {f"w{w}-{i:03d}" for w in range(WRITERS)
                                              for i in range(ADDS)}
    assert len(cat) == len(want) and set(cat.ids) == want  # zero lost updates
    for item in want:
        assert cat.get(item).metadata["writer"] in ("seed", item[1])
        assert float(cat.vector(item) @ vec(item, enc.dim)) > 0.9999
    assert cat.engine == "hnsw"
    assert [h.id for h in cat.similar_to_vector(vec("w3-049", enc.dim), k=1)] == ["w3-049"]
    gens = sorted(p.name for p in root.glob("gen-*"))
    assert len(gens) <= 2 and int(gens[-1].split("-")[1]) > 1  # compactions happened
    deltas = sorted(p.name for p in (root / cat._gen).iterdir() if is_delta_name(p.name))
    assert deltas == [f"delta-{n:06d}" for n in range(1, len(deltas) + 1)]  # no gaps
    assert not list(root.glob(".tmp-*"))


def test_waiting_writer_gives_up_with_one_line_naming_the_holder(root, enc):
    holder = spawn(HOLD_LOCK, root)
    try:
        assert holder.stdout.readline().strip() == "locked"
        cat = Catalog.open(root, enc, lock_timeout=0.3)
        before = len(cat)
        t0 = time.monotonic()
        with pytest.raises(CatalogError) as info:
            cat.add_embeddings(["late"], vec("late", enc.dim)[None])
        assert time.monotonic() - t0 < 5
        message = str(info.value)
        assert "\n" not in message
        assert f"pid {holder.pid}" in message and "0.3 s" in message
        with pytest.raises(CatalogError, match=f"pid {holder.pid}"):
            cat.compact()
        assert len(cat) == before and "late" not in cat
        assert len(Catalog.open(root, enc)) == before  # nothing was written
        holder.stdin.close()  # the holder lets go
        assert holder.wait(timeout=10) == 0
        cat.add_embeddings(["late"], vec("late", enc.dim)[None])
        assert "late" in Catalog.open(root, enc)
    finally:
        kill_all([holder])


def test_killed_lock_holder_does_not_block_the_next_writer(root, enc):
    holder = spawn(HOLD_LOCK, root)
    try:
        assert holder.stdout.readline().strip() == "locked"
        holder.kill()
        holder.wait(timeout=10)
        cat = Catalog.open(root, enc, lock_timeout=2)
        cat.add_embeddings(["after"], vec("after", enc.dim)[None])  # the kernel freed the lock
        assert "after" in Catalog.open(root, enc)
    finally:
        kill_all([holder])


@pytest.mark.parametrize("then", ["deltas", "compact"])
def test_long_lived_reader_sees_other_process_and_does_not_erase_it(root, enc, then):
    plain = Catalog.open(root, enc)
    live = Catalog.open(root, enc, live=True)
    stale = Catalog.open(root, enc)  # will write without ever refreshing
    other = vec("other", enc.dim)
    child = spawn(ADD_AND_MAYBE_COMPACT, root, then, stdin=subprocess.DEVNULL)
    try:
        assert child.wait(timeout=60) == 0
    finally:
        kill_all([child])

    assert "other" not in plain  # a plain reader keeps its snapshot ...
    assert plain.refresh() is True  # ... until refresh()
    assert "other" in plain and plain.get("other").metadata == {"by": "other process"}
    assert plain.refresh() is False  # nothing new since
    assert plain.similar_to_vector(other, k=1)[0].id == "other"

    hit = live.similar_to_vector(other, k=1)[0]  # live: no refresh() call needed
    assert hit.id == "other" and hit.metadata == {"by": "other process"}
    assert live.get("other").metadata == {"by": "other process"}

    assert "other" not in stale
    stale.add_embeddings(["mine"], vec("mine", enc.dim)[None])
    assert "other" in stale and "mine" in stale  # caught up under the lock before committing
    stale.remove(["seed0"])
    final = Catalog.open(root, enc)
    assert {"other", "mine"} <= set(final.ids) and "seed0" not in final
    assert len(final) == 20 + 2 - 1
    assert final.similar_to_vector(other, k=1)[0].id == "other"
    assert plain.refresh() and set(plain.ids) == set(final.ids)
    assert set(live.matching(None)) == set(final.ids)


# -- regressions -----------------------------------------------------------------------------
def test_save_through_another_spelling_of_its_own_path_keeps_other_writers_items(root, enc):
    alias = root.parent / "alias"
    alias.symlink_to(root)
    cat = Catalog.open(alias, enc)  # e.g. a kiosk configured with a symlinked path
    child = spawn(ADD_AND_MAYBE_COMPACT, root, "deltas", stdin=subprocess.DEVNULL)
    try:
        assert child.wait(timeout=60) == 0
    finally:
        kill_all([child])
    cat.save(root)  # its own store: a compaction that catches up first
    assert "other" in Catalog.open(root, enc)  # was: a stale base that erased "other"
    assert "other" in cat


def test_failed_automatic_compaction_does_not_fail_a_committed_change(root, enc, monkeypatch):
    import fai_infer.store.replica as catalog_module  # the store's policy and base writer

    monkeypatch.setattr(catalog_module, "COMPACT_MAX_DELTAS", 2)
    cat = Catalog.open(root, enc)

    def full_disk(*args, **kwargs):
        raise CatalogError(f"{root}: could not save the catalogue (No space left on device)")

    monkeypatch.setattr(catalog_module, "write_generation", full_disk)
    for item in ("x", "y", "z"):  # the 2nd and 3rd commits try to compact, and fail
        cat.add_embeddings([item], vec(item, enc.dim)[None])  # was: raised, yet committed
    assert {"x", "y", "z"} <= set(Catalog.open(root, enc).ids)
    assert len(cat.warnings) == 2 and "No space left" in cat.warnings[0]
    gen = cat._gen
    monkeypatch.undo()
    monkeypatch.setattr(catalog_module, "COMPACT_MAX_DELTAS", 2)
    cat.add_embeddings(["w"], vec("w", enc.dim)[None])  # the next commit compacts
    assert cat._gen != gen and not list((root / cat._gen).glob("delta-*"))
    assert {"x", "y", "z", "w"} <= set(Catalog.open(root, enc).ids)
