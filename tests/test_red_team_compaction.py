"""Issue 23, section 6: an automatic compaction inside a commit no longer holds the lock that
searches in the same process need (11.4 s of stalled searches at a million items)."""

from __future__ import annotations

import threading

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
    writing, release = threading.Event(), threading.Event()
    real_write = replica_module.write_generation

    def held_write(*args, **kwargs):  # a big catalogue: writing and fsync take a long while
        writing.set()
        assert release.wait(120), "the test never let the compaction finish"
        return real_write(*args, **kwargs)

    monkeypatch.setattr(replica_module, "write_generation", held_write)
    committer = threading.Thread(target=cat.remove, args=(["p003"],))
    committer.start()
    assert writing.wait(60), "the commit never started compacting"
    found: list = []
    searcher = threading.Thread(target=lambda: found.extend(cat.similar("p001", k=3)))
    searcher.start()
    searcher.join(60)  # the compaction is held until the search is done or given up on
    searched_during_compaction = not searcher.is_alive()
    release.set()
    searcher.join()
    committer.join()
    assert searched_during_compaction, "the search waited for the compaction to finish"
    assert len(found) == 3
    assert cat.replica.applied == 0 and "p003" not in cat  # compacted, and the removal is there
    again = Catalog.open(tmp_path / "cat", enc)
    assert "p003" not in again and len(again) == 11
