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


# A real Milvus server shared by test_contract.py and test_milvus_server.py (started on first use).
from tests.milvus_fixtures import milvus_server  # noqa: E402,F401
