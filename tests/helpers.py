"""Helpers shared by the tests (not fixtures: those are in conftest.py): paths, generated
product photos and CSVs, an in-memory catalogue of given vectors. Tests import from here, never
from one another."""

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


def catalog_of(encoder, ids, paths, rows, vectors, exact_below: int | None = None):
    """An in-memory catalogue of vectors made elsewhere (through the public add_embeddings)."""
    from fai_infer import Catalog
    from fai_infer.search import EXACT_BELOW

    cat = Catalog(encoder, exact_below=EXACT_BELOW if exact_below is None else exact_below)
    cat.add_embeddings(ids, vectors, paths, rows)
    return cat


TYPES = ["Vest top", "Bra", "Trousers", "Dress", "Sweater", "Sneakers", "Bag"]


def hm_rows(n: int = 120) -> list[dict[str, str]]:
    """The shape of H&M's articles.csv: ids in article_id, codes before names, a description."""
    return [{"article_id": f"0{108775015 + i}", "product_code": str(108775 + i // 3),
             "prod_name": f"Strap top {i}", "product_type_no": str(253 + i % 7),
             "product_type_name": TYPES[i % 7], "graphical_appearance_no": str(1010016 + i % 5),
             "graphical_appearance_name": ["Solid", "Stripe", "Denim"][i % 3],
             "colour_group_code": str(9 + i % 9), "colour_group_name": f"Colour {i % 9}",
             "perceived_colour_value_id": str(i % 4), "index_code": "ABCDEF"[i % 6],
             "index_name": ["Ladieswear", "Menswear", "Divided"][i % 3],
             "section_name": f"Section {i % 11}", "garment_group_name": f"Group {i % 4}",
             "department_name": f"Dept {i % 20}", "season": ["SS", "AW"][i % 2],
             "detail_desc": f"Jersey top with narrow shoulder straps, style {i}"}
            for i in range(n)]
