"""Saving and loading checkpoints: weights plus everything needed to rebuild and preprocess."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from fai_infer.image.preprocess import PreprocessSpec
from train.model import AutoEncoder, ModelConfig


def save_atomic(obj: dict[str, Any], path: str | Path) -> None:
    """torch.save to a temporary file then rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, device: str = "cpu"
                    ) -> tuple[AutoEncoder, PreprocessSpec, dict[str, Any]]:
    """-> (model in eval mode, its preprocessing spec, the raw checkpoint dict)."""
    ckpt = torch.load(path, map_location=device, weights_only=True)
    model = AutoEncoder(ModelConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    return model, PreprocessSpec.from_dict(ckpt["preprocess"]), ckpt
