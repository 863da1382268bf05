"""python -m train.choose: pick the test size and the embedding's make-up on the holdout.

The ImageNet family's embedding is [general | shop] (``train/model.py``: a fixed PCA of the
pooled features and a learned projection), weighted w and 1 - w. None of the test size, w, or
how many of the general part's leading PCA components to keep needs retraining, so all three
are chosen after training by one criterion fixed beforehand: the worst of the model's margins
over the frozen ImageNet reference, then their mean, over

- the holdout carved out of train (P@1/P@10 type, P@10 type+colour, synthetic shopper item@10
  and P@10 type), and
- the *proxy kinds* (``--proxy-fraction`` at training: kinds kept out of every gradient),
  queried among themselves (P@1/P@10 type, P@10 type+colour): the stand-in for unseen kinds.

Never val, never the unseen kinds. Sizes whose encoder costs more than ``--max-gflops`` per
photo (counted from the layers' shapes, ``train/cost.py``: the same on every machine and run)
are left out before anything is scored; ``--max-ms`` (off by default) adds a stopwatch limit
measured here, which depends on the machine's load. Writes a copy of the checkpoint with the
choice applied, ready for ``python -m export.onnx``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fai_infer.cli import OneLineParser
from fai_infer.preprocess import PreprocessSpec
from train.checkpoint import load_checkpoint, save_atomic
from train.data import decode_all, load_catalogue, proxy_mask, unseen_mask
from train.evaluate import imagenet_embedder, module_embedder, query_indices, shopper_squares
from train.metrics import l2_normalise, label_codes, retrieval_table, shopper_table
from train.cost import encoder_gflops
from train.model import AutoEncoder, EmbeddingModel


class PooledAndShop(torch.nn.Module):
    """Encoder -> [pooled features | unit shop part]: everything any make-up of the split
    embedding is computed from, in one onnxruntime pass."""

    def __init__(self, model: AutoEncoder):
        super().__init__()
        self.encoder, self.head = model.encoder, model.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head.pool(self.encoder(x))
        return torch.cat([f, torch.nn.functional.normalize(self.head.proj(f), dim=1)], dim=1)


def embedding_parts(model: AutoEncoder, squares: np.ndarray, spec: PreprocessSpec
                    ) -> dict[str, np.ndarray]:
    """The general part's PCA coordinates (all ``general_dim``, not yet normalised) and the
    unit shop part of every square."""
    head = model.head
    both = module_embedder(PooledAndShop(model), spec)(squares)
    features = head.pca_mean.numel()
    pooled, shop = both[:, :features], both[:, features:]
    coords = (pooled - head.pca_mean.numpy()) @ head.pca_basis.numpy().T
    return {"general": coords.astype(np.float32), "shop": shop}


def combine(parts: dict[str, np.ndarray], weight: float, dims: int) -> np.ndarray:
    """The embedding the head makes with ``dims`` general components and weight ``weight``."""
    general = l2_normalise(parts["general"][:, :dims])
    return np.concatenate([np.sqrt(weight) * general,
                           np.sqrt(1 - weight) * parts["shop"]], axis=1)


def with_choice(model: AutoEncoder, dims: int, weight: float) -> AutoEncoder:
    """A copy of ``model`` whose head keeps the first ``dims`` general components, weighted
    ``weight``: the PCA basis is ordered by variance, so dropping its tail is a smaller PCA."""
    mc = replace(model.cfg, general_dim=dims, general_weight=weight,
                 embed_dim=dims + model.head.shop_dim)
    state = model.state_dict()
    state["head.pca_basis"] = state["head.pca_basis"][:dims].clone()
    state["head.weights"] = torch.tensor([weight, 1 - weight]).sqrt()
    chosen = AutoEncoder(mc)
    chosen.load_state_dict(state)
    return chosen.eval()


class Figures:
    """The criterion's figures for any embedding of the whole catalogue."""

    def __init__(self, cat, queries: np.ndarray, proxy_rows: np.ndarray, t: str, c: str):
        self.queries, self.proxy_rows, self.t, self.c = queries, proxy_rows, t, c
        self.labels = {t: label_codes(cat.column(t)),
                       f"{t}+{c}": label_codes(cat.column(t), cat.column(c))}

    def __call__(self, gallery: np.ndarray, shots: np.ndarray) -> dict[str, float]:
        t, c = self.t, self.c
        clean = retrieval_table(gallery, self.queries, self.labels)
        shop = shopper_table(gallery, self.queries, shots, self.labels)
        row = {f"P@1 {t}": clean[f"P@1 {t}"], f"P@10 {t}": clean[f"P@10 {t}"],
               f"P@10 {t}+{c}": clean[f"P@10 {t}+{c}"], "shopper item@10": shop["item@10"],
               f"shopper P@10 {t}": shop[f"P@10 {t}"]}
        if len(self.proxy_rows) > 10:
            rows = self.proxy_rows
            sub = {k: v[rows] for k, v in self.labels.items()}
            proxy = retrieval_table(gallery[rows], np.arange(len(rows)), sub)
            row |= {f"proxy P@1 {t}": proxy[f"P@1 {t}"], f"proxy P@10 {t}": proxy[f"P@10 {t}"],
                    f"proxy P@10 {t}+{c}": proxy[f"P@10 {t}+{c}"]}
        return row


def fp32_ms_per_photo(model: AutoEncoder, size: int, runs: int = 100) -> float:
    """Median onnxruntime fp32 time of one photo (batch 1) through the exported encoder at
    ``size``: the runtime's cost of that choice on this machine."""
    import time

    from export.onnx import session, to_onnx_proto
    from train.model import EmbeddingModel

    sess = session(to_onnx_proto(EmbeddingModel(model).eval(), size, 17).SerializeToString())
    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    for _ in range(10):
        sess.run(None, {"image": x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {"image": x})
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def _numbers(text: str, kind: type) -> list:
    return [kind(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> dict:
    p = OneLineParser(prog="python -m train.choose", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="RUN/best.pt of an ImageNet-family run")
    p.add_argument("--out", required=True, help="where the checkpoint with the choice goes")
    p.add_argument("--data", default=None,
                   help="the training catalogue (default: the one the checkpoint was trained on)")
    p.add_argument("--csv", default=None, help="its metadata CSV (default: the checkpoint's)")
    p.add_argument("--id-column", default=None,
                   help="the CSV column holding the photo id (default: the checkpoint's)")
    p.add_argument("--sizes", default="160,192,224", help="test sizes to try")
    p.add_argument("--weights", default="0.25,0.4,0.5,0.6,0.75,1.0",
                   help="general-part weights to try")
    p.add_argument("--general-dims", default="",
                   help="how many leading general components to try keeping (default: the "
                   "checkpoint's, and half of it)")
    p.add_argument("--max-gflops", type=float, default=0.8,
                   help="leave out test sizes whose encoder costs more GFLOPs per photo "
                   "(deterministic; EfficientNet-Lite0: 0.39 at 160 px, 0.77 at 224; 0 = no "
                   "limit)")
    p.add_argument("--max-ms", type=float, default=0.0,
                   help="also leave out sizes slower than this per photo measured here "
                   "(onnxruntime, batch 1, median): depends on the machine's load that minute; "
                   "0 = off (default)")
    p.add_argument("--columns", default=None,
                   help="two label columns the figures count matches on: the kind, and a "
                   "second for kind+second (default: the checkpoint's first two label columns)")
    p.add_argument("--cache-dir", default=".cache", help="decoded-photo cache")
    a = p.parse_args(argv)
    model, spec, ckpt = load_checkpoint(a.checkpoint)
    full = ckpt["model_config"].get("general_dim", 0)
    if not full:
        p.error(f"{a.checkpoint}: no general/shop split to balance (seed family?)")
    dims_list = _numbers(a.general_dims, int) or sorted({full, full // 2})
    if any(d < 1 or d > full for d in dims_list):
        p.error(f"--general-dims {a.general_dims}: each must be 1..{full}")
    tc = ckpt["train_config"]
    data = a.data or tc.get("data", "")
    if not Path(data).is_dir():
        p.error(f"--data {data}: no such catalogue folder")
    # The checkpoint's CSV and id column belong to its own data: a new --data brings its own.
    csv_path = a.csv or (tc.get("csv") if a.data is None else None)
    id_column = a.id_column or tc.get("id_column", "id")
    cat = load_catalogue(data, csv_path, id_column)
    columns = [x.strip() for x in (a.columns or tc.get("label_columns", "")).split(",")
               if x.strip()]
    missing = [x for x in columns if not cat.rows or x not in cat.rows[0]]
    if not columns or missing:
        p.error(f"{data}: no label column {', '.join(missing) or '(none given)'} to score on "
                f"(its columns: {', '.join(cat.rows[0]) if cat.rows else 'none'}); name two "
                "with --columns")
    t, c = (columns + columns)[:2]
    kinds = cat.column(tc.get("unseen_column", t))
    is_unseen, _ = unseen_mask(kinds, tc.get("unseen_fraction", 0))
    is_proxy, proxy = proxy_mask(kinds, tc.get("proxy_fraction", 0), tc.get("unseen_fraction", 0))
    queries = query_indices(cat, "holdout", tc.get("holdout", 0.1))
    queries = queries[~is_unseen[queries] & ~is_proxy[queries]]
    is_train = np.array([s == "train" for s in cat.splits])
    figures = Figures(cat, queries, np.flatnonzero(is_proxy & is_train), t, c)
    shots: dict[int, np.ndarray] = {}  # the queries re-shot, once per input size

    def shots_at(size: int) -> np.ndarray:
        if size not in shots:
            shots[size] = shopper_squares(cat, queries, size, 2, a.cache_dir)
        return shots[size]

    ref_spec, ref_embed = imagenet_embedder(ckpt["model_config"]["arch"])
    squares, _ = decode_all(cat.paths, PreprocessSpec(size=ref_spec.size), 2, a.cache_dir)
    reference = figures(ref_embed(squares), ref_embed(shots_at(ref_spec.size)))
    print("frozen reference:", json.dumps({k: round(v, 3) for k, v in reference.items()}))
    rows: list[dict] = []
    sizes, speed = [], {}
    for size in _numbers(a.sizes, int):
        cost = encoder_gflops(EmbeddingModel(model), size)
        speed[size] = fp32_ms_per_photo(model, size)  # reported; a limit only with --max-ms
        over = [f"over --max-gflops {a.max_gflops}" for _ in [0] if a.max_gflops
                and cost > a.max_gflops] + [f"over --max-ms {a.max_ms}" for _ in [0]
                                            if a.max_ms and speed[size] > a.max_ms]
        print(f"{size} px: {cost:.3f} GFLOPs, {speed[size]:.2f} ms per photo fp32 here"
              + (f", {' and '.join(over)}: left out" if over else ""))
        if not over:
            sizes.append(size)
    if not sizes:
        p.error(f"no size in --sizes {a.sizes} fits --max-gflops {a.max_gflops}"
                + (f" and --max-ms {a.max_ms}" if a.max_ms else ""))
    for size in sizes:
        s_spec = replace(spec, size=size)
        squares, _ = decode_all(cat.paths, PreprocessSpec(size=size), 2, a.cache_dir)
        gallery = embedding_parts(model, squares, s_spec)
        shot_parts = embedding_parts(model, shots_at(size), s_spec)
        for dims in dims_list:
            for w in _numbers(a.weights, float):
                row = figures(combine(gallery, w, dims), combine(shot_parts, w, dims))
                margins = [row[k] - reference[k] for k in row]
                rows.append({"size": size, "ms_per_photo": speed[size], "general_dims": dims,
                             "general_weight": w, **row,
                             "worst margin": min(margins),
                             "mean": float(np.mean(list(row.values())))})
                print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                  for k, v in rows[-1].items()}), flush=True)
    best = max(rows, key=lambda r: (r["worst margin"], r["mean"]))
    print(f"{len(queries)} holdout queries, {len(figures.proxy_rows)} photos of "
          f"{len(proxy)} proxy kinds (unseen kinds left out)")
    print(f"chosen on the holdout: size {best['size']}, {best['general_dims']} general dims, "
          f"general weight {best['general_weight']}")
    chosen = with_choice(model, best["general_dims"], best["general_weight"])
    ckpt["model"] = chosen.state_dict()
    ckpt["model_config"] = chosen.cfg.to_dict()
    ckpt["preprocess"] = replace(spec, size=best["size"]).to_dict()
    ckpt["choice"] = {"criterion": "max worst margin over the frozen reference, then mean, "
                      "on the holdout and the proxy kinds", "proxy_kinds": sorted(proxy),
                      "fp32_ms_per_photo": speed, "max_ms": a.max_ms,
                      "reference": reference, "rows": rows}
    save_atomic(ckpt, a.out)
    Path(a.out).with_suffix(".choice.json").write_text(json.dumps(ckpt["choice"], indent=2))
    print(f"written {a.out}")
    return ckpt["choice"]


if __name__ == "__main__":
    main()
