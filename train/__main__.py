"""python -m train: train the autoencoder on a folder of product photos.

``--config configs/NAME.json`` loads a named recipe; flags given beside it override it. With
``--init CHECKPOINT`` and no ``--config``, the recipe is the checkpoint's own (fine-tuning the
shipped model keeps its protections against forgetting).
"""

from __future__ import annotations

import json
from pathlib import Path

from train.config import add_dataclass_args, from_args, load_recipe
from train.loop import TimeBudgetSpent, TooFewPhotos, TrainConfig, Trainer
from fai_infer.cli.util import OneLineParser


# What a fine-tune does not take from the checkpoint it starts from: where the data is and
# what it is labelled with (the new shop's), and the run's own bookkeeping.
NOT_INHERITED = {"data", "csv", "id_column", "out", "init", "resume", "label_columns",
                 "contrastive_columns", "eval_columns", "unseen_column", "unseen_fraction",
                 "proxy_fraction", "limit", "cache_dir", "device", "max_minutes", "workers",
                 "group_column", "holdout_groups", "epoch_photos", "stop_on", "threads"}


def inherited_recipe(checkpoint: str, error) -> dict:
    """--init without --config: the recipe the checkpoint was trained with (its protections
    against forgetting, learning rates, augmentation, sizes), so fine-tuning the shipped model
    on a shop keeps what made it; flags still override it."""
    import torch

    if not Path(checkpoint).is_file():
        error(f"--init {checkpoint}: no such checkpoint file")
    try:
        trained = torch.load(checkpoint, map_location="cpu", weights_only=True)["train_config"]
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        error(f"--init {checkpoint}: not a training checkpoint ({str(exc)[:200]})")
    fields = TrainConfig.__dataclass_fields__
    return {k: v for k, v in trained.items() if k in fields and k not in NOT_INHERITED}


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    parser = OneLineParser(
        prog="python -m train",
        description="Train the FAI convolutional autoencoder (reconstruction of augmented views "
                    "plus label-aware, contrastive and distillation terms) on a catalogue "
                    "folder. Named recipes live in configs/; flags override them. The "
                    "defaults below are the small seed family's; the shipped model's recipe "
                    "is --config configs/lite0-v3.json, and --init CHECKPOINT brings the "
                    "checkpoint's own.")
    parser.add_argument("--config", default=None,
                        help="a named recipe, e.g. configs/lite0.json (flags override it)")
    add_dataclass_args(parser, TrainConfig)
    first, _ = parser.parse_known_args(argv)
    if first.config:
        parser.set_defaults(**load_recipe(first.config, TrainConfig, parser.error))
    elif first.init:
        parser.set_defaults(**inherited_recipe(first.init, parser.error))
    ns = parser.parse_args(argv)
    cfg = from_args(TrainConfig, ns)
    if not Path(cfg.data).is_dir():
        parser.error(f"--data {cfg.data}: no such catalogue folder")
    if cfg.image_size < 32 or cfg.image_size % 32:
        parser.error(f"--image-size {cfg.image_size}: must be a positive multiple of 32")
    return cfg


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(argv)
    try:
        trainer = Trainer(cfg)
    except (TooFewPhotos, TimeBudgetSpent) as exc:
        raise SystemExit(f"python -m train: error: {exc}") from None
    metrics = trainer.fit()
    print(json.dumps({"best_epoch": metrics["best_epoch"], "out": cfg.out,
                      "train_seconds": round(metrics["train_seconds"], 1)}))
    return metrics


if __name__ == "__main__":
    main()
