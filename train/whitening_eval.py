"""python -m train.whitening_eval: choose the catalogue whitening on two shops, never on one.

The runtime whitens the garment part of every catalogue on the catalogue's own vectors
(``fai_infer.index.whitening``). Its two knobs, the kept dimensions ``d`` and the shrinkage
``s``, are chosen here on hm-dev's held-apart product codes (the stable hash ``train.adapt``
and ``train.evaluate --shop-holdout`` use) AND Myntra val, each whitening fitted on the gallery
being searched (the held-apart codes' photos; the whole Myntra catalogue), as a shop would.

Photos are embedded once per model and cached (``--cache``), so the sweep over ``d`` and ``s``
is numpy in seconds. Rows: the shipped model, frozen ImageNet Lite0 on colour and on grey
photos, each with and without whitening, and (``--pooled``) the shipped backbone's raw pooled
features without its PCA head. hm-dev figures are at colour 0 (the garment alone), Myntra's
at the model's default colour weight. Margins are paired bootstrap intervals on the same
queries (:func:`train.metrics.paired_margin`).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from fai_infer.cli.util import OneLineParser
from fai_infer.model.parts import EmbeddingParts
from train.data import detect_id_column, load_catalogue
from fai_infer.index.whitening import from_spectrum, spectrum
from train.feature_store import cached_array
from train.evaluate import decode_for, imagenet_embedder, model_parts, module_embedder, \
    onnx_embedder, query_indices
from train.metrics import label_codes, paired_margin, per_query_table
from train.shop_eval import held_apart_groups, shop_per_query

V3, FROZEN, GREY, POOLED = "v3", "frozen", "frozen grey", "v3 pooled (no head)"


def pooled_embedder(checkpoint: str):
    """The shipped checkpoint's backbone on luma, globally pooled, L2-normalised: the features
    its garment head projects from (the ablation 'no lossy PCA')."""
    import torch

    from train.checkpoint import load_checkpoint
    from train.model import backbone_input

    ae, spec, _ = load_checkpoint(checkpoint)

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.pool = ae.encoder, ae.head.pool

        def forward(self, x):
            f = self.pool(self.encoder(backbone_input(x, ae.cfg)))
            return torch.nn.functional.normalize(f, dim=1)

    return spec, module_embedder(Pooled(), spec)


def embedders(model: str, checkpoint: str | None, rows: Sequence[str]) -> dict[str, tuple]:
    """The rows' embedders (each made only when asked for: torch loads are slow here)."""
    makers = {V3: lambda: onnx_embedder(model), FROZEN: imagenet_embedder,
              GREY: lambda: imagenet_embedder(grey=True)}
    if checkpoint:
        makers[POOLED] = lambda: pooled_embedder(checkpoint)
    return {name: make() for name, make in makers.items() if name in rows}


@dataclass
class Shop:
    """One shop's cached vectors and the labels its figures need."""

    vectors: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    queries: np.ndarray | None = None  # Myntra: val rows; hm-dev: every row with a sibling


def embed_shop(name: str, cat, models: dict, cache: Path, workers: int) -> dict[str, np.ndarray]:
    """Every model's vectors for ``cat`` (decoded once), each cached as CACHE/NAME-MODEL.npy;
    ``cat`` is narrowed to the photos that decode, the same rows for every model."""
    cat, squares = decode_for(cat, models, workers, str(cache / "squares"), f"decode {name}")
    out = {}
    for label, (spec, embed) in models.items():
        file = cache / f"{name}-{label.replace(' ', '_')}.npy"
        out[label] = cached_array(file, lambda: embed(squares[spec.size]))
        print(f"{name}: {label} {out[label].shape}", file=sys.stderr, flush=True)
    (cache / f"{name}-ids.json").write_text(json.dumps(list(cat.ids)))
    return cat, out


def load_shops(a, models: dict) -> tuple[Shop, Shop]:
    """hm-dev's held-apart codes (gallery = those photos, queries = those with a sibling) and
    Myntra (gallery = every photo, queries = val), both embedded by every model."""
    hm = load_catalogue(a.shop, None, detect_id_column(a.shop, None))
    hm = hm.subset(list(np.flatnonzero(held_apart_groups(hm.column(a.group_column),
                                                         a.shop_holdout))))
    hm, hm_vec = embed_shop("hm-held-apart", hm, models, Path(a.cache), a.workers)
    my = load_catalogue(a.data, None, detect_id_column(a.data, None))
    my, my_vec = embed_shop("myntra", my, models, Path(a.cache), a.workers)
    first, second = a.columns
    hm_shop = Shop(hm_vec, {"group": hm.column(a.group_column), "type": hm.column(a.type_column)})
    my_shop = Shop(my_vec, {first: label_codes(my.column(first)),
                            f"{first}+{second}": label_codes(my.column(first),
                                                             my.column(second))},
                   query_indices(my, "val"))
    return hm_shop, my_shop


def parse(argv: list[str] | None):
    p = OneLineParser(prog="python -m train.whitening_eval", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/fai-default.onnx", help="the shipped .onnx file")
    p.add_argument("--pooled", default=None, metavar="CHECKPOINT",
                   help="also score this checkpoint's raw pooled backbone features (no head)")
    p.add_argument("--data", default="../shared/data/myntra", help="Myntra folder (val queries)")
    p.add_argument("--shop", default="../shared/data/hm-dev", help="the second shop's folder")
    p.add_argument("--group-column", default="product_code")
    p.add_argument("--type-column", default="product_type_name")
    p.add_argument("--shop-holdout", type=float, default=0.4, metavar="F",
                   help="hm-dev: the share of product codes held apart (train.adapt's hash)")
    p.add_argument("--columns", default="articleType,baseColour")
    p.add_argument("--cache", default="/tmp/fai-whitening", help="vectors and decoded photos")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--dims", default="128,256,384,full", help="kept dimensions to sweep")
    p.add_argument("--shrinkage", default="0,0.1,0.25,0.5,1", help="shrinkages to sweep")
    p.add_argument("--rows", default=f"{V3},{FROZEN},{GREY},{POOLED}",
                   help="which features to score (comma-separated; the v3 and frozen grey rows "
                   "are needed for the margins)")
    p.add_argument("--embed-only", action="store_true", help="embed and cache, then stop")
    p.add_argument("--json", default="docs/whitening-eval.json")
    a = p.parse_args(argv)
    a.columns = tuple(c.strip() for c in a.columns.split(","))
    if len(a.columns) != 2:
        p.error(f"--columns {','.join(a.columns)}: give exactly two label columns")
    for path in (a.model, a.pooled):
        if path and not Path(path).is_file():
            p.error(f"{path}: no such model file")
    return a


HM_FIGURES = ("same design Hit@10", "P@10 type")


def my_figures(first: str, second: str) -> tuple[str, str, str]:
    return (f"P@1 {first}", f"P@10 {first}", f"P@10 {first}+{second}")


_SPECTRA: dict[tuple[int, tuple[int, int]], object] = {}


def whitened(vectors: np.ndarray, span: tuple[int, int], dims: int | None,
             shrinkage: float) -> np.ndarray:
    """``vectors`` whitened on their own garment span (the catalogue is the gallery); the
    spectrum is computed once per array, the sweep only rescales it."""
    key = (id(vectors), span)
    if key not in _SPECTRA:
        _SPECTRA[key] = spectrum(vectors, span)
    width = span[1] - span[0]
    w = from_spectrum(_SPECTRA[key], shrinkage, dims if dims is not None else
                      (width if shrinkage <= 0 else None))
    return vectors if w is None else w.apply(vectors)


def score(name: str, hm: Shop, my: Shop, parts: EmbeddingParts, dims: int | None,
          shrinkage: float | None, first: str, second: str) -> dict[str, np.ndarray]:
    """Per-query figures of one row: hm-dev at colour 0, Myntra at the default weight.
    ``shrinkage`` None: not whitened."""
    hm_v, my_v = hm.vectors[name], my.vectors[name]
    if shrinkage is not None:
        hm_v = whitened(hm_v, parts.garment, dims, shrinkage)
        my_v = whitened(my_v, parts.garment, dims, shrinkage)
    if parts.has_colour:
        hm_v = parts.stored_as(hm_v, 0.0)
    per = shop_per_query(hm_v, hm.labels["group"], hm.labels["type"])
    out = {k: per[k] for k in HM_FIGURES}
    mine = per_query_table(my_v, my.queries, my.labels)
    out |= {k: mine[k] for k in my_figures(first, second)}
    return out


def parts_of(name: str, model: str, dim: int) -> EmbeddingParts:
    return (model_parts(model) if name == V3 else None) or EmbeddingParts.whole(dim)


def gain(per: dict, base: dict, figures: Sequence[str]) -> float:
    return float(np.mean([per[f].mean() - base[f].mean() for f in figures]))


def sweep(hm: Shop, my: Shop, names: Sequence[str], model: str, dims: Sequence[int | None],
          shrinkages: Sequence[float], columns: tuple[str, str]) -> dict:
    """Every (d, s) for every row; the criterion, fixed beforehand: the larger of the two
    shops' worst mean gain over the same features unwhitened (hm-dev: its two figures;
    Myntra: its three), so a choice that helps one shop and costs the other loses."""
    first, second = columns
    out: dict = {}
    for name in names:
        parts = parts_of(name, model, hm.vectors[name].shape[1])
        base = score(name, hm, my, parts, None, None, first, second)
        grid = []
        for d in dims:
            for s in shrinkages:
                if d is not None and d >= parts.garment[1] - parts.garment[0]:
                    continue  # 'full' covers it
                per = score(name, hm, my, parts, d, s, first, second)
                hm_gain = gain(per, base, HM_FIGURES)
                my_gain = gain(per, base, my_figures(first, second))
                grid.append({"dims": d or "full", "shrinkage": s,
                             "hm_gain": hm_gain, "myntra_gain": my_gain,
                             "worst": min(hm_gain, my_gain),
                             **{k: float(v.mean()) for k, v in per.items()}})
                print(f"{name:22s} d={str(d or 'full'):>5s} s={s:<5g} hm {hm_gain:+.4f} "
                      f"myntra {my_gain:+.4f}", file=sys.stderr, flush=True)
        out[name] = {"unwhitened": {k: float(v.mean()) for k, v in base.items()},
                     "grid": grid}
    return out


def best(grid: list[dict], invertible_only: bool) -> dict:
    rows = [g for g in grid if g["dims"] == "full" and g["shrinkage"] > 0] \
        if invertible_only else grid
    return max(rows, key=lambda g: g["worst"])


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((l for l in text.splitlines() if l.startswith("flags")), "")
    return sorted({f for f in line.split() if f.startswith(("avx", "fma", "sse4"))})


def main(argv: list[str] | None = None) -> dict | None:
    a = parse(argv)
    models = embedders(a.model, a.pooled, [r.strip() for r in a.rows.split(",")])
    hm, my = load_shops(a, models)
    if a.embed_only:
        return None
    first, second = a.columns
    dims = [None if d.strip() == "full" else int(d) for d in a.dims.split(",")]
    shrinkages = [float(s) for s in a.shrinkage.split(",")]
    names = list(models)
    grid = sweep(hm, my, names, a.model, dims, shrinkages, a.columns)
    chosen = best(grid[V3]["grid"], invertible_only=True)
    per_row: dict[str, dict[str, np.ndarray]] = {}
    for name in names:
        parts = parts_of(name, a.model, hm.vectors[name].shape[1])
        per_row[name] = score(name, hm, my, parts, None, None, first, second)
        pick = chosen if name == V3 else best(grid[name]["grid"], invertible_only=False)
        d = None if pick["dims"] == "full" else int(pick["dims"])
        label = f"{name} whitened (d={pick['dims']}, s={pick['shrinkage']:g})"
        per_row[label] = score(name, hm, my, parts, d, pick["shrinkage"], first, second)
        if name == V3:  # the runtime's own default, and the best truncated one beside it
            top = best(grid[V3]["grid"], invertible_only=False)
            if top is not chosen:
                d = None if top["dims"] == "full" else int(top["dims"])
                per_row[f"{name} whitened (d={top['dims']}, s={top['shrinkage']:g}; "
                        f"not invertible)"] = score(name, hm, my, parts, d, top["shrinkage"],
                                                    first, second)
    figures = HM_FIGURES + my_figures(first, second)
    grey_w = next((n for n in per_row if n.startswith(f"{GREY} whitened")), None)
    v3_w = next(n for n in per_row if n.startswith(f"{V3} whitened"))
    margins = {} if grey_w is None else {
        f"{v3_w} - {grey_w}": {f: list(paired_margin(per_row[v3_w][f], per_row[grey_w][f]))
                               for f in figures},
        f"{v3_w} - {GREY}": {f: list(paired_margin(per_row[v3_w][f], per_row[GREY][f]))
                             for f in figures}}
    margins |= {
        f"{v3_w} - {V3}": {f: list(paired_margin(per_row[v3_w][f], per_row[V3][f]))
                           for f in figures}}
    header = ["features", "hm-dev held-apart design Hit@10 (colour 0)", "hm-dev type P@10",
              "Myntra val P@1", "Myntra val P@10", "Myntra type+colour P@10"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, per in per_row.items():
        lines.append(f"| {name} | " + " | ".join(f"{per[f].mean():.3f}" for f in figures)
                     + " |")
    table = "\n".join(lines)
    print(table)
    print("\npaired margins [95% bootstrap interval]")
    for pair, figs in margins.items():
        print(f"{pair}: " + "; ".join(f"{f} {m:+.3f} [{lo:+.3f}, {hi:+.3f}]"
                                      for f, (m, lo, hi) in figs.items()))
    result = {
        "command": "python -m train.whitening_eval " + " ".join(argv if argv is not None
                                                                  else sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": a.model, "model_sha256": hashlib.sha256(Path(a.model).read_bytes()).hexdigest(),
        "cpu": platform.processor() or platform.machine(), "cpu_flags": cpu_flags(),
        "hm_dev": {"data": a.shop, "held_apart_fraction": a.shop_holdout,
                   "gallery": int(len(hm.labels["group"])),
                   "queries": int(len(per_row[V3]["P@10 type"])), "colour": 0.0},
        "myntra": {"data": a.data, "queries": int(len(my.queries)),
                   "gallery": int(len(my.labels[first])), "colour": "model default"},
        "criterion": "max over (d, s) of min(hm-dev mean gain, Myntra mean gain) over the "
                     "same features unwhitened; the runtime's choice among invertible "
                     "(d = full, s > 0) maps",
        "chosen": {"dims": chosen["dims"], "shrinkage": chosen["shrinkage"]},
        "table": {n: {f: float(v.mean()) for f, v in per.items()} for n, per in per_row.items()},
        "margins": margins, "sweep": grid}
    Path(a.json).write_text(json.dumps(result, indent=2))
    print(f"chosen for the runtime: d={chosen['dims']} s={chosen['shrinkage']:g}; "
          f"written {a.json}")
    return result


if __name__ == "__main__":
    main()
