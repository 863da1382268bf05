"""python -m train.evaluate: retrieval quality on a labelled catalogue, beside raw pixels.

Queries are the val photos (or ``--split holdout``: the part of train that training holds out,
where recipe choices are made), the gallery is the whole catalogue, the query itself left out.
P@1 and P@10 count neighbours of the same articleType, and of the same articleType+baseColour.

Every run scores, beside the model: raw pixels and the frozen ImageNet features of
EfficientNet-Lite0 at 224 px (``--reference``), the reference a shop's engineer would try first.
``--unseen`` adds the unseen kinds (about 20% of articleTypes that training never sees, chosen
by a stable hash) queried only among themselves. ``--also`` scores more models in the same run.

``--shopper`` adds a second table: the same queries re-shot as synthetic shopper photos
(``train/shopper_photos.py``: clutter, tilt, lamp, blur, JPEG) searched against the clean
catalogue; item@k is how often the photographed item itself comes back in the top k.

Works on a training checkpoint (torch) or on an exported ONNX file (the runtime path), so the
int8 export's loss can be measured on exactly the same table.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fai_infer.image.preprocess import PreprocessSpec, centre_crop, square_resize, to_tensor
from train.data import decode_all, detect_id_column, holdout_mask, load_catalogue, unseen_mask
from train.metrics import (l2_normalise, label_codes, paired_margin, per_query_table,
                           pixel_features, shopper_table)
from train.shopper_photos import shopper_photos
from fai_infer.cli.util import OneLineParser
from fai_infer.model.provenance import provenance

SHOPPER_PHOTO_SIZE = 224  # distort at camera-like resolution, then preprocess as the runtime
PIXELS = "raw pixels 32x32"
REFERENCE_SIZE = 224  # the frozen ImageNet reference is measured at its native resolution

Embedder = tuple[PreprocessSpec, Callable[[np.ndarray], np.ndarray]]


def _batched(fn: Callable[[np.ndarray], np.ndarray], squares: np.ndarray,
             batch: int = 128) -> np.ndarray:
    from tqdm import tqdm

    starts = range(0, len(squares), batch)
    return np.concatenate([fn(squares[i : i + batch]) for i in tqdm(
        starts, desc="embed", leave=False, disable=len(squares) <= batch)])


def module_embedder(module, spec: PreprocessSpec) -> Callable[[np.ndarray], np.ndarray]:
    """A torch module (images -> embeddings) exported in memory and run by onnxruntime: the
    same numbers as torch (export checks that to 1e-4) at several times its CPU speed."""
    from train.onnx_graph import session, to_onnx_proto

    module.eval()
    sess = session(to_onnx_proto(module, spec.size, 17).SerializeToString())

    def embed(squares: np.ndarray) -> np.ndarray:
        return sess.run(None, {"image": to_tensor(squares, spec)})[0]

    return lambda squares: _batched(embed, squares, 64)


def checkpoint_embedder(path: str, image_size: int | None = None) -> Embedder:
    """Load a training checkpoint once -> (its preprocessing, squares -> embeddings).
    ``image_size`` tests at another size than training (the ImageNet family pools globally)."""
    from train.checkpoint import load_checkpoint
    from train.model import EmbeddingModel

    model, spec, _ = load_checkpoint(path)
    if image_size:
        spec = replace(spec, size=image_size)
    return spec, module_embedder(EmbeddingModel(model), spec)


def onnx_embedder(path: str) -> Embedder:
    """The runtime's encoder -> (its preprocessing, squares -> embeddings)."""
    from fai_infer.model.encoder import Encoder

    encoder = Encoder(path)
    return encoder.spec, lambda squares: _batched(encoder.embed_squares, squares)


def model_parts(model: str):
    """The garment/colour layout of a model file or checkpoint (None for references)."""
    from fai_infer.model.parts import EmbeddingParts

    if model.startswith(("imagenet:", "imagenet-grey:")):
        return None
    if model.endswith(".onnx"):
        from fai_infer.model.encoder import Encoder

        return Encoder(model).info.parts
    from train.checkpoint import load_checkpoint
    from train.model import EmbeddingModel

    ae, _, _ = load_checkpoint(model)
    parts = EmbeddingModel(ae).parts()
    if "colour" not in parts:
        return EmbeddingParts.whole(parts["garment"][1])
    return EmbeddingParts(tuple(parts["garment"]), tuple(parts["colour"]),
                          ae.cfg.colour_weight)


def colour_variants(name: str, parts, weights: Sequence[str]) -> dict[str, Callable]:
    """Rows for a model with a colour part at other colour weights: name -> vectors -> the
    vectors as if exported with that weight (both sides, so any metric stays a dot product)."""
    if parts is None or not parts.has_colour:
        return {}
    out = {}
    for w in weights:
        value = parts.default_colour if w == "default" else float(w)
        label = f"{name} colour={value:g}" + (" (default)" if w == "default" else "")
        out[label] = (lambda v, value=value: parts.stored_as(v, value))
    return out


def pooled(backbone):
    """Backbone feature map -> global average -> L2 norm, as one module (torch imported late:
    evaluating an ONNX file needs no torch)."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone

        def forward(self, x):
            return torch.nn.functional.normalize(self.backbone(x).mean(dim=(2, 3)), dim=1)

    return Pooled()


def imagenet_embedder(variant: str = "efficientnet-lite0", size: int = REFERENCE_SIZE,
                      grey: bool = False) -> Embedder:
    """The frozen ImageNet backbone, globally average-pooled and L2-normalised: the first thing
    a shop's engineer would try, and the reference every model here must beat. ``grey``: the
    same on the photos' luma (what a colour-blind garment part starts from)."""
    import torch

    from train.efficientnet_lite import INPUT_MEAN, INPUT_STD, imagenet_backbone
    from train.model import Luma

    spec = PreprocessSpec(size=size, mean=INPUT_MEAN, std=INPUT_STD)
    backbone = imagenet_backbone(variant)
    if grey:
        backbone = torch.nn.Sequential(Luma(), backbone)
    return spec, module_embedder(pooled(backbone), spec)


def make_embedder(model: str, image_size: int | None = None) -> Embedder:
    if model.startswith(("imagenet:", "imagenet-grey:")):
        kind, variant = model.split(":", 1)
        return imagenet_embedder(variant or "efficientnet-lite0", grey=kind == "imagenet-grey")
    if model.endswith(".onnx"):
        return onnx_embedder(model)
    return checkpoint_embedder(model, image_size)


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


def centre_crops(squares: np.ndarray, share: float) -> np.ndarray:
    """Each square's centre crop, as the runtime takes it of a query photo
    (fai_infer.image.preprocess.centre_crop)."""
    return np.stack([centre_crop(sq, share) for sq in squares]) if len(squares) else squares


def decode_for(cat, embedders: dict[str, Embedder], workers: int, cache_dir: str | None,
               desc: str) -> tuple[object, dict[int, np.ndarray]]:
    """Every photo decoded once per input size the embedders need; photos that fail to decode
    are left out of the catalogue (and of every size) so all rows stay aligned."""
    squares: dict[int, np.ndarray] = {}
    bad: set[int] = set()
    for spec, _ in embedders.values():
        if spec.size not in squares:
            squares[spec.size], errors = decode_all(cat.paths, PreprocessSpec(size=spec.size),
                                                    workers, cache_dir, desc=desc)
            bad |= {i for i, e in enumerate(errors) if e}
    good = [i for i in range(len(cat)) if i not in bad]
    return cat.subset(good), {size: sq[good] for size, sq in squares.items()}


def evaluate_splits(model: str, data: str, csv: str | None = None,
                    splits: Sequence[str] = ("val",),
                    columns: tuple[str, str] = ("articleType", "baseColour"), workers: int = 2,
                    cache_dir: str | None = ".cache", shopper: bool = False,
                    holdout_fraction: float = 0.1, also: Sequence[str] = (),
                    reference: str | None = None, unseen: bool = False,
                    unseen_fraction: float = 0.2, image_size: int | None = None,
                    id_column: str = "id", confusions: int = 0,
                    colour_weights: Sequence[str] = (), shop: "ShopSet | None" = None,
                    centre_crop: float = 0.0) -> dict[str, dict]:
    """One result per split, each a table of rows (the model, ``also``'s models, the frozen
    ImageNet ``reference`` such as 'efficientnet-lite0', raw pixels) by figures. The catalogue
    is decoded once per input size and embedded once per model for all splits.

    ``unseen``: the unseen kinds (about ``unseen_fraction`` of the first column's values, the
    stable hash training leaves out) queried only among themselves, every photo of them a
    query: how the model does on kinds it never saw.

    ``colour_weights`` ('0', 'default', ...) adds rows for models with a colour part at those
    weights; ``shop`` scores a second shop (:class:`ShopSet`) with the same models."""
    cat = load_catalogue(data, csv, id_column)
    first, second = columns
    missing = [c for c in columns if not cat.rows or c not in cat.rows[0]]
    if missing:
        have = ", ".join(cat.rows[0]) if cat.rows else "none"
        raise SystemExit(f"{data}: no column {', '.join(missing)} to score on (its columns: "
                         f"{have}); choose two with --columns")
    names = {"model": model, **{Path(m).name: m for m in also}}
    reference_name = f"frozen ImageNet {reference} {REFERENCE_SIZE}px" if reference else None
    if reference_name:
        names[reference_name] = f"imagenet:{reference}"
        names[f"{reference_name} grey"] = f"imagenet-grey:{reference}"
    embedders = {name: make_embedder(m, image_size if name == "model" else None)
                 for name, m in names.items()}
    variants = {label: (name, fn) for name, m in names.items()
                for label, fn in colour_variants(name, model_parts(m), colour_weights).items()}
    cat, squares = decode_for(cat, embedders, workers, cache_dir, "decode catalogue")
    labels = {first: label_codes(cat.column(first)),
              f"{first}+{second}": label_codes(cat.column(first), cat.column(second))}
    emb = {name: embed(squares[spec.size]) for name, (spec, embed) in embedders.items()}
    emb |= {label: fn(emb[name]) for label, (name, fn) in variants.items()}
    pix_size = max(32, min(squares))
    gallery_pixels = pixel_features(squares[pix_size])
    centre = gallery_pixels.mean(axis=0)
    emb[PIXELS] = l2_normalise(gallery_pixels - centre)

    is_unseen, kinds = unseen_mask(cat.column(first), unseen_fraction)
    results = {}
    for split in splits:
        queries = query_indices(cat, split, holdout_fraction)
        if split == "holdout":  # training never saw the unseen kinds: not its holdout either
            queries = queries[~is_unseen[queries]]
        if len(queries) == 0:
            raise SystemExit(f"no '{split}' photos in {data}")
        per = {n: per_query_table(e, queries, labels) for n, e in emb.items()}
        result = {"model_file": model, "data": data, "split": split,
                  "queries": int(len(queries)), "gallery": int(len(cat)),
                  "table": _means(per), **_margins(per, reference_name)}
        if confusions:
            result["confusions"] = confused_pairs(emb["model"], queries, cat.column(first),
                                                  confusions)
        if shopper:
            shots = {size: shopper_squares(cat, queries, size, workers, cache_dir)
                     for size in squares}
            result["shopper"] = {}
            shot_emb = {name: embed(shots[spec.size]) for name, (spec, embed) in embedders.items()}
            shot_emb |= {label: fn(shot_emb[name]) for label, (name, fn) in variants.items()}
            if centre_crop:  # test-time: the shot and its centre crop, embeddings averaged
                spec, embed = embedders["model"]
                crops = embed(centre_crops(shots[spec.size], centre_crop))
                label = f"model + centre crop {centre_crop:g} (queries only)"
                shot_emb[label] = l2_normalise(shot_emb["model"] + crops)
            for name, vectors in shot_emb.items():  # the crop row searches the model's gallery
                result["shopper"][name] = shopper_table(emb.get(name, emb["model"]), queries,
                                                        vectors, labels)
            shot_pixels = l2_normalise(pixel_features(shots[pix_size]) - centre)
            result["shopper"][PIXELS] = shopper_table(emb[PIXELS], queries, shot_pixels, labels)
        results[split] = result
    if unseen:
        rows = np.flatnonzero(is_unseen)
        sub = {k: v[rows] for k, v in labels.items()}
        everyone = np.arange(len(rows))
        per = {n: per_query_table(e[rows], everyone, sub) for n, e in emb.items()}
        results["unseen"] = {
            "model_file": model, "data": data, "split": "unseen kinds",
            "kinds": sorted(kinds), "queries": int(len(rows)), "gallery": int(len(rows)),
            "table": _means(per), **_margins(per, reference_name)}
    if shop is not None:
        results["shop"] = evaluate_shop(shop, embedders, variants, reference_name, workers,
                                        cache_dir, shopper)
    return results


@dataclass
class ShopSet:
    """A second shop to score: a folder (+ CSV), its id, group and type columns; ``holdout``
    > 0 keeps only the groups a stable hash holds apart (what ``train.adapt`` never trains on)
    as queries and gallery."""

    data: str
    csv: str | None = None
    id_column: str = "article_id"
    group_column: str = "product_code"
    type_column: str = "product_type_name"
    holdout: float = 0.0


def evaluate_shop(shop: ShopSet, embedders: dict[str, Embedder], variants: dict,
                  reference_name: str | None, workers: int, cache_dir: str | None,
                  shopper: bool = False) -> dict:
    """Every model (and raw pixels) on the second shop: the figures of ``train/shop_eval.py``
    with margins over the frozen reference on the same queries; ``shopper``: also every photo
    re-shot as a synthetic shopper photo, searched against the shop's clean photos (does the
    item come back, item@10; are the others of its type, shopper P@10 type)."""
    from train.metrics import own_item_rank, top_k_neighbours
    from train.shop_eval import group_queries, held_apart_groups, shop_per_query

    cat = load_catalogue(shop.data, shop.csv, shop.id_column)
    for column in (shop.group_column, shop.type_column):
        if not cat.rows or column not in cat.rows[0]:
            have = ", ".join(cat.rows[0]) if cat.rows else "none"
            raise SystemExit(f"{shop.data}: no column {column!r} (its columns: {have}); name "
                             f"them with --group-column / --type-column")
    if shop.holdout > 0:
        cat = cat.subset(list(np.flatnonzero(held_apart_groups(cat.column(shop.group_column),
                                                                 shop.holdout))))
    cat, squares = decode_for(cat, embedders, workers, cache_dir, "decode shop")
    emb = {name: embed(squares[spec.size]) for name, (spec, embed) in embedders.items()}
    emb |= {label: fn(emb[name]) for label, (name, fn) in variants.items()}
    pixels = pixel_features(squares[max(32, min(squares))])
    emb[PIXELS] = l2_normalise(pixels - pixels.mean(axis=0))
    groups, types = cat.column(shop.group_column), cat.column(shop.type_column)
    per = {n: shop_per_query(e, groups, types) for n, e in emb.items()}
    if shopper:
        everyone = np.arange(len(cat))
        type_codes = label_codes(types)
        shots = {size: shopper_squares(cat, everyone, size, workers, cache_dir)
                 for size in squares}
        shot_emb = {name: embed(shots[spec.size]) for name, (spec, embed) in embedders.items()}
        shot_emb |= {label: fn(shot_emb[name]) for label, (name, fn) in variants.items()}
        for name, vectors in shot_emb.items():
            gallery, shots_n = l2_normalise(emb[name]), l2_normalise(vectors)
            ranks = own_item_rank(gallery, everyone, shots_n)
            nn = top_k_neighbours(gallery, everyone, 10, query_vectors=shots_n)
            # per design-query rows, like the figures above (queries: photos with a sibling)
            rows = group_queries(label_codes(groups))
            per[name]["shopper item@10"] = (ranks[rows] < 10).astype(np.float64)
            per[name]["shopper P@10 type"] = (type_codes[nn[rows]] == type_codes[rows, None]
                                              ).mean(axis=1)
    queries = len(next(iter(per.values()))["P@1 type"])
    return {"data": shop.data, "split": "held-apart groups" if shop.holdout else "all",
            "queries": int(queries), "gallery": int(len(cat)), "table": _means(per),
            **_margins(per, reference_name)}


def confused_pairs(emb: np.ndarray, queries: np.ndarray, kinds: list[str],
                   top: int) -> list[list]:
    """The pairs of kinds most often mixed up at P@1 (the query's nearest neighbour is of the
    other kind): [kind, kind, count], most frequent first. Where precision is lost, and
    whether it is lost between near-synonyms."""
    from collections import Counter

    from train.metrics import top_k_neighbours

    nearest = top_k_neighbours(l2_normalise(emb), queries, 1)[:, 0]
    pairs = Counter(tuple(sorted((kinds[q], kinds[n]))) for q, n in zip(queries, nearest)
                    if kinds[q] != kinds[n])
    return [[a, b, c] for (a, b), c in pairs.most_common(top)]


def _means(per: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, float]]:
    return {n: {k: float(v.mean()) for k, v in figs.items()} for n, figs in per.items()}


def _margins(per: dict[str, dict[str, np.ndarray]], reference: str | None) -> dict:
    """{"margins": {model: {figure: [margin, low, high]}}} over the frozen reference, on the
    same queries, with 95% paired bootstrap intervals; nothing without a reference."""
    if reference is None or reference not in per:
        return {}
    ref = per[reference]
    return {"margins": {n: {k: list(paired_margin(v, ref[k])) for k, v in figs.items()}
                        for n, figs in per.items() if n != reference}}


def evaluate(model: str, data: str, csv: str | None = None, split: str = "val",
             columns: tuple[str, str] = ("articleType", "baseColour"), workers: int = 2,
             cache_dir: str | None = ".cache", shopper: bool = False,
             holdout_fraction: float = 0.1, **options) -> dict:
    """One split's result; with ``unseen=True`` the unseen-kinds table rides along in it."""
    results = evaluate_splits(model, data, csv, (split,), columns, workers, cache_dir, shopper,
                              holdout_fraction, **options)
    result = results[split]
    if "unseen" in results:
        result["unseen"] = results["unseen"]["table"]
        if "margins" in results["unseen"]:
            result["unseen_margins"] = results["unseen"]["margins"]
        result["unseen_kinds"] = results["unseen"]["kinds"]
        result["unseen_queries"] = results["unseen"]["queries"]
    if "shop" in results:
        shop = results["shop"]
        result["shop"] = shop["table"]
        result["shop_info"] = {k: shop[k] for k in ("data", "split", "queries", "gallery")}
        if "margins" in shop:
            result["shop_margins"] = shop["margins"]
    return result


SUMMARY = (("table", "P@1 {t}"), ("table", "P@10 {t}"), ("table", "P@10 {t}+{c}"),
           ("shopper", "item@10"), ("shopper", "P@10 {t}"),
           ("unseen", "P@1 {t}"), ("unseen", "P@10 {t}"), ("unseen", "P@10 {t}+{c}"),
           ("shop", "same design Hit@10"), ("shop", "same design P@1"), ("shop", "P@10 type"),
           ("shop", "P@1 type"), ("shop", "shopper item@10"), ("shop", "shopper P@10 type"))


def summary_table(result: dict, columns: tuple[str, str]) -> str:
    """One row per model, the headline figures of every set side by side."""
    t, c = columns
    keys = [(part, fig.format(t=t, c=c)) for part, fig in SUMMARY if part in result]
    names = {"table": "val", "shopper": "shopper", "unseen": "unseen kinds", "shop": "shop"}
    head = "| features | " + " | ".join(f"{names[p]} {f}" for p, f in keys) + " |"
    lines = [head, "|" + "---|" * (len(keys) + 1)]
    for row in result["table"]:
        cells = [f"{result[p][row][f]:.3f}" if f in result[p].get(row, {}) else "-"
                 for p, f in keys]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def margin_table(result: dict, columns: tuple[str, str]) -> str:
    """Each model's margin over the frozen reference, val and unseen kinds, with intervals."""
    t, c = columns
    figs = [f"P@1 {t}", f"P@10 {t}", f"P@10 {t}+{c}"]
    parts = [("val", "margins", figs)] + ([("unseen", "unseen_margins", figs)]
                                          if "unseen_margins" in result else [])
    if "shop_margins" in result:
        parts.append(("shop", "shop_margins", ["same design Hit@10", "P@10 type"]))
    head = "| features | " + " | ".join(f"{n} {f}" for n, _, fs in parts for f in fs) + " |"
    lines = [head, "|" + "---|" * (sum(len(fs) for *_, fs in parts) + 1)]
    for name in result["margins"]:
        cells = [result[key][name][f] if name in result[key] else (float("nan"),) * 3
                 for _, key, fs in parts for f in fs]
        lines.append(f"| {name} | " + " | ".join(f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]"
                                                  for m, lo, hi in cells) + " |")
    return "\n".join(lines)


def format_table(result: dict, key: str = "table") -> str:
    rows = result[key]
    cols = list(next(iter(rows.values())))
    head = "| features | " + " | ".join(cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for name, vals in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{vals[c]:.3f}" if c in vals else "-"
                                                  for c in cols) + " |")
    return "\n".join(lines)


def _is_weight(text: str) -> bool:
    try:
        return 0.0 <= float(text) <= 1.0
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> dict:
    p = OneLineParser(prog="python -m train.evaluate", description=__doc__,
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
    p.add_argument("--unseen", action="store_true",
                   help="also score the unseen kinds (about --unseen-fraction of the first "
                   "column's values, never trained on) queried among themselves")
    p.add_argument("--unseen-fraction", type=float, default=0.2,
                   help="the share of kinds training held out (its --unseen-fraction)")
    p.add_argument("--reference", default="efficientnet-lite0",
                   help="frozen ImageNet backbone scored in the same run ('none' to skip)")
    p.add_argument("--also", action="append", default=[], metavar="MODEL",
                   help="another .onnx or checkpoint scored in the same run (repeatable)")
    p.add_argument("--image-size", type=int, default=None,
                   help="test a checkpoint at this input size (default: its training size)")
    p.add_argument("--id-column", default=None, help="CSV column holding the photo id "
                   "(default: the column whose values name the photos)")
    p.add_argument("--confusions", type=int, default=0, metavar="N",
                   help="also list the N pairs of kinds the model most often mixes up at P@1")
    p.add_argument("--colour-weights", default="0", metavar="W,W",
                   help="for models with a colour part, also score these colour weights "
                   "(0..1 or 'default'); '' for none")
    p.add_argument("--shop", default=None, metavar="DIR",
                   help="also score a second shop (a folder of photos + a CSV): same-design "
                   "Hit@10 / P@1 and type P@10 / P@1, every model beside the references")
    p.add_argument("--shop-csv", default=None, help="the second shop's CSV (default: found in "
                   "--shop)")
    p.add_argument("--shop-id-column", default=None, help="the second shop's photo id column "
                   "(default: the column whose values name its photos)")
    p.add_argument("--group-column", default="product_code",
                   help="second shop: the column naming one design in several colours")
    p.add_argument("--type-column", default="product_type_name",
                   help="second shop: the column naming the kind of item")
    p.add_argument("--shop-holdout", type=float, default=0.0, metavar="F",
                   help="second shop: score only the groups train.adapt holds apart at this "
                   "fraction (gallery = those groups)")
    p.add_argument("--centre-crop", type=float, default=0.0, metavar="SHARE",
                   help="with --shopper: also score the model with each shopper photo's "
                   "embedding averaged with that of its centre SHARE (e.g. 0.7)")
    p.add_argument("--cache-dir", default=".cache", help="decoded-photo cache")
    p.add_argument("--json", default=None, help="write the result here (default: beside a "
                   "checkpoint as NAME.evaluate.json; runs/evaluate/ for an .onnx model)")
    a = p.parse_args(argv)
    if not Path(a.data).is_dir():
        p.error(f"--data {a.data}: no such catalogue folder")
    model = a.checkpoint or a.model
    for m in [model, *a.also]:
        if not Path(m).is_file():
            p.error(f"{m}: no such model or checkpoint file")
    if a.image_size is not None and (a.image_size < 32 or a.image_size % 32):
        p.error(f"--image-size {a.image_size}: must be a positive multiple of 32")
    cols = [c.strip() for c in a.columns.split(",") if c.strip()]
    if len(cols) != 2:
        p.error(f"--columns {a.columns!r}: give exactly two label columns, e.g. "
                "articleType,baseColour")
    first, second = cols
    reference = None if a.reference.lower() == "none" else a.reference
    shop = None
    if a.shop:
        if not Path(a.shop).is_dir():
            p.error(f"--shop {a.shop}: no such folder")
        id_column = a.shop_id_column or detect_id_column(a.shop, a.shop_csv)
        shop = ShopSet(a.shop, a.shop_csv, id_column, a.group_column, a.type_column,
                       a.shop_holdout)
    weights = [w.strip() for w in a.colour_weights.split(",") if w.strip()]
    for w in weights:
        if w != "default" and not _is_weight(w):
            p.error(f"--colour-weights: {w!r} is not a number from 0 to 1 or 'default'")
    result = evaluate(model, a.data, a.csv, a.split, (first, second), cache_dir=a.cache_dir,
                      shopper=a.shopper, holdout_fraction=a.holdout_fraction, also=a.also,
                      reference=reference, unseen=a.unseen, unseen_fraction=a.unseen_fraction,
                      image_size=a.image_size,
                      id_column=a.id_column or detect_id_column(a.data, a.csv),
                      confusions=a.confusions, colour_weights=weights, shop=shop,
                      centre_crop=a.centre_crop)
    print(f"{result['queries']} {a.split} queries against {result['gallery']} photos "
          f"(query left out)\n" + format_table(result))
    if "shopper" in result:
        print("\nsynthetic shopper photos of the same queries against the clean catalogue "
              "(item@k: the item itself in the top k)\n" + format_table(result, "shopper"))
    if "unseen" in result:
        print(f"\nunseen kinds ({len(result['unseen_kinds'])} kinds never trained on, "
              f"{result['unseen_queries']} photos queried among themselves)\n"
              + format_table(result, "unseen"))
    if "shop" in result:
        info = result["shop_info"]
        print(f"\nsecond shop {info['data']} ({info['split']}: {info['queries']} queries whose "
              f"design has another photo, gallery {info['gallery']})\n"
              + format_table(result, "shop"))
    print("\nsummary\n" + summary_table(result, (first, second)))
    if result.get("confusions"):
        misses = round((1 - result["table"]["model"][f"P@1 {first}"]) * result["queries"])
        print(f"\nkinds most often mixed up at P@1 ({misses} misses in all)\n"
              + "\n".join(f"{c:5d}  {a} / {b}" for a, b, c in result["confusions"]))
    if "margins" in result:
        print("\nmargin over the frozen reference on the same queries [95% paired bootstrap "
              "interval]\n" + margin_table(result, (first, second)))
    if result["queries"] < 50:
        print(f"note: only {result['queries']} '{a.split}' queries (a CSV without a split column "
              f"gets about 10% of its ids as val by a stable hash): these figures are noisy")
    if a.json:
        out = Path(a.json)
    elif a.checkpoint:
        out = Path(model).with_name(Path(model).stem + ".evaluate.json")
    else:  # never write into the models folder (it may be read-only, and it is the repo's)
        out = Path("runs") / "evaluate" / (Path(model).stem + ".evaluate.json")
        out.parent.mkdir(parents=True, exist_ok=True)
    result["provenance"] = provenance([m for m in [model, *a.also] if Path(m).is_file()])
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out}")
    return result


if __name__ == "__main__":
    main()
