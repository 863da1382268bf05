"""python -m train.evaluate: retrieval quality on a labelled catalogue, beside raw pixels.

Queries are the val photos (or ``--split holdout``: the part of train that training holds out,
where recipe choices are made), the gallery is the whole catalogue, the query itself left out.
P@1 and P@10 count neighbours of the same articleType, and of the same articleType+baseColour.

``--shopper`` adds a second table: the same queries re-shot as synthetic shopper photos
(``train/shopper_photos.py``: clutter, tilt, lamp, blur, JPEG) searched against the clean
catalogue; item@k is how often the photographed item itself comes back in the top k.

Works on a training checkpoint (torch) or on an exported ONNX file (the runtime path), so the
int8 export's loss can be measured on exactly the same table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fai_infer.preprocess import PreprocessSpec, square_resize
from train.data import decode_all, holdout_mask, load_catalogue
from train.metrics import (l2_normalise, label_codes, pixel_baseline, pixel_features,
                           retrieval_table, shopper_table)
from train.shopper_photos import shopper_photos

SHOPPER_PHOTO_SIZE = 224  # distort at camera-like resolution, then preprocess as the runtime


def checkpoint_embedder(path: str) -> tuple[PreprocessSpec, Callable[[np.ndarray], np.ndarray]]:
    """Load a training checkpoint once -> (its preprocessing, squares -> embeddings)."""
    import torch

    from train.checkpoint import load_checkpoint
    from train.data import to_float

    model, spec, _ = load_checkpoint(path)

    def embed(squares: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([model.embed(to_float(torch.from_numpy(squares[i : i + 256])))
                                   .numpy() for i in range(0, len(squares), 256)])

    return spec, embed


def onnx_embedder(path: str) -> tuple[PreprocessSpec, Callable[[np.ndarray], np.ndarray]]:
    """The runtime's encoder -> (its preprocessing, squares -> embeddings)."""
    from fai_infer.encoder import Encoder

    encoder = Encoder(path)

    def embed(squares: np.ndarray) -> np.ndarray:
        return np.concatenate([encoder.embed_squares(squares[i : i + 256])
                               for i in range(0, len(squares), 256)])

    return encoder.spec, embed


def query_indices(cat, split: str, holdout_fraction: float = 0.1) -> np.ndarray:
    """Rows whose photos are the queries: a CSV split, or 'holdout' (part of train)."""
    if split == "holdout":
        is_train = np.array([s == "train" for s in cat.splits])
        return np.flatnonzero(is_train & holdout_mask(cat.ids, holdout_fraction))
    return np.array([i for i, s in enumerate(cat.splits) if s == split], dtype=np.int64)


def shopper_squares(cat, queries: np.ndarray, size: int, workers: int,
                    cache_dir: str | None) -> np.ndarray:
    """The query photos re-shot as synthetic shopper photos, preprocessed to ``size``."""
    big, _ = decode_all([cat.paths[i] for i in queries], PreprocessSpec(size=SHOPPER_PHOTO_SIZE),
                        workers, cache_dir, desc="decode queries")
    shots = shopper_photos(big, [cat.ids[i] for i in queries])
    spec = PreprocessSpec(size=size)
    return np.stack([square_resize(s, spec) for s in shots])


def evaluate_splits(model: str, data: str, csv: str | None = None,
                    splits: Sequence[str] = ("val",),
                    columns: tuple[str, str] = ("articleType", "baseColour"), workers: int = 2,
                    cache_dir: str | None = ".cache", shopper: bool = False,
                    holdout_fraction: float = 0.1) -> dict[str, dict]:
    """One result per split; the catalogue is decoded and embedded once for all of them."""
    cat = load_catalogue(data, csv)
    spec, embed = onnx_embedder(model) if model.endswith(".onnx") else checkpoint_embedder(model)
    squares, errors = decode_all(cat.paths, spec, workers, cache_dir, desc="decode catalogue")
    good = [i for i, e in enumerate(errors) if not e]
    cat, squares = cat.subset(good), squares[good]
    first, second = columns
    labels = {first: label_codes(cat.column(first)),
              f"{first}+{second}": label_codes(cat.column(first), cat.column(second))}
    emb = embed(squares)
    pix_spec = PreprocessSpec(size=max(32, spec.size))
    pix_squares = squares if pix_spec.size == spec.size else decode_all(
        cat.paths, pix_spec, workers, cache_dir)[0]
    gallery_pixels = pixel_features(pix_squares)
    centre = gallery_pixels.mean(axis=0)
    pixels = l2_normalise(gallery_pixels - centre)
    results = {}
    for split in splits:
        queries = query_indices(cat, split, holdout_fraction)
        if len(queries) == 0:
            raise SystemExit(f"no '{split}' photos in {data}")
        rows = {"model": retrieval_table(emb, queries, labels),
                "raw pixels 32x32": retrieval_table(pixels, queries, labels)}
        result = {"model_file": model, "data": data, "split": split,
                  "queries": int(len(queries)), "gallery": int(len(cat)), "table": rows}
        if shopper:
            shots = shopper_squares(cat, queries, spec.size, workers, cache_dir)
            pix_shots = pixel_baseline(np.stack([square_resize(s, pix_spec) for s in shots]),
                                       centre=centre)
            result["shopper"] = {
                "model": shopper_table(emb, queries, embed(shots), labels),
                "raw pixels 32x32": shopper_table(pixels, queries, pix_shots, labels)}
        results[split] = result
    return results


def evaluate(model: str, data: str, csv: str | None = None, split: str = "val",
             columns: tuple[str, str] = ("articleType", "baseColour"), workers: int = 2,
             cache_dir: str | None = ".cache", shopper: bool = False,
             holdout_fraction: float = 0.1) -> dict:
    return evaluate_splits(model, data, csv, (split,), columns, workers, cache_dir, shopper,
                           holdout_fraction)[split]


def format_table(result: dict, key: str = "table") -> str:
    rows = result[key]
    cols = list(next(iter(rows.values())))
    head = "| features | " + " | ".join(cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for name, vals in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{vals[c]:.3f}" for c in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--checkpoint", help="RUN/best.pt from python -m train")
    g.add_argument("--model", help="an exported .onnx file (fp32 or int8)")
    p.add_argument("--data", default="../shared/data/myntra", help="labelled catalogue folder")
    p.add_argument("--csv", default=None, help="metadata CSV (default: found in --data)")
    p.add_argument("--split", default="val",
                   help="which split's photos are the queries ('holdout': the part of train "
                   "that training holds out, for recipe choices)")
    p.add_argument("--holdout-fraction", type=float, default=0.1,
                   help="with --split holdout: the fraction training held out")
    p.add_argument("--shopper", action="store_true",
                   help="also search with synthetic shopper photos of the queries")
    p.add_argument("--columns", default="articleType,baseColour",
                   help="two label columns: the type, and the second for type+second")
    p.add_argument("--cache-dir", default=".cache", help="decoded-photo cache")
    p.add_argument("--json", default=None, help="write the result here (default: beside the "
                   "checkpoint as evaluate.json)")
    a = p.parse_args(argv)
    if not Path(a.data).is_dir():
        raise SystemExit(f"--data {a.data}: no such catalogue folder")
    model = a.checkpoint or a.model
    first, second = [c.strip() for c in a.columns.split(",")][:2]
    result = evaluate(model, a.data, a.csv, a.split, (first, second), cache_dir=a.cache_dir,
                      shopper=a.shopper, holdout_fraction=a.holdout_fraction)
    print(f"{result['queries']} {a.split} queries against {result['gallery']} photos "
          f"(query left out)\n" + format_table(result))
    if "shopper" in result:
        print("\nsynthetic shopper photos of the same queries against the clean catalogue "
              "(item@k: the item itself in the top k)\n" + format_table(result, "shopper"))
    out = Path(a.json) if a.json else Path(model).with_name(Path(model).stem + ".evaluate.json")
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out}")
    return result


if __name__ == "__main__":
    main()
