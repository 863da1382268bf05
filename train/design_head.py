"""python -m train.design_head: a garment part that learns designs from more than one shop.

v3's garment part is a fixed 256-d PCA of the pooled backbone features beside a 128-d part
shaped by Myntra's labels; on another shop it lost to plain frozen features. This replaces that
head, keeping v3's backbone (it sees grey photos: garment, not colour) frozen:

1. the backbone's GeM-pooled features of every photo, clean and ``--views`` augmented views
   (``train.data.augment``, the training transform), are computed once and cached;
2. a linear projection is trained on them (InfoNCE, in-batch negatives): two photos of one
   hm-dev design in different colours are positives (``--group-column``, "garment, not
   colour"), as are two views of one Myntra photo; a SupCon term on Myntra's first label
   column (``--type-weight``) keeps kinds together;
3. hm-dev's designs are split by a stable hash of the group: ``--shop-holdout`` of them are
   held apart (never trained on, never chosen on: reported only), a ``--choice`` share of the
   rest chooses among ``--type-weights``, the rest trains; Myntra trains on train minus its
   holdout (the choice) and reports on val;
4. the table compares, on the held-apart designs (gallery = their photos, at colour 0) and
   Myntra val, each with and without the catalogue's whitening: frozen ImageNet Lite0 on grey
   photos, v3's garment part, v3's backbone pooled at full width (average, GeM), the projection
   trained on Myntra alone, and on Myntra and hm-dev (the gain from one more shop).

The chosen projection is saved (``--out``) for ``train.compose``, which builds the shipped model.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fai_infer.cli.util import OneLineParser
from fai_infer.index.whitening import fit
from fai_infer.model.provenance import provenance
from fai_infer.image.preprocess import PreprocessSpec
from train.data import AugmentConfig, augment, decode_all, detect_id_column, load_catalogue
from train.feature_store import cached_array
from train.evaluate import imagenet_embedder, module_embedder, onnx_embedder, query_indices
from train.metrics import label_codes, l2_normalise, paired_margin, per_query_table
from train.shop_eval import design_split, shop_per_query

SIZE = 224  # v3's chosen test size: the head is trained on what the runtime will feed it
HM_FIGURES = ("same design Hit@10", "P@10 type")
TAU = 0.05
TYPE_TAU = 0.1
BATCH = 256
SHOP_SHARE = 96  # of every batch: design pairs from the second shop, the rest Myntra photos


class BackbonePooled(torch.nn.Module):
    """A checkpoint's backbone on what it sees (luma for a grey model), GeM-pooled (p = 3, as
    the shipped head pools); ``with_average``: [average | GeM], for the ablation rows."""

    def __init__(self, ae, with_average: bool = False):
        super().__init__()
        self.encoder, self.cfg, self.with_average = ae.encoder, ae.cfg, with_average

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from train.model import backbone_input

        z = self.encoder(backbone_input(x, self.cfg))
        gem = z.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3)
        return torch.cat([z.mean(dim=(2, 3)), gem], dim=1) if self.with_average else gem


def backbone_pooled(checkpoint: str):
    """-> (spec, squares -> [average | GeM] features, a key of the backbone's weights: what
    the cached features depend on)."""
    import hashlib

    from train.checkpoint import load_checkpoint

    ae, spec, _ = load_checkpoint(checkpoint)
    digest = hashlib.sha256()
    for name, tensor in sorted(ae.encoder.state_dict().items()):
        digest.update(name.encode() + tensor.contiguous().numpy().tobytes())
    spec = PreprocessSpec(size=SIZE, mean=spec.mean, std=spec.std)
    return spec, module_embedder(BackbonePooled(ae, with_average=True), spec), \
        digest.hexdigest()[:12]


def shop_features(name: str, paths: list, embed, views: int, cache: Path, workers: int
                  ) -> dict[str, np.ndarray]:
    """{'clean', 'aug0', ...}: pooled features of every photo and of its augmented views."""
    cache.mkdir(parents=True, exist_ok=True)
    squares, _ = decode_all(paths, PreprocessSpec(size=SIZE), workers, str(cache / "sq"),
                            desc=f"decode {name}")
    out = {"clean": cached_array(cache / f"{name}-clean.npy", lambda: embed(squares))}
    gen = torch.Generator().manual_seed(0)
    cfg = AugmentConfig(clutter_prob=0.6, colour_cast=0.1, blur_prob=0.5)
    for v in range(views):
        def make() -> np.ndarray:
            batches = []
            for i in range(0, len(squares), 256):
                x = torch.from_numpy(squares[i : i + 256]).permute(0, 3, 1, 2).float() / 255
                batches.append((augment(x, cfg, gen) * 255).round().byte()
                               .permute(0, 2, 3, 1).numpy())
            return embed(np.concatenate(batches))
        out[f"aug{v}"] = cached_array(cache / f"{name}-aug{v}.npy", make)
    return out


def train_projection(my: dict, my_rows: np.ndarray, my_types: np.ndarray, hm: dict | None,
                     hm_groups: list[np.ndarray], dim: int, type_weight: float, epochs: int,
                     seed: int = 0, noise: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """-> (mean, W): the projection ``(f - mean) @ W`` (W: features x dim), PCA-initialised.
    ``noise``: rows of int8 - fp32 pooled features (``export.int8_noise``); one random row is
    added to every input, so the projection learns to ignore what the int8 twin changes."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    Y = torch.from_numpy(np.stack(list(my.values())))  # (views, photos, features)
    X = torch.from_numpy(np.stack(list(hm.values()))) if hm_groups else None
    rows_all = [Y[0][my_rows]]
    if hm_groups:
        rows_all.append(X[0][np.concatenate(hm_groups)])
    stacked = torch.cat(rows_all)
    mean = stacked.mean(0)
    _, _, v = torch.linalg.svd(stacked - mean, full_matrices=False)
    W = torch.nn.Parameter(v[:dim].T.clone())
    opt = torch.optim.AdamW([W], lr=1e-3, weight_decay=0.0)
    shop = min(SHOP_SHARE, len(hm_groups))
    n_my = min(BATCH - shop, len(my_rows))
    photos = len(my_rows) + sum(len(g) for g in hm_groups)
    steps = max(1, epochs * photos // BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    types = torch.from_numpy(my_types)
    nv = Y.shape[0]
    noise_rows = torch.from_numpy(np.asarray(noise, np.float32)) if noise is not None else None
    members = np.concatenate(hm_groups) if hm_groups else np.zeros(0, np.int64)
    sizes = np.array([len(g) for g in hm_groups], np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if hm_groups else sizes
    for _ in range(steps):
        rows = rng.choice(my_rows, n_my, replace=False)
        i = rng.integers(nv, size=n_my)
        j = (i + rng.integers(1, nv, size=n_my)) % nv if nv > 1 else i
        a, b = [Y[i, rows]], [Y[j, rows]]
        if shop:  # two different photos of each of `shop` designs, any view of each
            g = rng.choice(len(hm_groups), shop, replace=False)
            first = rng.integers(sizes[g])
            second = (first + 1 + rng.integers(sizes[g] - 1)) % sizes[g]
            r1, r2 = members[starts[g] + first], members[starts[g] + second]
            a.append(X[rng.integers(nv, size=shop), r1])
            b.append(X[rng.integers(nv, size=shop), r2])
        a, b = torch.cat(a), torch.cat(b)
        if noise is not None:
            a = a + noise_rows[rng.integers(len(noise_rows), size=len(a))]
            b = b + noise_rows[rng.integers(len(noise_rows), size=len(b))]
        za = F.normalize((a - mean) @ W, dim=1)
        zb = F.normalize((b - mean) @ W, dim=1)
        logits = za @ zb.T / TAU
        target = torch.arange(len(za))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        if type_weight:
            z = torch.cat([za[:n_my], zb[:n_my]])
            lab = types[rows].repeat(2)
            sim = (z @ z.T / TYPE_TAU).fill_diagonal_(-1e9)
            pos = (lab[:, None] == lab[None, :]).fill_diagonal_(False)
            logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
            loss = loss + type_weight * (-(logp * pos).sum(1) / pos.sum(1).clamp(min=1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return mean.numpy(), W.detach().numpy()


def trained(path: Path, make) -> tuple[np.ndarray, np.ndarray]:
    """A projection from the cache, or trained and cached (reruns of the report are cheap)."""
    if path.is_file():
        with np.load(path) as z:
            return z["mean"], z["W"]
    mean, W = make()
    np.savez(path, mean=mean, W=W)
    return mean, W


def project(f: np.ndarray, mean: np.ndarray, W: np.ndarray) -> np.ndarray:
    return l2_normalise((f - mean) @ W)


def whitened(v: np.ndarray) -> np.ndarray:
    w = fit(v, (0, v.shape[1]))
    return v if w is None else w.apply(v)


def figures(hm_v: np.ndarray, hm_labels: tuple, my_v: np.ndarray, my_queries: np.ndarray,
            my_labels: dict) -> dict[str, np.ndarray]:
    """Per-query figures: the second shop's (its gallery = ``hm_v``) and Myntra's."""
    per = shop_per_query(hm_v, *hm_labels)
    out = {k: per[k] for k in HM_FIGURES}
    out |= per_query_table(my_v, my_queries, my_labels)
    return out


def parse(argv):
    p = OneLineParser(prog="python -m train.design_head", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="models/fai-default.pt",
                   help="the checkpoint whose backbone the head sits on (v3's)")
    p.add_argument("--v3-model", default="models/fai-lite0-v3.onnx",
                   help="v3's exported file, for its row in the table ('' to leave it out)")
    p.add_argument("--data", default="../shared/data/myntra",
                   help="Myntra folder (train, holdout to choose, val to report)")
    p.add_argument("--shop", default="../shared/data/hm-dev",
                   help="the second shop, split by --group-column")
    p.add_argument("--group-column", default="product_code",
                   help="the column naming one design in several colours")
    p.add_argument("--type-column", default="product_type_name",
                   help="the second shop's kind column (reported)")
    p.add_argument("--label-column", default="articleType", help="Myntra's kind column")
    p.add_argument("--shop-holdout", type=float, default=0.4,
                   help="share of the shop's groups held apart (reported only)")
    p.add_argument("--choice", type=float, default=0.15,
                   help="share of the other groups that chooses among --type-weights")
    p.add_argument("--dim", type=int, default=512, help="the projection's size")
    p.add_argument("--type-weights", default="0.3,1.0",
                   help="SupCon weights to choose among (on the choice designs)")
    p.add_argument("--epochs", type=int, default=20,
                   help="passes over the cached features")
    p.add_argument("--views", type=int, default=2, help="augmented views per photo")
    p.add_argument("--cache", default=".cache/design-head",
                   help="cached features and heads, per backbone")
    p.add_argument("--workers", type=int, default=2,
                   help="decoding threads")
    p.add_argument("--int8-noise", default=None, metavar="FILE",
                   help="export.int8_noise's residuals: train the projection to ignore them")
    p.add_argument("--noise-scale", type=float, default=1.0,
                   help="--int8-noise rows are multiplied by this (more: a sturdier twin)")
    p.add_argument("--out", default="runs/design-head.pt",
                   help="the chosen projection, for train.compose")
    p.add_argument("--json", default="docs/design-head.json",
                   help="the report ('' for none)")
    a = p.parse_args(argv)
    for path in (a.checkpoint, a.v3_model, a.int8_noise):
        if path and not Path(path).is_file():
            p.error(f"{path}: no such file")
    if not 0 < a.shop_holdout < 1 or not 0 < a.choice < 1:
        p.error("--shop-holdout and --choice are shares between 0 and 1")
    return a


def main(argv: list[str] | None = None) -> dict:
    a = parse(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    noise = np.load(a.int8_noise) * a.noise_scale if a.int8_noise else None
    tag = f"-int8noise{a.noise_scale:g}" if noise is not None else ""
    spec, embed, key = backbone_pooled(a.checkpoint)
    cache = Path(a.cache) / f"backbone-{key}"  # the features depend on the backbone alone
    hm = load_catalogue(a.shop, None, detect_id_column(a.shop, None))
    my = load_catalogue(a.data, None, detect_id_column(a.data, None))
    hm_f = shop_features("hm", hm.paths, embed, a.views, cache, a.workers)
    my_f = shop_features("my", my.paths, embed, a.views, cache, a.workers)
    channels = hm_f["clean"].shape[1] // 2
    gem = lambda d: {k: np.ascontiguousarray(v[:, channels:]) for k, v in d.items()}  # noqa
    hm_g, my_g = gem(hm_f), gem(my_f)

    groups = np.array(hm.column(a.group_column))
    apart, choice = design_split(list(groups), a.shop_holdout, a.choice)
    train_hm = ~apart & ~choice
    codes = label_codes(list(groups))
    by_group: dict[int, list[int]] = {}
    for r in np.flatnonzero(train_hm):
        by_group.setdefault(int(codes[r]), []).append(int(r))
    hm_groups = [np.array(v) for v in by_group.values() if len(v) >= 2]
    val, holdout = query_indices(my, "val"), query_indices(my, "holdout")
    my_train = np.setdiff1d(np.setdiff1d(np.arange(len(my)), val), holdout)
    kinds = label_codes(my.column(a.label_column))
    my_labels = {a.label_column: kinds}
    types = np.array(hm.column(a.type_column))
    log(f"hm-dev: {apart.sum()} photos held apart ({len(set(groups[apart]))} designs), "
        f"{choice.sum()} choose, {train_hm.sum()} train ({len(hm_groups)} designs with two or "
        f"more photos); Myntra: {len(my_train)} train, {len(holdout)} choose, {len(val)} val")

    def scored(vec_hm: np.ndarray, vec_my: np.ndarray, rows: np.ndarray, queries: np.ndarray,
               whiten: bool) -> dict[str, np.ndarray]:
        h = l2_normalise(vec_hm[rows])
        m = l2_normalise(vec_my)
        if whiten:
            h, m = whitened(h), whitened(m)
        return figures(h, (list(groups[rows]), list(types[rows])), m, queries, my_labels)

    # choose the type weight on the choice designs and Myntra's holdout
    choice_rows = np.flatnonzero(choice)
    p10 = f"P@10 {a.label_column}"
    base = scored(hm_g["clean"], my_g["clean"], choice_rows, holdout, False)
    grid, heads = [], {}
    for tw in [float(x) for x in a.type_weights.split(",")]:
        t0 = time.time()
        mean, W = trained(cache / f"head-{tw:g}-{a.dim}-{a.epochs}-{len(hm_groups)}{tag}.npz",
                          lambda: train_projection(my_g, my_train, kinds, hm_g, hm_groups,
                                                   a.dim, tw, a.epochs, noise=noise))
        heads[tw] = (mean, W)
        per = scored(project(hm_g["clean"], mean, W), project(my_g["clean"], mean, W),
                     choice_rows, holdout, False)
        gains = [per["same design Hit@10"].mean() - base["same design Hit@10"].mean(),
                 per[p10].mean() - base[p10].mean()]
        grid.append({"type_weight": tw, "choice same design Hit@10":
                     round(float(per["same design Hit@10"].mean()), 4),
                     f"holdout {p10}": round(float(per[p10].mean()), 4),
                     "worst gain": round(float(min(gains)), 4),
                     "seconds": round(time.time() - t0, 1)})
        log(f"type weight {tw}: {grid[-1]}")
    chosen = max(grid, key=lambda g: g["worst gain"])["type_weight"]
    mean, W = heads[chosen]
    my_only = trained(cache / f"head-{chosen:g}-{a.dim}-{a.epochs}-myntra-only{tag}.npz",
                      lambda: train_projection(my_g, my_train, kinds, None, [], a.dim, chosen,
                                               a.epochs, noise=noise))

    # report on the held-apart designs and Myntra val
    rows = np.flatnonzero(apart)
    grey_spec, grey_embed = imagenet_embedder(grey=True)
    grey_hm = cached_array(cache / "hm-frozen-grey.npy", lambda: grey_embed(decode_all(
        hm.paths, PreprocessSpec(size=SIZE), a.workers, str(cache / "sq"))[0]))
    grey_my = cached_array(cache / "my-frozen-grey.npy", lambda: grey_embed(decode_all(
        my.paths, PreprocessSpec(size=SIZE), a.workers, str(cache / "sq"))[0]))
    candidates = {
        "frozen Lite0, grey photos": (grey_hm, grey_my),
        "v3 pooled, average (full width)": (hm_f["clean"][:, :channels],
                                            my_f["clean"][:, :channels]),
        "v3 pooled, GeM (full width)": (hm_g["clean"], my_g["clean"]),
        "projection, Myntra only": (project(hm_g["clean"], *my_only),
                                    project(my_g["clean"], *my_only)),
        "projection, Myntra + hm-dev designs": (project(hm_g["clean"], mean, W),
                                                project(my_g["clean"], mean, W)),
    }
    if a.v3_model:
        v3_spec, v3_embed = onnx_embedder(a.v3_model)
        from fai_infer.model.encoder import Encoder

        g0, g1 = Encoder(a.v3_model).info.parts.garment
        sq = lambda c: decode_all(c.paths, PreprocessSpec(size=v3_spec.size),  # noqa: E731
                                  a.workers, str(cache / "sq"))[0]
        v3_hm = cached_array(cache / "hm-v3.npy", lambda: v3_embed(sq(hm)))
        v3_my = cached_array(cache / "my-v3.npy", lambda: v3_embed(sq(my)))
        candidates = {"v3 garment part": (v3_hm, v3_my), **candidates}
        candidates["v3 garment part"] = tuple(v[:, g0:g1] for v in candidates["v3 garment part"])
    per_row: dict[str, dict[str, np.ndarray]] = {}
    for name, (h, m) in candidates.items():
        per_row[name] = scored(h, m, rows, val, False)
        per_row[f"{name}, whitened"] = scored(h, m, rows, val, True)
    table = {n: {k: round(float(v.mean()), 4) for k, v in per.items()}
             for n, per in per_row.items()}
    new = "projection, Myntra + hm-dev designs"
    margins = {f"{new} - {ref}": {k: [round(x, 4) for x in paired_margin(
                   per_row[new][k], per_row[ref][k])] for k in per_row[new]}
               for ref in ("frozen Lite0, grey photos, whitened", "projection, Myntra only",
                           "v3 garment part, whitened") if ref in per_row}
    for name, t in table.items():
        log(f"{name:50s} " + "  ".join(f"{k} {v:.3f}" for k, v in t.items()))
    result = {
        "command": "python -m train.design_head " + " ".join(argv if argv is not None
                                                             else sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "provenance": provenance([m for m in (a.checkpoint, a.v3_model) if m]),
        "checkpoint": a.checkpoint,
        "split": {"hm-dev held apart photos": int(apart.sum()), "hm-dev choice photos":
                  int(choice.sum()), "hm-dev train photos": int(train_hm.sum()),
                  "Myntra train": int(len(my_train)), "Myntra holdout (choice)": int(len(holdout)),
                  "Myntra val (report)": int(len(val))},
        "criterion": "max over type weights of the smaller gain over v3's GeM-pooled features "
                     "on the choice designs (same design Hit@10) and Myntra holdout (P@10)",
        "grid": grid, "chosen": {"type_weight": chosen, "dim": a.dim, "epochs": a.epochs},
        "table": table, "margins": margins,
    }
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"mean": torch.from_numpy(mean), "weight": torch.from_numpy(W.T.copy()),
                "pooling": "gem", "size": SIZE, "chosen": result["chosen"],
                "split": {"shop_holdout": a.shop_holdout, "choice": a.choice,
                          "group_column": a.group_column},
                "checkpoint": a.checkpoint}, a.out)
    print(json.dumps({"chosen": result["chosen"], new: table[new]}))
    return result


if __name__ == "__main__":
    main()
