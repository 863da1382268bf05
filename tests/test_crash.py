"""A catalogue survives SIGKILL at any moment, and corruption is caught before hnswlib reads."""

import json
import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest

from fai_infer import Catalog, CatalogError, Encoder
from tests.helpers import OTHER_MODEL, ROOT, catalog_of, write_products

# The child kills itself at its Nth file-system step (write, fsync, rename, replace, unlink,
# truncate), N drawn by the test: every crash point of the commit protocol is reachable and a
# failing N replays exactly, where a random sleep before an outside kill was neither.
CRASH_AT_STEP = """
import os, signal, sys
_left = [None]
def arm():  # count from here: after the catalogue is open and the parent was told "ready"
    _left[0] = int(os.environ["FAI_CRASH_AT_STEP"])
def _step(fn):
    def wrapped(*args, **kwargs):
        if _left[0] is not None:
            _left[0] -= 1
            if _left[0] <= 0:
                os.kill(os.getpid(), signal.SIGKILL)
        return fn(*args, **kwargs)
    return wrapped
for _name in ("write", "fsync", "rename", "replace", "unlink", "ftruncate"):
    setattr(os, _name, _step(getattr(os, _name)))
"""

CHURN = CRASH_AT_STEP + """
import sys
from fai_infer import Catalog
cat = Catalog.open(sys.argv[1])
extra, mode = sys.argv[2], sys.argv[3]
print("ready", flush=True)
arm()
while True:
    if mode == "save":
        cat.save()
    elif "extra" in cat:
        cat.remove(["extra"])          # persists: a full atomic save
    else:
        cat.add([extra])               # persists too
"""


def crash_env(step: int) -> dict[str, str]:
    return {**os.environ, "FAI_CRASH_AT_STEP": str(step)}


@pytest.fixture()
def catalog_dir(tmp_path):
    write_products(tmp_path / "shop", 30)
    extra = write_products(tmp_path / "more", 1, seed=5)[0]
    extra = extra.rename(extra.with_name("extra.jpg"))
    cat = Catalog.build(tmp_path / "shop", tmp_path / "shop" / "metadata.csv",
                        encoder=Encoder(OTHER_MODEL))  # plumbing: the small model
    cat.save(tmp_path / "cat")
    return tmp_path / "cat", extra


@pytest.mark.soak
@pytest.mark.slow  # kills real processes at many points
@pytest.mark.parametrize("mode", ["save", "add-remove"])
def test_sigkill_at_many_points_leaves_a_whole_catalogue(catalog_dir, mode):
    root, extra = catalog_dir
    rng = random.Random(0)
    kills, states = 0, set()
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", CHURN, str(root), str(extra), mode],
                                cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                env=crash_env(rng.randint(1, 80)))
        assert proc.stdout.readline().strip() == "ready"
        proc.wait(timeout=300)
        kills += proc.returncode == -signal.SIGKILL  # killed mid-work, not dead of an error
        cat = Catalog.open(root)  # verifies every checksum
        assert len(cat) in (30, 31)
        assert ("extra" in cat) == (len(cat) == 31)
        assert cat.embeddings.shape == (len(cat), cat.encoder.dim)
        assert cat.similar(cat.ids[0], k=3)
        states.add((sorted(p.name for p in root.iterdir() if p.name.startswith("gen-"))[-1],
                    len(cat)))
    assert kills == 12  # every kill hit a live writer (a writer that died first is not a kill)
    assert len(states) > 1, states  # and the writers got work done between kills


def test_corrupted_or_truncated_files_are_detected_on_open(catalog_dir):
    root, _ = catalog_dir
    gen = next(root.glob("gen-*"))
    emb = gen / "embeddings.npy"
    data = bytearray(emb.read_bytes())
    data[-5] ^= 0xFF
    emb.write_bytes(bytes(data))
    with pytest.raises(CatalogError, match="corrupt"):
        Catalog.open(root)
    emb.write_bytes(bytes(data[:100]))
    with pytest.raises(CatalogError, match="truncated"):
        Catalog.open(root)


def test_hnsw_index_file_is_checked_before_hnswlib_reads_it(tmp_path):
    write_products(tmp_path / "shop", 30)
    enc = Encoder(OTHER_MODEL)
    built = Catalog.build(tmp_path / "shop", encoder=enc)
    cat = catalog_of(enc, built.ids, built.paths, built.rows, built.embeddings, exact_below=10)
    cat.save(tmp_path / "cat")
    index = next((tmp_path / "cat").glob("gen-*/index.hnsw"))
    index.write_bytes(index.read_bytes()[:64])
    with pytest.raises(CatalogError, match="truncated"):
        Catalog.open(tmp_path / "cat", enc)


def test_manifest_is_json_and_no_pickle_anywhere(catalog_dir):
    root, _ = catalog_dir
    gen = next(root.glob("gen-*"))
    manifest = json.loads((gen / "manifest.json").read_text())
    assert set(manifest["files"]) == {"embeddings.npy", "labels.npy", "ids.json", "paths.json",
                                      "metadata.json", "metadata_codes.npy"}
    np.load(gen / "embeddings.npy", allow_pickle=False)
    assert not list(root.rglob("*.pkl")) and not list(root.rglob("*.pickle"))


# -- SIGKILL during deltas and compaction ----------------------------------------------------
DELTA_CHURN = CRASH_AT_STEP + """
import os, random, sys, zlib
import numpy as np
from fai_infer import Catalog, Encoder
root, log, trial = sys.argv[1], sys.argv[2], int(sys.argv[3])
enc = Encoder(sys.argv[4])
cat = Catalog.open(root, enc)
rng = random.Random(trial)
fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

def note(text):  # one write per line: a kill leaves whole lines (the page cache survives it)
    os.write(fd, (text + "\\n").encode())

def vec(item):
    v = np.random.default_rng(zlib.crc32(item.encode())).normal(size=enc.dim)
    return v / np.linalg.norm(v)

print("ready", flush=True)
arm()
n = 0
while True:
    live, r, n = cat.ids, rng.random(), n + 1
    if r < 0.4 or len(live) < 20:
        ids = [f"t{trial}-{n}-{j}" for j in range(rng.randint(1, 6))]
        note("begin add " + " ".join(ids))
        cat.add_embeddings(ids, np.stack([vec(i) for i in ids]),
                           metadata=[{"v": f"a{n}"} for _ in ids])
    elif r < 0.7:
        ids = rng.sample(live, rng.randint(1, 5))
        note("begin remove " + " ".join(ids))
        cat.remove(ids)
    elif r < 0.85:
        ids = rng.sample(live, rng.randint(1, 5))
        note(f"begin update u{n} " + " ".join(ids))
        cat.update_metadata(ids, [{"v": f"u{n}"} for _ in ids])
    else:
        note("begin compact")
        cat.compact()
    note("end")
"""


def _state(cat) -> dict[str, str]:
    return {i: cat.get(i).metadata.get("v", "") for i in cat.ids}


def _apply_logged(state: dict[str, str], line: str) -> dict[str, str]:
    state = dict(state)
    op, *args = line.split()
    if op == "add":
        n = args[0].split("-")[1]
        state.update({i: f"a{n}" for i in args})
    elif op == "remove":
        for i in args:
            state.pop(i, None)
    elif op == "update":
        state.update({i: args[0] for i in args[1:] if i in state})
    return state


def _vec(item: str, dim: int) -> np.ndarray:
    import zlib

    v = np.random.default_rng(zlib.crc32(item.encode())).normal(size=dim)
    return v / np.linalg.norm(v)


@pytest.mark.soak
@pytest.mark.slow  # kills real processes at many points
def test_sigkill_during_deltas_and_compaction_keeps_exactly_the_committed_changes(tmp_path):
    from fai_infer.store.journal import writer_lock
    from tests.helpers import OTHER_MODEL

    enc = Encoder(OTHER_MODEL)
    root = tmp_path / "cat"
    seed = [f"seed{i}" for i in range(300)]
    cat = Catalog(enc, exact_below=100)  # HNSW, so compactions write index.hnsw too
    cat.add_embeddings(seed, np.stack([_vec(s, enc.dim) for s in seed]),
                       metadata=[{"v": "seed"} for _ in seed])
    cat.save(root)
    state = _state(cat)
    rng = random.Random(1)
    outcomes = {"before": 0, "after": 0}
    for trial in range(8):
        log = tmp_path / f"log{trial}"
        proc = subprocess.Popen([sys.executable, "-c", DELTA_CHURN, str(root), str(log),
                                 str(trial), str(OTHER_MODEL)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True,
                                env=crash_env(rng.randint(5, 400)))
        try:
            assert proc.stdout.readline().strip() == "ready"
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == -signal.SIGKILL, "the writer died of an error, not the crash"
        lines = log.read_text().splitlines() if log.exists() else []
        pending = None
        for line in lines:
            if line.startswith("begin "):
                pending = line[len("begin "):]
            else:
                assert line == "end" and pending is not None
                state, pending = _apply_logged(state, pending), None
        with writer_lock(root, timeout=2):  # the kernel released the dead child's lock
            pass
        got = Catalog.open(root, enc)  # verifies every checksum and every delta
        found = _state(got)
        if pending is not None and found != state:  # the last change may have landed
            state, outcome = _apply_logged(state, pending), "after"
        else:
            outcome = "before"
        assert found == state, f"trial {trial}: opened catalogue is no committed state"
        outcomes[outcome] += 1
        assert len(got) == len(state)
        for item in rng.sample(sorted(state), 10):
            assert float(got.vector(item) @ _vec(item, enc.dim)) > 0.9999
            assert got.similar_to_vector(_vec(item, enc.dim), k=1)[0].id == item
    assert sum(outcomes.values()) == 8 and len(state) > 0


def test_corrupted_or_truncated_delta_is_one_error_naming_it(tmp_path):
    from tests.helpers import OTHER_MODEL

    enc = Encoder(OTHER_MODEL)
    root = tmp_path / "cat"
    cat = Catalog(enc)
    cat.add_embeddings(["a", "b"], np.eye(2, enc.dim) + 0.1)
    cat.save(root)
    reader = Catalog.open(root, enc)
    for item in ("c", "d", "e"):
        cat.add_embeddings([item], _vec(item, enc.dim)[None], metadata=[{"k": item}])
    delta = root / cat._gen / "delta-000002"
    good = delta.read_bytes()
    for broken, word in ((good[:-7] + bytes([good[-7] ^ 0x01]) + good[-6:],
                          "corrupt"),
                         (good[:len(good) // 2], "corrupt"),
                         (good[:20], "not a catalogue delta")):
        delta.write_bytes(broken)
        for call in (lambda: Catalog.open(root, enc), reader.refresh):
            with pytest.raises(CatalogError) as info:
                call()
            message = str(info.value)
            assert "\n" not in message and "delta-000002" in message and word in message
    delta.write_bytes(good)
    assert reader.refresh() and set(reader.ids) == {"a", "b", "c", "d", "e"}


def test_missing_delta_before_later_ones_is_an_error_not_silent_loss(tmp_path):
    from tests.helpers import OTHER_MODEL

    enc = Encoder(OTHER_MODEL)
    root = tmp_path / "cat"
    cat = Catalog(enc)
    cat.add_embeddings(["a"], _vec("a", enc.dim)[None])
    cat.save(root)
    for item in ("b", "c", "d"):
        cat.add_embeddings([item], _vec(item, enc.dim)[None])
    (root / cat._gen / "delta-000002").unlink()
    with pytest.raises(CatalogError) as info:
        Catalog.open(root, enc)  # was: opened as {a, b}, dropping c and d without a word
    message = str(info.value)
    assert "\n" not in message and "delta-000002 is missing" in message
    assert "delta-000003" in message
