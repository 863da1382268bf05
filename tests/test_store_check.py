"""Catalogues whose checksums are valid but whose structure is not are refused with one
CatalogError line; interrupted first saves count as empty; full or read-only storage is one line."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fai_infer import Catalog, CatalogError, Encoder
from fai_infer.store.generations import CURRENT
from tests.helpers import OTHER_MODEL, ROOT, catalog_of, current_gen, reseal, write_products




def edit_manifest(gen: Path, change) -> None:
    m = json.loads((gen / "manifest.json").read_text())
    change(m)
    reseal(gen, m)


def edit_array(gen: Path, name: str, change) -> None:
    arr = np.load(gen / name)
    np.save(gen / name, change(arr))
    reseal(gen)


def edit_json(gen: Path, name: str, change) -> None:
    data = json.loads((gen / name).read_text())
    (gen / name).write_text(json.dumps(change(data)))
    reseal(gen)


def nan_row(e):
    e = e.copy()
    e[3, 0] = np.nan
    return e


def dup_label(a):
    a = a.copy()
    a[1] = a[0]
    return a


REFUSED = {
    "manifest is a list": ("exact", lambda g: reseal(g, [1, 2, 3]), "manifest"),
    "manifest misses next_label": ("exact", lambda g: edit_manifest(
        g, lambda m: m.pop("next_label")), "next_label"),
    "count is not an integer": ("exact", lambda g: edit_manifest(
        g, lambda m: m.update(count="12")), "count"),
    "manifest does not list labels": ("exact", lambda g: edit_manifest(
        g, lambda m: m["files"].pop("labels.npy")), "labels.npy"),
    "labels shorter than items": ("exact", lambda g: edit_array(
        g, "labels.npy", lambda a: a[:-2]), "labels"),
    "duplicate labels": ("exact", lambda g: edit_array(g, "labels.npy", dup_label), "repeat"),
    "2-D labels": ("exact", lambda g: edit_array(
        g, "labels.npy", lambda a: a.reshape(-1, 1)), "labels"),
    "labels beyond next_label": ("exact", lambda g: edit_array(
        g, "labels.npy", lambda a: a + 1000), "outside"),
    "NaN embeddings": ("exact", lambda g: edit_array(g, "embeddings.npy", nan_row), "NaN"),
    "non-unit embeddings": ("exact", lambda g: edit_array(
        g, "embeddings.npy", lambda e: e * 3), "unit"),
    "float64 embeddings": ("exact", lambda g: edit_array(
        g, "embeddings.npy", lambda e: e.astype(np.float64)), "float32"),
    "ids is an object": ("exact", lambda g: edit_json(g, "ids.json", lambda it: {"a": it}),
                         "ids.json"),
    "duplicate ids": ("exact", lambda g: edit_json(
        g, "ids.json", lambda it: ["same"] * len(it)), "repeats an id"),
    "paths shorter than ids": ("exact", lambda g: edit_json(
        g, "paths.json", lambda it: it[:-1]), "paths.json"),
    "metadata values not strings": ("exact", lambda g: edit_json(
        g, "metadata.json", lambda m: dict(m, values={c: [1] for c in m["columns"]})),
        "metadata.json"),
    "metadata codes past the values": ("exact", lambda g: edit_array(
        g, "metadata_codes.npy", lambda a: a + 1000), "point past"),
    "unlisted index.hnsw": ("exact", lambda g: (g / "index.hnsw").write_bytes(b"x" * 64),
                            "does not list"),
    "absurd HNSW capacity": ("hnsw", lambda g: edit_manifest(
        g, lambda m: m.update(hnsw_capacity=10**12)), "capacity"),
    "negative deleted count": ("hnsw", lambda g: edit_manifest(
        g, lambda m: m.update(hnsw_deleted=-5)), "deleted"),
    "index.hnsw holds other items": ("hnsw", lambda g: edit_manifest(
        g, lambda m: m.update(hnsw_deleted=3)), "index.hnsw"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_valid_checksums_wrong_structure_is_one_catalog_error(saved, tmp_path, case):
    kind, mutate, words = REFUSED[case]
    root = tmp_path / "cat"
    shutil.copytree(saved[kind], root)
    mutate(current_gen(root))
    with pytest.raises(CatalogError) as err:
        Catalog.open(root, saved["encoder"])
    message = str(err.value)
    assert "\n" not in message and str(root) in message and words in message, message


def test_an_interrupted_first_save_counts_as_empty(saved, tmp_path):
    root = tmp_path / "cat"
    (root / ".tmp-0123abcd").mkdir(parents=True)
    (root / ".tmp-0123abcd" / "embeddings.npy").write_bytes(b"half")
    (root / f"{CURRENT}.tmp").write_text("gen-000001\n")
    with pytest.raises(CatalogError, match="not a catalogue"):
        Catalog.open(root, saved["encoder"])
    cat = Catalog.open(saved["exact"], saved["encoder"])
    cat.save(root)  # no "directory is not empty" refusal
    assert len(Catalog.open(root, saved["encoder"])) == 12
    assert sorted(p.name for p in root.iterdir()) == [CURRENT, "LOCK", "gen-000001"]


def test_disk_full_is_one_line_and_leaves_no_partial_generation(saved, tmp_path, monkeypatch):
    root = tmp_path / "cat"
    shutil.copytree(saved["exact"], root)
    cat = Catalog.open(root, saved["encoder"])
    before = sorted(p.name for p in root.iterdir())

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(CatalogError, match="No space left on device.*unchanged") as err:
        cat.save()
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in root.iterdir()) == before
    monkeypatch.undo()
    assert len(Catalog.open(root, saved["encoder"])) == 12


def test_fai_index_checks_the_output_before_encoding(tmp_path):
    write_products(tmp_path / "shop", 3)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for out, words in ((blocker / "cat", "cannot write"), ("/sys/fai-catalogue", "cannot write"),
                       (blocker, "not a catalogue directory")):
        res = subprocess.run([sys.executable, "-m", "fai_infer", "index", str(tmp_path / "shop"),
                              "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
        assert res.returncode == 1 and words in res.stderr, res.stderr
        assert "indexing" not in res.stderr and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_ui_cache_follows_the_photo_folder(saved, tmp_path):
    pytest.importorskip("gradio")
    from ui.app import AppConfig, load_catalog

    shop = tmp_path / "shop"
    photos = write_products(shop, 6, csv_name=None)
    cfg = AppConfig(catalog=str(shop), cache_dir=str(tmp_path / "cache"),
                    model=str(OTHER_MODEL))
    first, _ = load_catalog(cfg, log=lambda *a: None)
    photos[0].unlink()
    write_products(tmp_path / "more", 1, seed=3)[0].rename(shop / "images" / "new.jpg")
    second, _ = load_catalog(cfg, log=lambda *a: None)
    assert "p000" in first and "p000" not in second and "new" in second
