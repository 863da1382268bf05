"""python -m train.colour_train: learn the colour part (train/colour_net.py) from a shop's labels.

The garment part is colour-blind (it sees grey photos); this trains the small network that says
which colour a shopper would name the garment, from a catalogue's colour column (Myntra's
``baseColour``), on photos decoded at 64 px and augmented by the training transform
(``train.data.augment``: crops, light, colour casts, clutter). With ``--parser`` the network's
garment attention is pulled toward the garment parser's own garment mask (everything but
background, skin and hair) on the clean photos, so it learns to read the garment's pixels and
never needs the parser at run time.

Rows of the CSV's ``val`` split are never trained on; the catalogue's ``holdout`` part of train
(the stable hash every recipe choice here uses) is kept apart too and is where
``train.compose`` chooses the default colour weight.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fai_infer.cli.util import OneLineParser
from fai_infer.image.preprocess import PreprocessSpec
from train.config import add_dataclass_args, from_args, opt
from train.colour_net import GRID, VERSION, ColourNames
from train.data import AugmentConfig, augment, decode_all, detect_id_column, load_catalogue
from train.evaluate import query_indices

DECODE_SIZE = 64  # the network averages any input down to GRID cells; 64 px is plenty
MASK_GRID = GRID // 2  # the parser's garment mask is compared at half the network's grid
UNNAMED = {"", "NA", "N/A", "nan", "None"}


@dataclass
class ColourTrainConfig:
    data: str = opt("../shared/data/myntra", "catalogue folder (photos + CSV)")
    csv: str | None = opt(None, "the CSV (default: the one in --data)")
    colour_column: str = opt("baseColour", "the column naming each product's colour")
    parser: str | None = opt(None, "a garment parser .onnx whose garment masks guide where "
                                   "the part looks (e.g. models/fai-parser.onnx)")
    mask_weight: float = opt(0.5, "weight of the attention-vs-parser-mask term")
    epochs: int = opt(12, "passes over the training photos")
    batch_size: int = opt(128, "photos per step")
    lr: float = opt(3e-3, "peak learning rate (one-cycle)")
    min_count: int = opt(5, "colour names with fewer training photos are left out")
    seed: int = opt(0, "random seed")
    workers: int = opt(2, "decoding threads")
    cache_dir: str = opt(".cache", "where decoded photos are cached")
    out: str = opt("runs/colour-names.pt", "where the trained part is saved")


def colour_names(values: list[str], rows: np.ndarray, min_count: int) -> list[str]:
    """The names the part learns: those with at least ``min_count`` training photos."""
    counts: dict[str, int] = {}
    for r in rows:
        v = values[r].strip()
        if v not in UNNAMED:
            counts[v] = counts.get(v, 0) + 1
    return sorted(n for n, c in counts.items() if c >= min_count)


def garment_masks(parser_path: str, paths: list, workers: int, cache_dir: str) -> np.ndarray:
    """(N, MASK_GRID, MASK_GRID) share of each cell that the parser calls garment, on the same
    white-padded squares the colour part sees (decoded at the parser's own size)."""
    import cv2

    from fai_infer.model.parser import GarmentParser
    from tqdm import tqdm

    parser = GarmentParser(parser_path)
    squares, _ = decode_all(paths, PreprocessSpec(size=parser.spec.size), workers, cache_dir,
                            desc="decode for the parser")
    rest = [parser.groups.index(g) for g in ("background", "skin", "hair")]
    out = np.empty((len(squares), MASK_GRID, MASK_GRID), np.float32)
    for i, square in enumerate(tqdm(squares, desc="garment masks", leave=False)):
        probs = parser.probabilities(square, 4 * MASK_GRID, 4 * MASK_GRID)
        out[i] = cv2.resize(1 - probs[rest].sum(0), (MASK_GRID, MASK_GRID),
                            interpolation=cv2.INTER_AREA)
    return out.clip(0, 1)


def attention_loss(attention: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(mask-as-distribution || attention), both over the MASK_GRID x MASK_GRID cells."""
    att = F.avg_pool2d(attention.reshape(-1, 1, GRID, GRID), GRID // MASK_GRID).flatten(1)
    att = att / att.sum(dim=1, keepdim=True)
    target = mask.flatten(1) + 1e-4
    target = target / target.sum(dim=1, keepdim=True)
    return (target * (target.log() - att.clamp(min=1e-8).log())).sum(dim=1).mean()


def train_colour(cfg: ColourTrainConfig, log=print) -> dict:
    """Train and save {names, state, figures}; returns the figures."""
    torch.manual_seed(cfg.seed)
    cat = load_catalogue(cfg.data, cfg.csv, detect_id_column(cfg.data, cfg.csv))
    if not cat.rows or cfg.colour_column not in cat.rows[0]:
        raise SystemExit(f"{cfg.data}: no column {cfg.colour_column!r} (its columns: "
                         f"{', '.join(cat.rows[0]) if cat.rows else 'none'})")
    values = cat.column(cfg.colour_column)
    kept_apart = np.union1d(query_indices(cat, "val"), query_indices(cat, "holdout"))
    train_rows = np.setdiff1d(np.arange(len(cat)), kept_apart)
    names = colour_names(values, train_rows, cfg.min_count)
    if len(names) < 2:
        raise SystemExit(f"{cfg.colour_column}: fewer than two colour names with "
                         f"{cfg.min_count} photos each; nothing to learn")
    index = {n: i for i, n in enumerate(names)}
    labels = np.array([index.get(v.strip(), -1) for v in values])
    squares, errors = decode_all(cat.paths, PreprocessSpec(size=DECODE_SIZE), cfg.workers,
                                 cfg.cache_dir, desc="decode")
    train_rows = np.array([r for r in train_rows if labels[r] >= 0 and not errors[r]])
    masks = garment_masks(cfg.parser, cat.paths, cfg.workers, cfg.cache_dir) \
        if cfg.parser else None
    net = ColourNames(names)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps = max(1, cfg.epochs * len(train_rows) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps)
    augmentation = AugmentConfig(clutter_prob=0.6, colour_cast=0.1, blur_prob=0.5)
    rng, gen = np.random.default_rng(cfg.seed), torch.Generator().manual_seed(cfg.seed)
    start = time.time()
    from tqdm import tqdm

    for step in tqdm(range(steps), desc="colour part", leave=False):
        rows = rng.choice(train_rows, cfg.batch_size, replace=False)
        x = torch.from_numpy(squares[rows]).permute(0, 3, 1, 2).float() / 255
        clean = step % 2 == 0  # every other batch as photographed: there the masks apply
        out = net.parts(x if clean else augment(x, augmentation, gen))
        loss = F.cross_entropy(out["logits"], torch.from_numpy(labels[rows]),
                               label_smoothing=0.1)
        if masks is not None and clean:
            loss = loss + cfg.mask_weight * attention_loss(out["attention"],
                                                           torch.from_numpy(masks[rows]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    with torch.no_grad():
        def predict(rows: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(squares[rows]).permute(0, 3, 1, 2).float() / 255
            return net(x).numpy().argmax(1)
        holdout = np.array([r for r in query_indices(cat, "holdout") if labels[r] >= 0])
        accuracy = float((predict(holdout) == labels[holdout]).mean()) if len(holdout) else None
    figures = {"version": VERSION, "names": len(names), "train_photos": int(len(train_rows)),
               "holdout_accuracy": accuracy, "minutes": round((time.time() - start) / 60, 2),
               "parser_guided": bool(cfg.parser)}
    log(f"colour part: {len(names)} names, {len(train_rows)} photos, holdout accuracy "
        f"{accuracy:.3f}" if accuracy is not None else "colour part trained (no holdout)")
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"names": names, "state": net.state_dict(), "figures": figures,
                "config": vars(cfg)}, cfg.out)
    return figures


def main(argv: list[str] | None = None) -> dict:
    p = OneLineParser(prog="python -m train.colour_train", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_args(p, ColourTrainConfig)
    cfg = from_args(ColourTrainConfig, p.parse_args(argv))
    if not Path(cfg.data).is_dir():
        p.error(f"--data {cfg.data}: no such catalogue folder")
    if cfg.parser and not Path(cfg.parser).is_file():
        p.error(f"--parser {cfg.parser}: no such file")
    figures = train_colour(cfg, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
