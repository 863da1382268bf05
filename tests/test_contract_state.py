"""Hidden state in the catalogue contract (issue 32 part 1), on the local store: a page's display
choice stays the page's (never written, never reverted by another process), the catalogue's own
choice is stored at once, the match scale is the writer's (on the HNSW path too), and a cached
index that cannot be used is re-indexed with a reason.

Writers in other processes are real processes (``subprocess``); nothing sleeps."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fai_infer import Catalog, Encoder
from fai_infer.store.generations import current_generation_name, peek_manifest
from tests.helpers import OTHER_MODEL, ROOT, catalog_of, write_products

N = 60
PAGE = {"filters": ["gender"], "caption": ["colour"]}


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(OTHER_MODEL)


def stored_shop(encoder: Encoder, root) -> None:
    rng = np.random.default_rng(5)
    ids = [f"i{i:03d}" for i in range(N)]
    rows = [{"name": f"Item {i}", "colour": ["Red", "Blue", "Green"][i % 3],
             "gender": ["Men", "Women"][i % 2]} for i in range(N)]
    cat = catalog_of(encoder, ids, [""] * N, rows, rng.normal(size=(N, encoder.dim)))
    cat.set_display(filters=["colour"], caption=["name"])  # the catalogue's own choice
    cat.save(root)


def page(cat: Catalog):
    from ui.service import ShopService

    return ShopService(cat, "shop", 5, filters=PAGE["filters"], caption=PAGE["caption"])


def manifest_display(root) -> dict:
    return peek_manifest(root).get("display", {})


def test_a_pages_choice_survives_another_process_compacting(encoder, tmp_path):
    root = tmp_path / "cat"
    stored_shop(encoder, root)
    service = page(Catalog.open(root, encoder, live=True))
    before = current_generation_name(root)
    code = ("import sys, numpy as np\nfrom fai_infer import Catalog\n"
            "cat = Catalog.open(sys.argv[1])\n"
            "cat.add_embeddings(['elsewhere'], np.ones((1, cat.encoder.dim)))\n"
            "cat.compact()\n")
    res = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True,
                         cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, timeout=300)
    assert res.returncode == 0, res.stderr
    assert current_generation_name(root) != before  # the other process did compact
    cards, _ = service.search_photo("i004", 3)  # live: the page catches up first
    assert "elsewhere" in service.cat
    assert list(service.filters) == PAGE["filters"] and service.caption_columns == PAGE["caption"]
    assert [c["name"] for c in cards] == [service.cat.get(c["id"]).metadata["colour"]
                                          for c in cards]
    assert service.cat.display() == {"filters": ["colour"], "caption": ["name"]}
    assert manifest_display(root) == {"filters": ["colour"], "caption": ["name"]}


def test_the_pages_own_commit_compacts_without_writing_its_choice(encoder, tmp_path,
                                                                   monkeypatch):
    import fai_infer.store.replica as replica

    root = tmp_path / "cat"
    stored_shop(encoder, root)
    service = page(Catalog.open(root, encoder, live=True))
    before = current_generation_name(root)
    monkeypatch.setattr(replica, "COMPACT_MIN_ROWS", 1)  # this commit is due to compact
    rng = np.random.default_rng(9)
    service.cat.add_embeddings([f"new{i}" for i in range(N)], rng.normal(size=(N, encoder.dim)))
    assert current_generation_name(root) != before and not service.cat.warnings
    assert manifest_display(root) == {"filters": ["colour"], "caption": ["name"]}
    assert list(service.filters) == PAGE["filters"]


def test_set_display_is_stored_at_once_for_every_process(encoder, tmp_path):
    root = tmp_path / "cat"
    stored_shop(encoder, root)
    Catalog.open(root, encoder).set_display(filters=["gender"])
    again = Catalog.open(root, encoder)
    assert again.display() == {"filters": ["gender"], "caption": ["name"]}
    again.add_embeddings(["x"], np.ones((1, encoder.dim)))
    again.compact()  # another object's compaction keeps it: it is the catalogue's
    assert manifest_display(root)["filters"] == ["gender"]


def test_the_scale_a_writer_stores_on_the_hnsw_path_is_what_a_fit_gives(encoder):
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(8, encoder.dim))
    vectors = np.repeat(centres, 40, axis=0) + 0.3 * rng.normal(size=(320, encoder.dim))
    cat = catalog_of(encoder, [f"h{i:03d}" for i in range(320)], [""] * 320,
                     [{} for _ in range(320)], vectors, exact_below=32)
    assert cat.engine == "hnsw"
    cat.remove(["h001", "h002", "h100"])
    cat.add_embeddings(["h050", "extra"], vectors[[7, 8]])
    stored = cat.match_scale().neighbour_scores
    refit = cat._fit_scale(None).neighbour_scores  # the same searches, made on demand
    assert len(stored) == len(refit) and np.abs(stored - refit).max() < 1e-3


def test_a_fresh_process_has_the_scale_without_fitting(encoder, tmp_path):
    root = tmp_path / "cat"
    stored_shop(encoder, root)
    writer = Catalog.open(root, encoder)
    writer.add_embeddings(["twin"], writer.vector("i010")[None])  # a delta, not compacted
    fresh = Catalog.open(root, encoder)
    fresh._fit_scale = lambda colour: pytest.fail("a query fitted the scale")
    best = fresh.similar("i010", k=1)[0]
    assert best.id == "twin" and best.match == "very close"
    assert np.array_equal(fresh.match_scale().neighbour_scores,
                          writer.match_scale().neighbour_scores)
    assert fresh.wait_for_scales(timeout=0)  # and none is being fitted behind its back


def test_an_unusable_cached_index_is_rebuilt_with_a_reason(tmp_path):
    from ui.service import AppConfig, load_catalog

    write_products(tmp_path / "shop", 4, size=64)
    cfg = AppConfig(catalog=str(tmp_path / "shop" / "images"), model=str(OTHER_MODEL),
                    cache_dir=str(tmp_path / "cache"))
    said: list[str] = []
    cat, _ = load_catalog(cfg, log=said.append)
    assert len(cat) == 4 and said and "first start" in said[-1]
    (cat.root / str(current_generation_name(cat.root)) / "ids.json").write_text(json.dumps([]))
    said.clear()
    again, _ = load_catalog(cfg, log=said.append)
    assert len(again) == 4
    assert len(said) == 1 and "cannot be used" in said[0] and "indexing again" in said[0]
