"""A catalogue survives SIGKILL at any moment, and corruption is caught before hnswlib reads."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fai_infer import Catalog, CatalogError, Encoder
from tests.conftest import catalog_of, ROOT, write_products

CHURN = """
import sys
from fai_infer import Catalog
cat = Catalog.open(sys.argv[1])
extra, mode = sys.argv[2], sys.argv[3]
print("ready", flush=True)
while True:
    if mode == "save":
        cat.save()
    elif "extra" in cat:
        cat.remove(["extra"])          # persists: a full atomic save
    else:
        cat.add([extra])               # persists too
"""


@pytest.fixture()
def catalog_dir(tmp_path):
    write_products(tmp_path / "shop", 30)
    extra = write_products(tmp_path / "more", 1, seed=5)[0]
    extra = extra.rename(extra.with_name("extra.jpg"))
    cat = Catalog.build(tmp_path / "shop", tmp_path / "shop" / "metadata.csv",
                        encoder=Encoder())
    cat.save(tmp_path / "cat")
    return tmp_path / "cat", extra


@pytest.mark.parametrize("mode", ["save", "add-remove"])
def test_sigkill_at_many_points_leaves_a_whole_catalogue(catalog_dir, mode):
    root, extra = catalog_dir
    rng = random.Random(0)
    kills = 0
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", CHURN, str(root), str(extra), mode],
                                cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        cat = Catalog.open(root)  # verifies every checksum
        assert len(cat) in (30, 31)
        assert ("extra" in cat) == (len(cat) == 31)
        assert cat.embeddings.shape == (len(cat), cat.encoder.dim)
        assert cat.similar(cat.ids[0], k=3)
    assert kills == 12


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
    enc = Encoder()
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
