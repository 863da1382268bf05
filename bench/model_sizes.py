"""Image size and width against training time and query speed (quality needs a training run:
see docs/quality.md). ``python -m bench.model_sizes`` prints the table on its own.

Weights do not change speed, so freshly initialised networks are timed: one training step
(forward + backward of the reconstruction loss, channels_last, both cores) and one onnxruntime
fp32 query, per image."""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from bench.encoder_speed import _session, count_macs
from bench.timing import median_ms, table
from export.onnx import to_onnx_proto
from export.synthetic import generated_squares
from fai_infer.image.preprocess import PreprocessSpec, to_tensor
from train.model import AutoEncoder, EmbeddingModel, ModelConfig

GRID = [(64, 0.5), (96, 0.5), (128, 0.5), (64, 1.0), (128, 1.0), (224, 1.0)]
TRAIN_PHOTOS = 8473  # gradient photos per epoch on the shared Myntra train split


def train_ms_per_image(cfg: ModelConfig, batch: int, repeats: int) -> float:
    model = AutoEncoder(cfg).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, cfg.image_size, cfg.image_size).contiguous(
        memory_format=torch.channels_last)

    def step() -> None:
        recon, emb = model(x)
        loss = F.mse_loss(recon, x) + emb.square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return median_ms(step, repeats=repeats, warmup=1) / batch


def query_ms_per_image(cfg: ModelConfig, repeats: int) -> float:
    model = EmbeddingModel(AutoEncoder(cfg)).eval()
    session = _session(to_onnx_proto(model, cfg.image_size, 17).SerializeToString())
    x = to_tensor(generated_squares(cfg.image_size, 1, seed=3), PreprocessSpec(
        size=cfg.image_size))
    return median_ms(lambda: session.run(None, {"image": x}), repeats=repeats)


def model_size_rows(grid=GRID, repeats: int = 3) -> list[dict]:
    torch.set_num_threads(2)
    rows = []
    for size, width in grid:
        cfg = ModelConfig(image_size=size, width=width)
        autoencoder = AutoEncoder(cfg)
        batch = 8 if size * width >= 200 else 32
        train_ms = train_ms_per_image(cfg, batch, repeats)
        rows.append({"size": size, "width": width,
                     "params_m": sum(p.numel() for p in autoencoder.parameters()) / 1e6,
                     "encoder_gmac": count_macs(EmbeddingModel(autoencoder).eval(), size) / 1e9,
                     "train_ms_per_image": train_ms,
                     "epoch_min_est": train_ms * TRAIN_PHOTOS / 60_000,
                     "query_ms_batch1": query_ms_per_image(cfg, 5 * repeats)})
    return rows


COLUMNS = ["size", "width", "params_m", "encoder_gmac", "train_ms_per_image", "epoch_min_est",
           "query_ms_batch1"]


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m bench.model_sizes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    rows = model_size_rows(repeats=a.repeats)
    print(table(rows, COLUMNS))
    return rows


if __name__ == "__main__":
    main()
