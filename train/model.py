"""The seed convolutional autoencoder and its embedding head, readable in one sitting.

With the defaults (224x224, width 1.0, no normalisation) this is exactly the reference network:
five 3x3 conv + ReLU + 2x2 max-pool stages (64, 128, 256, 512, 512 channels) down to 7x7x512, and
a mirrored decoder, 10,180,867 parameters. ``width`` and ``image_size`` give CPU-sized members of
the same family; ``norm`` adds BatchNorm, which the seed lacks and which makes it trainable fast.
The embedding head (pooling + linear projection + L2 norm) is what export and search use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

SEED_CHANNELS = (64, 128, 256, 512, 512)


@dataclass
class ModelConfig:
    image_size: int = 224
    width: float = 1.0
    norm: bool = False
    pooling: str = "gem"  # avg | gem | flatten
    embed_dim: int = 256

    def channels(self) -> list[int]:
        return [max(8, int(round(c * self.width))) for c in SEED_CHANNELS]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def conv_block(c_in: int, c_out: int, norm: bool) -> list[nn.Module]:
    """3x3 'same' conv + (BatchNorm) + ReLU, the unit the whole network is built from."""
    if norm:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True)]
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True)]


class GeM(nn.Module):
    """Generalised-mean pooling: between average (p=1) and max pooling, p is learned."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p.clamp(min=1.0)
        return x.clamp(min=self.eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


class EmbeddingHead(nn.Module):
    """Bottleneck feature map -> compact L2-normalised search embedding."""

    def __init__(self, channels: int, grid: int, pooling: str, dim: int):
        super().__init__()
        if pooling == "avg":
            self.pool: nn.Module = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            features = channels
        elif pooling == "gem":
            self.pool = GeM()
            features = channels
        elif pooling == "flatten":
            self.pool = nn.Flatten()
            features = channels * grid * grid
        else:
            raise ValueError(f"unknown pooling {pooling!r}: use avg, gem or flatten")
        self.proj = nn.Linear(features, dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.pool(z)), dim=1)


class AutoEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32, got {cfg.image_size}")
        self.cfg = cfg
        ch = cfg.channels()
        enc: list[nn.Module] = []
        c_prev = 3
        for c in ch:
            enc += conv_block(c_prev, c, cfg.norm) + [nn.MaxPool2d(2)]
            c_prev = c
        self.encoder = nn.Sequential(*enc)
        # Decoder mirrors it: conv 512, then (up + conv) to 512, 256, 128, 64, then up + conv 3.
        dec: list[nn.Module] = conv_block(ch[4], ch[4], cfg.norm)
        for c_in, c_out in zip([ch[4], ch[4], ch[2], ch[1]], [ch[3], ch[2], ch[1], ch[0]]):
            dec += [nn.Upsample(scale_factor=2, mode="nearest")] + conv_block(c_in, c_out, cfg.norm)
        dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch[0], 3, 3, padding=1),
                nn.Sigmoid()]
        self.decoder = nn.Sequential(*dec)
        self.head = EmbeddingHead(ch[4], cfg.image_size // 32, cfg.pooling, cfg.embed_dim)

    def autoencoder_parameters(self) -> int:
        """Parameters of encoder + decoder: the figure the seed network is specified by."""
        return sum(p.numel() for m in (self.encoder, self.decoder) for p in m.parameters())

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return self.decoder(z), self.head(z)


class EmbeddingModel(nn.Module):
    """Encoder + head only: what is exported to ONNX (the decoder stays behind)."""

    def __init__(self, ae: AutoEncoder):
        super().__init__()
        self.encoder = ae.encoder
        self.head = ae.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))
