"""python -m train.compose: the shipped checkpoint from a backbone, a design head and a colour part.

``train.design_head`` trains the garment part's projection on a frozen backbone's pooled features
and ``train.colour_train`` the colour part; this puts them together into one checkpoint (the
backbone's encoder and decoder, the projection as the head, the colour part after it), chooses the
default colour weight, and saves it for ``python -m export.onnx``.

The default weight ("this look": the same kind in the same colour first) is chosen on data
neither part trained on and nothing is reported on: Myntra's *holdout* (part of train) and the
second shop's *choice* designs (``train.design_head``'s split). Colour pulls the two apart: it
lifts "same kind in the same colour" on Myntra and sinks "the same design in another colour" on
the second shop. The weight in ``--weights`` with the best mean of Myntra's P@10 of kind + colour
and the shop's same design Hit@10 is chosen, among those that keep Myntra's kind P@10 within
``--type-slack`` of its value at colour 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fai_infer.cli.util import OneLineParser
from fai_infer.image.preprocess import PreprocessSpec
from fai_infer.model.parts import EmbeddingParts
from train.checkpoint import save_atomic
from train.data import decode_all, detect_id_column, load_catalogue
from train.evaluate import module_embedder, query_indices
from train.metrics import label_codes, per_query_table
from train.model import AutoEncoder, EmbeddingModel, ModelConfig
from train.shop_eval import design_split, shop_per_query


def compose(backbone_ckpt: dict, head: dict, colour: dict, colour_weight: float
            ) -> tuple[AutoEncoder, dict]:
    """-> (model, checkpoint dict) with ``colour_weight`` as its default."""
    mean, weight = head["mean"], head["weight"]  # weight: (dim, features)
    cfg = replace(ModelConfig.from_dict(backbone_ckpt["model_config"]), head="projection",
                  pooling=head["pooling"], embed_dim=int(weight.shape[0]), general_dim=0,
                  colour=True, colour_names=tuple(colour["names"]), colour_weight=colour_weight)
    model = AutoEncoder(cfg)
    theirs = {k: v for k, v in backbone_ckpt["model"].items()
              if k.startswith(("encoder.", "decoder."))}
    missing = model.load_state_dict(theirs, strict=False).missing_keys
    if any(k.startswith(("encoder.", "decoder.")) for k in missing):
        raise SystemExit("the backbone checkpoint does not fit: missing "
                         + ", ".join(k for k in missing if k.startswith("encoder."))[:200])
    with torch.no_grad():
        model.head.proj.weight.copy_(weight)
        model.head.proj.bias.copy_(-(weight @ mean))  # (f - mean) W = f W - mean W
        if hasattr(model.head.pool, "p"):
            model.head.pool.p.fill_(3.0)
    model.colour.load_state_dict(colour["state"])
    model.eval()
    ckpt = {k: v for k, v in backbone_ckpt.items()
            if k not in ("model", "heads", "optimizer", "scheduler", "ema")}
    ckpt["model"] = model.state_dict()
    ckpt["model_config"] = cfg.to_dict()
    ckpt["model_config"]["colour_names"] = list(cfg.colour_names)
    return model, ckpt


def embedded(model: AutoEncoder, spec: PreprocessSpec, cat, workers: int, cache: str):
    """(catalogue narrowed to the photos that decode, their vectors)."""
    squares, errors = decode_all(cat.paths, spec, workers, cache, desc="decode")
    good = [i for i, e in enumerate(errors) if not e]
    return cat.subset(good), module_embedder(EmbeddingModel(model), spec)(squares[good])


def choose_weight(model: AutoEncoder, spec: PreprocessSpec, data: str, columns: tuple[str, str],
                  weights: list[float], slack: float, workers: int, cache: str,
                  shop: str | None = None, group_column: str = "product_code",
                  shop_holdout: float = 0.4, choice: float = 0.15) -> dict:
    """Figures at each weight, and the chosen default (see the module docstring)."""
    cat, vectors = embedded(model, spec, load_catalogue(data, None, detect_id_column(data, None)),
                            workers, cache)
    exported = EmbeddingModel(model).parts()
    parts = EmbeddingParts(tuple(exported["garment"]), tuple(exported["colour"]),
                           model.cfg.colour_weight)
    first, second = columns
    labels = {first: label_codes(cat.column(first)),
              f"{first}+{second}": label_codes(cat.column(first), cat.column(second))}
    queries = query_indices(cat, "holdout")
    design = None
    if shop:
        hm = load_catalogue(shop, None, detect_id_column(shop, None))
        _, keep = design_split(hm.column(group_column), shop_holdout, choice)
        hm, hm_vectors = embedded(model, spec, hm.subset(list(np.flatnonzero(keep))), workers,
                                  cache)
        design = (hm_vectors, hm.column(group_column))
    rows = []
    for w in [0.0, *weights]:
        per = per_query_table(parts.stored_as(vectors, w), queries, labels)
        row = {"colour": w, **{k: round(float(v.mean()), 4) for k, v in per.items()}}
        if design is not None:
            found = shop_per_query(parts.stored_as(design[0], w), design[1], design[1])
            row["shop same design Hit@10"] = round(float(found["same design Hit@10"].mean()), 4)
        rows.append(row)
    floor = rows[0][f"P@10 {first}"] - slack
    fine = [r for r in rows[1:] if r[f"P@10 {first}"] >= floor] or rows[1:2]
    aim = lambda r: (r[f"P@10 {first}+{second}"]  # noqa: E731
                     + r.get("shop same design Hit@10", r[f"P@10 {first}+{second}"])) / 2
    best = max(fine, key=lambda r: (aim(r), -r["colour"]))
    return {"rows": rows, "chosen": best["colour"], "queries": int(len(queries)),
            "rule": f"max mean(P@10 {first}+{second}, shop same design Hit@10) with P@10 "
                    f"{first} >= its colour-0 value - {slack}"}


def main(argv: list[str] | None = None) -> dict:
    p = OneLineParser(prog="python -m train.compose", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", required=True, help="checkpoint whose encoder is kept")
    p.add_argument("--head", required=True, help="train.design_head's output")
    p.add_argument("--colour", required=True, help="train.colour_train's output")
    p.add_argument("--data", default="../shared/data/myntra", help="where the weight is chosen")
    p.add_argument("--columns", default="articleType,baseColour",
                   help="the kind column and the colour column of --data")
    p.add_argument("--shop", default="../shared/data/hm-dev",
                   help="the second shop, whose choice designs weigh in ('' to leave it out)")
    p.add_argument("--group-column", default="product_code",
                   help="the second shop's design column (the head file's split wins)")
    p.add_argument("--weights", default="0.1,0.2,0.3,0.4,0.5,0.6",
                   help="colour weights to choose the default among")
    p.add_argument("--type-slack", type=float, default=0.02,
                   help="how far kind P@10 may fall below its colour-0 value")
    p.add_argument("--workers", type=int, default=2,
                   help="decoding threads")
    p.add_argument("--cache", default=".cache",
                   help="where decoded photos are cached")
    p.add_argument("--out", required=True, help="the composed checkpoint, e.g. models/fai-default.pt")
    a = p.parse_args(argv)
    for path in (a.backbone, a.head, a.colour):
        if not Path(path).is_file():
            p.error(f"{path}: no such file")
    load = lambda f: torch.load(f, map_location="cpu", weights_only=True)  # noqa: E731
    backbone, head, colour = load(a.backbone), load(a.head), load(a.colour)
    spec = PreprocessSpec.from_dict(backbone["preprocess"])
    if head.get("size") and head["size"] != spec.size:
        spec = replace(spec, size=int(head["size"]))
    model, _ = compose(backbone, head, colour, 0.5)
    columns = tuple(c.strip() for c in a.columns.split(","))
    split = head.get("split", {})  # the design head's own split: the choice rows are its
    choice = choose_weight(model, spec, a.data, columns, [float(w) for w in a.weights.split(",")],
                           a.type_slack, a.workers, a.cache, a.shop or None,
                           split.get("group_column", a.group_column),
                           float(split.get("shop_holdout", 0.4)), float(split.get("choice", 0.15)))
    model, ckpt = compose(backbone, head, colour, choice["chosen"])
    ckpt["preprocess"] = spec.to_dict()
    ckpt["compose"] = {"backbone": a.backbone, "head": head.get("chosen"),
                       "colour": colour.get("figures"), "colour_weight": choice}
    save_atomic(ckpt, a.out)
    for r in choice["rows"]:
        print("  ".join(f"{k} {v}" for k, v in r.items()), file=sys.stderr)
    print(json.dumps({"out": a.out, "colour_weight": choice["chosen"]}))
    return choice


if __name__ == "__main__":
    main()
