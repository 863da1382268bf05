"""Shared fixtures: small generated photos, a tiny really-trained model, and its ONNX export."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import OTHER_MODEL, catalog_of, write_products


def pytest_collection_modifyitems(items) -> None:
    """A test skipped without the shared photos reads them: mark it ``data``, so the marker
    and the skip never disagree (tests/helpers.py's needs_myntra says where they are)."""
    for item in items:
        for mark in item.iter_markers("skipif"):
            if "shared" in str(mark.kwargs.get("reason", "")):
                item.add_marker(pytest.mark.data)
                break


@pytest.fixture(scope="session")
def products(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("products")
    write_products(folder, 48)
    return folder


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, products) -> Path:
    """Two epochs of the real training loop on 48 generated photos (a few seconds)."""
    from train.__main__ import main

    out = tmp_path_factory.mktemp("run")
    main(["--data", str(products), "--out", str(out), "--image-size", "32", "--width", "0.125",
          "--epochs", "2", "--batch-size", "8", "--label-columns", "colour", "--embed-dim",
          "32", "--cache-dir", str(out / "cache"), "--holdout", "0.2", "--lr", "3e-3"])
    return out


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_run) -> Path:
    from export.onnx import export

    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export(tiny_run / "best.pt", out, log=lambda *a: None)
    return out


@pytest.fixture(scope="session")
def saved(tmp_path_factory) -> dict[str, Path]:
    """Two small catalogues: exact search, and HNSW (so index.hnsw exists)."""
    from fai_infer import Catalog, Encoder

    base = tmp_path_factory.mktemp("stores")
    write_products(base / "shop", 12)
    enc = Encoder(OTHER_MODEL)  # plumbing: the small model
    built = Catalog.build(base / "shop", base / "shop" / "metadata.csv", encoder=enc)
    built.save(base / "exact")
    catalog_of(enc, built.ids, built.paths, built.rows, built.embeddings,
            exact_below=4).save(base / "hnsw")
    return {"exact": base / "exact", "hnsw": base / "hnsw", "encoder": enc}


@pytest.fixture(scope="session")
def myntra_gallery():
    """Every third Myntra photo (~3,500, both splits) decoded and embedded once by the shipped
    model for every test that needs real embeddings (test_quality, test_runtime's recall):
    (catalogue, encoder, squares, val query rows, embeddings). Skips without the photos."""
    import numpy as np

    from fai_infer import Encoder
    from tests.helpers import MYNTRA
    from train.data import load_catalogue

    if not (MYNTRA / "styles.csv").is_file():
        pytest.skip(f"shared Myntra photos not found at {MYNTRA} (set FAI_MYNTRA to run this test)")
    cat = load_catalogue(MYNTRA)
    cat = cat.subset(list(range(0, len(cat), 3)))
    enc = Encoder()
    squares = np.stack([enc.prepare(p) for p in cat.paths])
    queries = np.array([i for i, s in enumerate(cat.splits) if s == "val"])
    return cat, enc, squares, queries, enc.embed_squares(squares)


# A real Milvus server shared by test_contract.py and test_milvus_server.py (started on first use).
from tests.milvus_fixtures import milvus_server  # noqa: E402,F401
