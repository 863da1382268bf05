"""The scale extra: indexing on a local Ray, serving from Milvus Lite, and their CLI and UI hooks.

Tests that need Ray or Milvus skip, naming the missing package, when the extra is not installed
(``make test`` installs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export.synthetic import scale_embeddings
from fai_infer import Catalog, CatalogError, Encoder
from fai_infer.index.search import exact_top_k
from tests.helpers import OTHER_MODEL, ROOT, write_products
from tests.helpers import listeners
from tests.ray_checks import LOOPBACK, same_catalogue

EXTRA = "the 'scale' extra is not installed (pip install -e '.[scale]'; make test installs it)"


def needs(module: str):
    return pytest.importorskip(module, reason=f"{module}: {EXTRA}")


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder()


# -- the runtime stays light ----------------------------------------------------------------
def test_runtime_and_cli_import_neither_ray_nor_milvus():
    code = ("import sys, fai_infer, fai_infer.cli.main, fai_infer.scale, fai_infer.scale.cli\n"
            "fai_infer.cli.main.build_parser()\n"
            "bad = [m for m in ('ray', 'pymilvus', 'milvus_lite', 'pyarrow', 'torch', 'gradio')"
            " if m in sys.modules]\nprint(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_missing_extra_is_one_line_naming_the_extra():
    from fai_infer.scale import require

    with pytest.raises(CatalogError, match=r"--ray needs the optional 'scale' extra.*\[scale\]"):
        require("no_such_module_fai", "--ray")


# -- Ray --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray():
    """One private 2-CPU Ray for the module (started once: it takes seconds)."""
    needs("ray")
    from fai_infer.scale.ray_index import ray_session

    before, path_before = listeners(), os.environ.get("PYTHONPATH")
    with ray_session(None, num_cpus=2) as ray:
        ray.listening_before_fai = before
        # the workers' PYTHONPATH is set only while Ray starts: a pip or subprocess this
        # process runs later must not inherit it (it made the wheel test's pip see fai installed)
        assert os.environ.get("PYTHONPATH") == path_before
        yield ray


@pytest.mark.slow
def test_a_local_ray_listens_on_loopback_only(local_ray):
    """Started after Ray was imported (as here): its servers still bind 127.0.0.1 only."""
    new = listeners() - local_ray.listening_before_fai
    assert new, "Ray opened no listening socket? (the check would prove nothing)"
    assert all(address in LOOPBACK for address, _ in new), sorted(new)


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """300 generated photos, a CSV, and three files that are not usable photos."""
    folder = tmp_path_factory.mktemp("shop")
    write_products(folder, 300, seed=3)
    (folder / "images" / "broken.jpg").write_bytes(b"not really a jpeg")
    (folder / "images" / "empty.png").write_bytes(b"")
    (folder / "images" / "cut.jpg").write_bytes((folder / "images" / "p001.jpg").read_bytes()[:90])
    return folder


@pytest.mark.slow
def test_ray_index_equals_the_local_indexer_even_when_a_worker_dies(local_ray, shop, encoder,
                                                                    tmp_path):
    from fai_infer.scale.ray_index import index_with_ray

    local = Catalog.build(shop, shop / "metadata.csv", encoder=encoder)
    marker = tmp_path / "killed-once"
    cat = index_with_ray(shop, shop / "metadata.csv", encoder=encoder, workers=2,
                         batch_size=32, shards=str(tmp_path / "shards"),
                         fault_marker=str(marker))
    assert marker.exists(), "no worker was killed: the test did not test a retry"
    assert len(cat) == 300 and len(cat.skipped) == 3
    same_catalogue(cat, local)
    import pyarrow.parquet as pq

    shards = pq.read_table(tmp_path / "shards")
    assert {"id", "embedding", "path", "metadata", "error"} <= set(shards.column_names)


@pytest.mark.slow
def test_ray_index_reads_a_list_of_paths(local_ray, shop, encoder, tmp_path):
    """A CSV of paths (relative to the list, one missing) with metadata columns of its own."""
    from fai_infer.scale.ray_index import index_with_ray

    rows = ["path,gender,price"] + [f"{shop.name}/images/p{i:03d}.jpg,{['Women', 'Men'][i % 2]},"
                                    f"{10 + i}" for i in range(40)] + [f"{shop.name}/gone.jpg,Men,1"]
    listing = shop.parent / "list.csv"
    listing.write_text("\n".join(rows) + "\n")
    cat = index_with_ray(listing, encoder=encoder, workers=1, batch_size=16)
    assert cat.ids == [f"p{i:03d}" for i in range(40)]
    assert cat.rows[3] == {"gender": "Men", "price": "13"}
    assert [s.path for s in cat.skipped] == [str((shop / "gone.jpg").absolute())]
    want = encoder.embed([shop / "images" / "p005.jpg"])[0]
    assert float(cat.embeddings[5] @ want) >= 0.9999


@pytest.mark.slow
def test_cli_index_with_ray(local_ray, shop, tmp_path, capsys):
    from fai_infer.cli.main import main

    out = tmp_path / "cat"
    code = main(["index", str(shop), "--metadata", str(shop / "metadata.csv"), "--out", str(out),
                 "--ray", "--ray-workers", "2", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["indexed"] == 300 and len(report["skipped"]) == 3
    assert len(Catalog.open(out)) == 300


# -- Milvus -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big(encoder, shop) -> Catalog:
    """3,000 items: real embeddings of the shop's photos padded with jittered copies, with text
    and numeric metadata (some prices not numbers) and held as a local exact catalogue."""
    real = encoder.embed(sorted((shop / "images").glob("p*.jpg"))[:300])
    emb = scale_embeddings(real, 3000, seed=2)
    ids = [f"i{i:04d}" for i in range(3000)]
    rows = [{"gender": ["Women", "Men", "Unisex"][i % 3], "colour": ["Red", "blue", "GREEN"][i % 5 % 3],
             "price": "n/a" if i % 17 == 0 else f"{(i * 7) % 120}.5"} for i in range(3000)]
    paths = [str(shop / "images" / f"p{i % 300:03d}.jpg") for i in range(3000)]
    cat = Catalog(encoder)
    cat.add_embeddings(ids, emb, paths, rows)
    assert cat.engine == "exact"
    return cat


@pytest.fixture(scope="module")
def milvus(big, tmp_path_factory):
    needs("pymilvus")
    needs("milvus_lite")
    from fai_infer.scale.milvus_catalog import MilvusCatalog, push

    uri = str(tmp_path_factory.mktemp("milvus") / "shop.db")
    report = push(big, uri, "shop")
    assert report["count"] == 3000
    cat = MilvusCatalog(uri, "shop", big.encoder)
    yield cat
    cat.close()


@pytest.mark.slow
def test_milvus_top10_equals_exact_search(milvus, big):
    rng = np.random.default_rng(0)
    found = total = 0
    for q in rng.integers(0, len(big), 60):
        want = [h.id for h in big.similar(big.ids[q], k=10)]
        got = milvus.similar(big.ids[q], k=10)
        found += len(set(want) & {h.id for h in got})
        total += 10
        assert big.ids[q] not in {h.id for h in got}
        mine = {h.id: h.score for h in big.similar(big.ids[q], k=10)}
        assert all(abs(h.score - mine[h.id]) < 1e-4 for h in got if h.id in mine)
    assert found / total >= 0.99, found / total


@pytest.mark.parametrize("where", [
    {"gender": "women"},
    {"gender": ["MEN", "unisex"], "colour": "red"},
    ["price<50", "colour!=Blue"],
    ["gender=Men", "gender=Women", "price>=100.5"],
    ["price<=0.5"],
])
@pytest.mark.slow
def test_milvus_filters_equal_local_filters(milvus, big, where):
    """Against the reference semantics (fai_infer.index.filters.passes) and exact search."""
    from fai_infer.index.filters import parse_where, passes

    clauses = parse_where(where)
    allowed = np.flatnonzero([passes(clauses, r) for r in big.rows])
    assert 0 < len(allowed) < len(big)
    for q in (0, 7, 1234, 2999):
        vec = big.embeddings[q]
        want = [big.ids[r] for r in exact_top_k(big.embeddings, vec, 10, allowed)[0]]
        got = [h.id for h in milvus.similar_to_vector(vec, k=10, where=where)]
        assert got == want, (where, got, want)


@pytest.mark.slow
def test_milvus_refuses_unknown_columns_and_values_by_name(milvus):
    with pytest.raises(ValueError, match="'gendr'.*did you mean gender"):
        milvus.similar("i0001", where={"gendr": "Men"})
    with pytest.raises(ValueError, match="colour='rde': no item has this value.*did you mean Red"):
        milvus.similar("i0001", where={"colour": "rde"})


@pytest.mark.slow
def test_milvus_basket_equals_local_basket(milvus, big):
    basket = ["i0003", "i0100", "i2500"]
    for mode in ("cover", "centroid"):
        want = [(h.id, h.source) for h in big.similar_to_basket(basket, k=10, mode=mode)]
        got = [(h.id, h.source) for h in milvus.similar_to_basket(basket, k=10, mode=mode)]
        assert got == want, mode


@pytest.mark.slow
def test_milvus_add_and_remove_are_visible_to_the_next_query(milvus, big, shop, tmp_path):
    first = milvus.similar("i0010", k=1)[0].id
    assert milvus.remove([first, "nope"]) == ["nope"]
    assert first not in milvus and first not in {h.id for h in milvus.similar("i0010", k=10)}
    photo = tmp_path / "new_item.jpg"
    photo.write_bytes((shop / "images" / "p042.jpg").read_bytes())
    assert milvus.add([photo], metadata={"new_item": {"gender": "Men", "colour": "Red"}}) == []
    top = milvus.similar(str(photo), k=1, where={"gender": "men"})[0]
    assert top.id == "new_item" and top.score > 0.9999 and top.metadata["colour"] == "Red"
    milvus.add_embeddings([first], big.embeddings[big.ids.index(first)][None] * 3.0,
                          [big.paths[0]], [big.rows[big.ids.index(first)]])
    assert milvus.similar("i0010", k=1)[0].id == first
    assert milvus.remove(["new_item"]) == [] and len(milvus) == 3000


@pytest.mark.slow
def test_milvus_refuses_another_models_collection(milvus):
    from fai_infer.scale.milvus_catalog import MilvusCatalog

    with pytest.raises(CatalogError, match="indexed with model .* but the loaded model"):
        MilvusCatalog(milvus.uri, "shop", Encoder(OTHER_MODEL))
    with pytest.raises(CatalogError, match="no such collection"):
        MilvusCatalog(milvus.uri, "nothing_here", milvus.encoder)


@pytest.mark.slow
def test_cli_push_and_query_milvus(big, tmp_path, capsys):
    needs("pymilvus")
    needs("milvus_lite")
    from fai_infer.cli.main import main

    small = Catalog(big.encoder)
    small.add_embeddings(big.ids[:300], big.embeddings[:300], big.paths[:300], big.rows[:300])
    small.save(tmp_path / "cat")
    db = str(tmp_path / "cli.db")
    assert main(["push", str(tmp_path / "cat"), "--milvus", db, "--collection", "c1"]) == 0
    assert "pushed 300 items" in capsys.readouterr().out
    assert main(["query", "--milvus", db, "--collection", "c1", "--id", "i0002", "-k", "5",
                 "--where", "gender=Unisex", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)[0]["hits"]
    want = [h.id for h in small.similar("i0002", k=5, where={"gender": "Unisex"})]
    assert [h["id"] for h in hits] == want
    assert main(["query", "--milvus", db, "--collection", "c1", "--id", "i0002",
                 "--where", "colr=red"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such metadata column" in err[0]
    assert main(["push", str(tmp_path / "nope"), "--milvus", db]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_pushed_collection_answers_a_new_process(big, tmp_path):
    """fai push in one process, fai query in the next: the collection must be loaded again."""
    needs("pymilvus")
    needs("milvus_lite")
    small = Catalog(big.encoder)
    small.add_embeddings(big.ids[:200], big.embeddings[:200], big.paths[:200], big.rows[:200])
    small.save(tmp_path / "cat")
    db, model = str(tmp_path / "p.db"), str(big.encoder.path)

    def fai(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "fai_infer", *args, "--model", model],
                              capture_output=True, text=True, cwd=ROOT, timeout=180)

    assert fai("push", str(tmp_path / "cat"), "--milvus", db).returncode == 0
    res = fai("query", "--milvus", db, "--id", "i0003", "-k", "3", "--json")
    assert res.returncode == 0, res.stderr
    want = [h.id for h in small.similar("i0003", k=3)]
    assert [h["id"] for h in json.loads(res.stdout)[0]["hits"]] == want


@pytest.mark.slow
def test_shop_page_serves_a_milvus_collection(milvus, big):
    pytest.importorskip("gradio", reason="the shop page needs the ui extra")
    from ui.app import AppConfig, ShopDemo, load_catalog

    cat, label = load_catalog(AppConfig(milvus=milvus.uri, collection="shop"))
    demo = ShopDemo(cat, label, 5)
    assert "3000 items" in demo.header() and list(demo.filters) == big.display()["filters"]
    chosen = [["Men"] if f == "gender" else [] for f in demo.filters]  # one list per filter
    gallery, ids = demo.browse(*chosen)
    assert ids and all(cat.get(i).metadata["gender"] == "Men" for i in ids)
    none = [[] for _ in demo.filters]
    cards, status = demo.similar_to_item("i0005", 5, *none)
    assert len(cards) == 5 and "More like" in status
    items, cards, _ = demo.basket_view(["i0005", "i0006"], 4, *none)
    assert len(items) == 2 and len(cards) == 4
