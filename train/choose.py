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
import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fai_infer.cli.util import OneLineParser
from fai_infer.model.provenance import provenance
from fai_infer.image.preprocess import PreprocessSpec
from train.checkpoint import load_checkpoint, save_atomic
from train.data import decode_all, load_catalogue, proxy_mask, unseen_mask
from train.evaluate import imagenet_embedder, module_embedder, query_indices, shopper_squares
from train.metrics import l2_normalise, label_codes, retrieval_table, shopper_table
from train.cost import encoder_gflops
from train.efficientnet_lite import INPUT_MEAN, INPUT_STD
from train.model import AutoEncoder, EmbeddingModel


class PooledAndShop(torch.nn.Module):
    """Encoder -> [pooled features | unit shop part | colour part]: everything any make-up of
    the split embedding is computed from, in one onnxruntime pass."""

    def __init__(self, model: AutoEncoder):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        f = m.head.pool(m.encoder(m.backbone_input(x)))
        out = [f, torch.nn.functional.normalize(m.head.proj(f), dim=1)]
        if m.colour is not None:
            out.append(m.colour(x * INPUT_STD[0] + INPUT_MEAN[0]))
        return torch.cat(out, dim=1)


def embedding_parts(model: AutoEncoder, squares: np.ndarray, spec: PreprocessSpec
                    ) -> dict[str, np.ndarray]:
    """The general part's PCA coordinates (all ``general_dim``, not yet normalised), the unit
    shop part and (models with one) the unit colour part of every square."""
    head = model.head
    both = module_embedder(PooledAndShop(model), spec)(squares)
    features, shop = head.pca_mean.numel(), head.shop_dim
    pooled = both[:, :features]
    coords = (pooled - head.pca_mean.numpy()) @ head.pca_basis.numpy().T
    out = {"general": coords.astype(np.float32), "shop": both[:, features:features + shop]}
    if model.colour is not None:
        out["colour"] = both[:, features + shop:]
    return out


def combine(parts: dict[str, np.ndarray], weight: float, dims: int,
            colour: float | None = None) -> np.ndarray:
    """The embedding the head makes with ``dims`` general components, general weight
    ``weight`` and (a model with a colour part) colour weight ``colour``."""
    general = l2_normalise(parts["general"][:, :dims])
    garment = np.concatenate([np.sqrt(weight) * general,
                              np.sqrt(1 - weight) * parts["shop"]], axis=1)
    if colour is None or "colour" not in parts:
        return garment
    return np.concatenate([np.sqrt(1 - colour) * garment, np.sqrt(colour) * parts["colour"]],
                          axis=1)


def interpolated(model: AutoEncoder, alpha: float) -> AutoEncoder:
    """WiSE-FT: a copy whose backbone weights are (1 - alpha) x ImageNet's + alpha x the
    fine-tuned ones (alpha = 1: the fine-tuned model). Interpolating in weight space keeps
    much of what fine-tuning lost of robustness to other photos, at no cost at run time."""
    import copy

    from train.efficientnet_lite import load_imagenet

    out = copy.deepcopy(model).eval()
    if alpha >= 1.0:
        return out
    frozen = load_imagenet(type(model.encoder)(model.encoder.variant)).state_dict()
    tuned = model.encoder.state_dict()
    mixed = {k: ((1 - alpha) * frozen[k] + alpha * v) if v.is_floating_point() else v
             for k, v in tuned.items()}
    out.encoder.load_state_dict(mixed)
    return out


def with_choice(model: AutoEncoder, dims: int, weight: float,
                colour: float | None = None) -> AutoEncoder:
    """A copy of ``model`` whose head keeps the first ``dims`` general components, weighted
    ``weight`` (and, with a colour part, colour weight ``colour``): the PCA basis is ordered
    by variance, so dropping its tail is a smaller PCA."""
    mc = replace(model.cfg, general_dim=dims, general_weight=weight,
                 embed_dim=dims + model.head.shop_dim)
    if colour is not None and model.colour is not None:
        mc = replace(mc, colour_weight=colour)
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


class ShopFigures:
    """The second shop's figures (``train/shop_eval.py``) for any embedding of its photos."""

    def __init__(self, groups: list[str], types: list[str]):
        self.groups, self.types = groups, types

    def __call__(self, emb: np.ndarray) -> dict[str, float]:
        from train.shop_eval import shop_per_query

        per = shop_per_query(emb, self.groups, self.types)
        return {f"shop {k}": float(v.mean()) for k, v in per.items()}


def fp32_ms_per_photo(model: AutoEncoder, size: int, runs: int = 100) -> float:
    """Median onnxruntime fp32 time of one photo (batch 1) through the exported encoder at
    ``size``: the runtime's cost of that choice on this machine."""
    import time

    from train.onnx_graph import session, to_onnx_proto
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
                   "second for kind+second (default: the columns the run's holdout was scored "
                   "on, else its label columns)")
    p.add_argument("--wise", default="1.0", metavar="A,A",
                   help="WiSE-FT: backbone weights (1 - A) x ImageNet + A x fine-tuned to try "
                   "(1.0 = the fine-tuned backbone as trained)")
    p.add_argument("--colour-weights", default="0.1,0.2,0.3",
                   help="default colour weights to try (models with a colour part)")
    p.add_argument("--shop", default=None, metavar="DIR",
                   help="a second shop (photos + CSV) whose same-design and type figures join "
                   "the criterion, e.g. ../shared/data/hm-dev")
    p.add_argument("--shop-id-column", default=None,
                   help="its photo id column (default: the column naming its photos)")
    p.add_argument("--group-column", default="product_code",
                   help="the second shop's column naming one design in several colours")
    p.add_argument("--type-column", default="product_type_name",
                   help="the second shop's column naming the kind of item")
    p.add_argument("--cache-dir", default=".cache", help="decoded-photo cache")
    a = p.parse_args(argv)
    alphas = _numbers(a.wise, float)
    if not alphas or any(not 0.0 <= x <= 1.0 for x in alphas):
        p.error(f"--wise {a.wise}: each must be from 0 to 1")
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
    # The run's own figures: the columns its holdout was scored on (eval_columns), else its
    # label columns (a colour-blind garment part trains on the kind alone, and is still
    # judged on kind + colour).
    def listed(text: str) -> list[str]:
        return [x.strip() for x in (text or "").split(",") if x.strip()]

    have = set(cat.rows[0]) if cat.rows else set()
    scored_on = [x for x in listed(tc.get("eval_columns", "")) if x in have]
    columns = listed(a.columns) or (scored_on if len(scored_on) >= 2
                                    else listed(tc.get("label_columns", "")))
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

    shop_figures, shop_cat = None, None
    if a.shop:
        from train.data import detect_id_column

        shop_cat = load_catalogue(a.shop, None, a.shop_id_column or detect_id_column(a.shop))
        for column in (a.group_column, a.type_column):
            if not shop_cat.rows or column not in shop_cat.rows[0]:
                p.error(f"--shop {a.shop}: no column {column!r}; name it with --group-column / "
                        "--type-column")
        shop_figures = ShopFigures(shop_cat.column(a.group_column),
                                   shop_cat.column(a.type_column))

    def shop_squares(size: int) -> np.ndarray:
        sq, errors = decode_all(shop_cat.paths, PreprocessSpec(size=size), 2, a.cache_dir,
                                desc="decode shop")
        bad = [e for e in errors if e]
        if bad:
            p.error(f"--shop {a.shop}: {len(bad)} photos cannot be read, e.g. {bad[0]}")
        return sq

    def scored(gallery: np.ndarray, shots_: np.ndarray, shop_: np.ndarray | None) -> dict:
        row = figures(gallery, shots_)
        if shop_figures is not None and shop_ is not None:
            row |= shop_figures(shop_)
        return row

    # The reference is the better of the frozen features of the photos and of their grey
    # versions, figure by figure: what a colour-blind garment part must beat too.
    reference: dict[str, float] = {}
    arch = ckpt["model_config"]["arch"]
    for grey in (False, True):
        ref_spec, ref_embed = imagenet_embedder(arch, grey=grey)
        squares, _ = decode_all(cat.paths, PreprocessSpec(size=ref_spec.size), 2, a.cache_dir)
        shop_ref = ref_embed(shop_squares(ref_spec.size)) if shop_figures else None
        figs = scored(ref_embed(squares), ref_embed(shots_at(ref_spec.size)), shop_ref)
        print(f"frozen reference{' (grey photos)' if grey else ''}:",
              json.dumps({k: round(v, 3) for k, v in figs.items()}))
        reference = {k: max(v, reference.get(k, v)) for k, v in figs.items()}
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
    colours = _numbers(a.colour_weights, float) if model.colour is not None else [None]
    for size in sizes:
        s_spec = replace(spec, size=size)
        squares, _ = decode_all(cat.paths, PreprocessSpec(size=size), 2, a.cache_dir)
        shop_sq = shop_squares(size) if shop_figures else None
        for alpha in alphas:
            mixed = interpolated(model, alpha)
            gallery = embedding_parts(mixed, squares, s_spec)
            shot_parts = embedding_parts(mixed, shots_at(size), s_spec)
            shop_parts = embedding_parts(mixed, shop_sq, s_spec) if shop_figures else None
            for dims, w, cw in itertools.product(dims_list, _numbers(a.weights, float), colours):
                row = scored(combine(gallery, w, dims, cw), combine(shot_parts, w, dims, cw),
                             combine(shop_parts, w, dims, cw) if shop_parts else None)
                margins = [row[k] - reference[k] for k in row]
                rows.append({"size": size, "ms_per_photo": speed[size], "wise_alpha": alpha,
                             "general_dims": dims, "general_weight": w, "colour_weight": cw,
                             **row, "worst margin": min(margins),
                             "worst figure": min(row, key=lambda k: row[k] - reference[k]),
                             "mean": float(np.mean(list(row.values())))})
                print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                  for k, v in rows[-1].items()}), flush=True)
    best = max(rows, key=lambda r: (r["worst margin"], r["mean"]))
    print(f"{len(queries)} holdout queries, {len(figures.proxy_rows)} photos of "
          f"{len(proxy)} proxy kinds (unseen kinds left out)")
    print(f"chosen on the holdout{', proxy kinds and ' + a.shop if a.shop else ''}: size "
          f"{best['size']}, WiSE-FT alpha {best['wise_alpha']}, {best['general_dims']} general "
          f"dims, general weight {best['general_weight']}, colour weight "
          f"{best['colour_weight']} (worst margin {best['worst margin']:+.3f} on "
          f"{best['worst figure']})")
    chosen = with_choice(interpolated(model, best["wise_alpha"]), best["general_dims"],
                         best["general_weight"], best["colour_weight"])
    ckpt["model"] = chosen.state_dict()
    ckpt["model_config"] = chosen.cfg.to_dict()
    ckpt["preprocess"] = replace(spec, size=best["size"]).to_dict()
    ckpt["choice"] = {"criterion": "max worst margin over the frozen reference (the better "
                      "of colour and grey photos per figure), then mean, on the holdout, the "
                      "proxy kinds" + (f" and {a.shop}" if a.shop else ""), "proxy_kinds": sorted(proxy),
                      "fp32_ms_per_photo": speed, "max_ms": a.max_ms,
                      "reference": reference, "rows": rows}
    save_atomic(ckpt, a.out)
    Path(a.out).with_suffix(".choice.json").write_text(json.dumps(
        {**ckpt["choice"], "provenance": provenance([a.out])}, indent=2))
    print(f"written {a.out}")
    return ckpt["choice"]


if __name__ == "__main__":
    main()
