"""Shared fixtures: small generated photos, a tiny really-trained model, and its ONNX export."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from export.synthetic import generated_squares

ROOT = Path(__file__).resolve().parent.parent
MYNTRA = Path(os.environ.get("FAI_MYNTRA", ROOT.parent / "shared" / "data" / "myntra"))
SHIPPED = ROOT / "models" / "fai-default.onnx"
OTHER_MODEL = ROOT / "models" / "fai-small-64-v2.int8.onnx"  # another model: catalogues refuse it

needs_myntra = pytest.mark.skipif(
    not (MYNTRA / "styles.csv").is_file(),
    reason=f"shared Myntra photos not found at {MYNTRA} (set FAI_MYNTRA to run this test)")


def write_products(folder: Path, n: int, size: int = 48, seed: int = 0,
                   csv_name: str | None = "metadata.csv") -> list[Path]:
    """n generated product JPEGs (portrait 3:4) + a CSV with split and a colour label."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    squares = generated_squares(size, n, seed)
    paths, rows = [], []
    for i, sq in enumerate(squares):
        portrait = np.full((size * 4 // 3, size, 3), 255, np.uint8)
        portrait[size // 6 : size // 6 + size] = sq
        path = folder / "images" / f"p{i:03d}.jpg"
        cv2.imwrite(str(path), portrait[..., ::-1])
        paths.append(path)
        blob = sq.reshape(-1, 3)[sq.reshape(-1, 3).min(1) < 200]
        colour = ["red", "green", "blue"][int(np.argmax(blob.mean(0)))] if len(blob) else "none"
        rows.append({"id": path.stem, "split": "val" if i % 6 == 0 else "train",
                     "colour": colour, "gender": ["Women", "Men"][i % 2]})
    if csv_name:
        write_csv(folder / csv_name, rows)
    return paths


def write_csv(path: Path, rows: list[dict]) -> Path:
    """A CSV with the first row's keys as its columns."""
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


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


def catalog_of(encoder, ids, paths, rows, vectors, exact_below: int | None = None):
    """An in-memory catalogue of vectors made elsewhere (through the public add_embeddings)."""
    from fai_infer import Catalog
    from fai_infer.search import EXACT_BELOW

    cat = Catalog(encoder, exact_below=EXACT_BELOW if exact_below is None else exact_below)
    cat.add_embeddings(ids, vectors, paths, rows)
    return cat
