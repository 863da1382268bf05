"""python -m train: train the autoencoder on a folder of product photos.

``--config configs/NAME.json`` loads a named recipe; flags given beside it override it.
"""

from __future__ import annotations

import json
from pathlib import Path

from train.config import add_dataclass_args, from_args, load_recipe
from train.loop import TrainConfig, Trainer
from fai_infer.cli import OneLineParser


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    parser = OneLineParser(
        prog="python -m train",
        description="Train the FAI convolutional autoencoder (reconstruction of augmented views "
                    "plus label-aware, contrastive and distillation terms) on a catalogue "
                    "folder. Named recipes live in configs/; flags override them.")
    parser.add_argument("--config", default=None,
                        help="a named recipe, e.g. configs/lite0.json (flags override it)")
    add_dataclass_args(parser, TrainConfig)
    first, _ = parser.parse_known_args(argv)
    if first.config:
        parser.set_defaults(**load_recipe(first.config, TrainConfig, parser.error))
    ns = parser.parse_args(argv)
    cfg = from_args(TrainConfig, ns)
    if not Path(cfg.data).is_dir():
        parser.error(f"--data {cfg.data}: no such catalogue folder")
    if cfg.image_size < 32 or cfg.image_size % 32:
        parser.error(f"--image-size {cfg.image_size}: must be a positive multiple of 32")
    return cfg


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(argv)
    metrics = Trainer(cfg).fit()
    print(json.dumps({"best_epoch": metrics["best_epoch"], "out": cfg.out,
                      "train_seconds": round(metrics["train_seconds"], 1)}))
    return metrics


if __name__ == "__main__":
    main()
