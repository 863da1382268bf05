"""python -m train: train the autoencoder on a folder of product photos."""

from __future__ import annotations

import argparse
import json

from train.config import add_dataclass_args, from_args
from train.loop import TrainConfig, Trainer


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Train the FAI convolutional autoencoder (reconstruction of augmented views "
                    "plus label-aware and contrastive terms) on a catalogue folder.")
    add_dataclass_args(parser, TrainConfig)
    cfg = from_args(TrainConfig, parser.parse_args(argv))
    metrics = Trainer(cfg).fit()
    print(json.dumps({"best_epoch": metrics["best_epoch"], "out": cfg.out,
                      "train_seconds": round(metrics["train_seconds"], 1)}))
    return metrics


if __name__ == "__main__":
    main()
