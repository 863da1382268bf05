"""python -m export.int8_noise: how the int8 twin moves a backbone's pooled features.

A projection trained on design positives (``train.design_head``) leans on directions of the
pooled features that vary little between photos; int8 noise there is large relative to the
signal, so the twin of such a model missed its gate while the backbone's own int8 error was no
larger than v3's. This measures that error where it enters the head: the backbone + GeM pooling
exported, quantised with the shipped recipe (``export/quantize.py``), and run beside fp32 on
photos from two shops: Myntra's train split and the second shop's designs outside its held-apart
share (labels are never read; the residuals are noise statistics). The rows (int8 - fp32) go to
``train.design_head --int8-noise``, which adds them to its inputs so the projection learns to
ignore what int8 changes.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from export.quantize import _embed, preprocessed, quantize_qdq
from fai_infer.cli.util import OneLineParser
from fai_infer.image.preprocess import to_tensor
from train.checkpoint import load_checkpoint
from train.data import decode_all, detect_id_column, load_catalogue
from train.design_head import BackbonePooled
from train.onnx_graph import to_onnx_proto
from train.shop_eval import held_apart_groups


def pooled_model(checkpoint: str, size: int) -> tuple[bytes, object]:
    """(fp32 ONNX bytes of backbone + GeM p=3, the checkpoint's preprocessing spec)."""
    from dataclasses import replace

    ae, spec, _ = load_checkpoint(checkpoint)
    spec = replace(spec, size=size)
    return to_onnx_proto(BackbonePooled(ae).eval(), size, 17).SerializeToString(), spec


def main(argv: list[str] | None = None) -> dict:
    p = OneLineParser(prog="python -m export.int8_noise", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="models/fai-default.pt",
                   help="checkpoint whose backbone is quantised")
    p.add_argument("--size", type=int, default=224,
                   help="input size the runtime feeds")
    p.add_argument("--data", default="../shared/data/myntra", help="calibration + sample")
    p.add_argument("--shop", default="../shared/data/hm-dev", help="a second sample (its "
                   "held-apart designs are never read)")
    p.add_argument("--group-column", default="product_code",
                   help="the shop's design column")
    p.add_argument("--shop-holdout", type=float, default=0.4,
                   help="share of the shop's designs held apart (never read)")
    p.add_argument("--count", type=int, default=400, help="photos per shop")
    p.add_argument("--keep-fp32", default="/encoder/_blocks.0/_depthwise_conv/Conv")
    p.add_argument("--out", default="runs/int8-noise.npy",
                   help="the residual rows, for train.design_head --int8-noise")
    a = p.parse_args(argv)
    fp32, spec = pooled_model(a.checkpoint, a.size)
    my = load_catalogue(a.data, None, detect_id_column(a.data, None))
    train = [path for path, split in zip(my.paths, my.splits) if split == "train"]
    calib, _ = decode_all(train[:: max(1, len(train) // 300)][:300], spec, 2)
    keep = tuple(k for k in a.keep_fp32.split(",") if k)
    q = quantize_qdq(preprocessed(fp32), calib, spec, "fast", keep, "moving-average")
    shop = load_catalogue(a.shop, None, detect_id_column(a.shop, None))
    apart = held_apart_groups(shop.column(a.group_column), a.shop_holdout)
    shop_train = [path for path, out in zip(shop.paths, apart) if not out]
    sample = [train[7:: max(1, len(train) // a.count)][: a.count],
              shop_train[:: max(1, len(shop_train) // a.count)][: a.count]]
    x = to_tensor(np.concatenate([decode_all(s, spec, 2)[0] for s in sample]), spec)
    f, g = _embed(fp32, x), _embed(q, x)
    np.save(a.out, (g - f).astype(np.float32))
    out = {"rows": int(len(f)), "relative_noise": float(
        np.linalg.norm(g - f, axis=1).mean() / np.linalg.norm(f, axis=1).mean()), "out": a.out}
    print(json.dumps(out), file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
