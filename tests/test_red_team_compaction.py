"""Issue 23, section 6: an automatic compaction inside a commit no longer holds the lock that
searches in the same process need (11.4 s of stalled searches at a million items)."""

from __future__ import annotations

import threading
import time

import pytest

import fai_infer.store.replica as replica_module
from fai_infer import Catalog, Encoder
from tests.helpers import write_products


def test_searches_go_on_while_a_commit_compacts(tmp_path, monkeypatch):
    write_products(tmp_path / "shop", 12)
    enc = Encoder()
    cat = Catalog.build(tmp_path / "shop" / "images", encoder=enc)
    cat.save(tmp_path / "cat")
    cat = Catalog.open(tmp_path / "cat", enc, live=True)
    monkeypatch.setattr(replica_module, "COMPACT_MAX_DELTAS", 1)  # compact on the next commit
    writing = threading.Event()
    real_write = replica_module.write_generation

    def slow_write(*args, **kwargs):  # a big catalogue: seconds of writing and fsync
        writing.set()
        time.sleep(2.0)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(replica_module, "write_generation", slow_write)
    committer = threading.Thread(target=cat.remove, args=(["p003"],))
    committer.start()
    assert writing.wait(30), "the commit never started compacting"
    t0 = time.perf_counter()
    hits = cat.similar("p001", k=3)
    waited = time.perf_counter() - t0
    committer.join()
    assert len(hits) == 3 and waited < 1.0, f"search waited {waited:.2f} s for the compaction"
    assert cat.replica.applied == 0 and "p003" not in cat  # compacted, and the removal is there
    again = Catalog.open(tmp_path / "cat", enc)
    assert "p003" not in again and len(again) == 11
