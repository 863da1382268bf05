"""python -m train.choose: pick the test size and the general/shop balance on the holdout.

The ImageNet family's embedding is [general | shop] (``train/model.py``: a fixed PCA of the
pooled features and a learned projection), weighted w and 1 - w. Neither w nor the test size
needs retraining, so both are chosen after training, on the holdout carved out of train (never
val, never the unseen kinds), by one criterion fixed beforehand: the worst of the model's
margins over the frozen ImageNet reference on the holdout figures, then their mean. Writes a
copy of the checkpoint with the choice applied, ready for ``python -m export.onnx``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fai_infer.preprocess import PreprocessSpec
from train.checkpoint import load_checkpoint, save_atomic
from train.data import decode_all, load_catalogue, unseen_mask
from train.evaluate import imagenet_embedder, module_embedder, query_indices, shopper_squares
from train.metrics import label_codes, retrieval_table, shopper_table
from fai_infer.cli import OneLineParser

FIGURES = ("P@10 {t}", "P@10 {t}+{c}", "shopper item@10", "shopper P@10 {t}")


def embedding_parts(model, squares: np.ndarray, spec: PreprocessSpec) -> dict[str, np.ndarray]:
    """general and shop parts (each unit rows) of every square, in one onnxruntime pass: the
    head's weights set to 1 and 1 make its output the two unit parts side by side."""
    from train.model import EmbeddingModel

    saved = model.head.weights.clone()
    model.head.weights.fill_(1.0)
    try:
        both = module_embedder(EmbeddingModel(model), spec)(squares)
    finally:
        model.head.weights.copy_(saved)
    g = model.head.general_dim
    return {"general": both[:, :g], "shop": both[:, g:]}


def combine(parts: dict[str, np.ndarray], weight: float) -> np.ndarray:
    return np.concatenate([np.sqrt(weight) * parts["general"],
                           np.sqrt(1 - weight) * parts["shop"]], axis=1)


def figures(gallery: np.ndarray, queries: np.ndarray, shots: np.ndarray,
            labels: dict[str, np.ndarray], t: str, c: str) -> dict[str, float]:
    clean = retrieval_table(gallery, queries, labels)
    shop = shopper_table(gallery, queries, shots, labels)
    row = {f.format(t=t, c=c): clean[f.format(t=t, c=c)] for f in FIGURES[:2]}
    row["shopper item@10"] = shop["item@10"]
    row[f"shopper P@10 {t}"] = shop[f"P@10 {t}"]
    return row


def main(argv: list[str] | None = None) -> dict:
    p = OneLineParser(prog="python -m train.choose", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="RUN/best.pt of an ImageNet-family run")
    p.add_argument("--out", required=True, help="where the checkpoint with the choice goes")
    p.add_argument("--data", default="../shared/data/myntra", help="the training catalogue")
    p.add_argument("--sizes", default="160,224", help="test sizes to try")
    p.add_argument("--weights", default="0.25,0.4,0.5,0.6,0.75,1.0",
                   help="general-part weights to try")
    p.add_argument("--columns", default="articleType,baseColour", help="type, second column")
    p.add_argument("--cache-dir", default=".cache", help="decoded-photo cache")
    a = p.parse_args(argv)
    model, spec, ckpt = load_checkpoint(a.checkpoint)
    if not ckpt["model_config"].get("general_dim"):
        p.error(f"{a.checkpoint}: no general/shop split to balance (seed family?)")
    t, c = [x.strip() for x in a.columns.split(",")][:2]
    cat = load_catalogue(a.data, ckpt["train_config"].get("csv"))
    tc = ckpt["train_config"]
    queries = query_indices(cat, "holdout", tc.get("holdout", 0.1))
    is_unseen, _ = unseen_mask(cat.column(tc.get("unseen_column", t)),
                               tc.get("unseen_fraction", 0))
    queries = queries[~is_unseen[queries]]
    labels = {t: label_codes(cat.column(t)), f"{t}+{c}": label_codes(cat.column(t),
                                                                        cat.column(c))}
    rows: list[dict] = []
    shots: dict[int, np.ndarray] = {}  # the queries re-shot, once per input size

    def shots_at(size: int) -> np.ndarray:
        if size not in shots:
            shots[size] = shopper_squares(cat, queries, size, 2, a.cache_dir)
        return shots[size]

    ref_spec, ref_embed = imagenet_embedder(ckpt["model_config"]["arch"])
    squares, _ = decode_all(cat.paths, PreprocessSpec(size=ref_spec.size), 2, a.cache_dir)
    reference = figures(ref_embed(squares), queries, ref_embed(shots_at(ref_spec.size)),
                        labels, t, c)
    print("frozen reference:", json.dumps({k: round(v, 3) for k, v in reference.items()}))
    for size in [int(x) for x in a.sizes.split(",")]:
        s_spec = replace(spec, size=size)
        squares, _ = decode_all(cat.paths, PreprocessSpec(size=size), 2, a.cache_dir)
        gallery = embedding_parts(model, squares, s_spec)
        shot_parts = embedding_parts(model, shots_at(size), s_spec)
        for w in [float(x) for x in a.weights.split(",")]:
            row = figures(combine(gallery, w), queries, combine(shot_parts, w), labels, t, c)
            margins = [row[k] - reference[k] for k in row]
            rows.append({"size": size, "general_weight": w, **row,
                         "worst margin": min(margins), "mean": float(np.mean(list(row.values())))})
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                              for k, v in rows[-1].items()}), flush=True)
    best = max(rows, key=lambda r: (r["worst margin"], r["mean"]))
    print(f"{len(queries)} holdout queries (unseen kinds left out)")
    print(f"chosen on the holdout: size {best['size']}, general weight {best['general_weight']}")
    w = best["general_weight"]
    model.head.weights.copy_(torch.tensor([w, 1 - w]).sqrt())
    ckpt["model"] = model.state_dict()
    ckpt["model_config"] = dict(ckpt["model_config"], general_weight=w)
    ckpt["preprocess"] = replace(spec, size=best["size"]).to_dict()
    ckpt["choice"] = {"criterion": "max worst margin over the frozen reference, then mean, "
                      "on the holdout", "reference": reference, "rows": rows}
    save_atomic(ckpt, a.out)
    Path(a.out).with_suffix(".choice.json").write_text(json.dumps(ckpt["choice"], indent=2))
    print(f"written {a.out}")
    return ckpt["choice"]


if __name__ == "__main__":
    main()
