"""The convolutional autoencoders and their embedding heads, readable in one sitting.

Two encoder families share one ``AutoEncoder``:

- ``arch="seed"``: with the defaults (224x224, width 1.0, no normalisation) exactly the reference
  network: five 3x3 conv + ReLU + 2x2 max-pool stages (64, 128, 256, 512, 512 channels) down to
  7x7x512, and a mirrored decoder, 10,180,867 parameters. ``width`` and ``image_size`` give
  CPU-sized members of the same family; ``norm`` adds BatchNorm, which the seed lacks.
- ``arch="efficientnet-lite0"`` (lite1, lite2): the ImageNet-initialised family
  (``train/efficientnet_lite.py``) with a mirrored decoder, and a split embedding: a *general*
  part, a fixed PCA of the pooled features that keeps what ImageNet knows about any photo, and a
  *shop* part, a learned projection that the label and contrastive terms shape.

The embedding head (pooling + projection + L2 norm) is what export and search use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from train.colour import COLOUR_DIM, ColourHistogram
from train.colour_net import ColourNames
from train.efficientnet_lite import INPUT_MEAN, INPUT_STD, EfficientNetLite, LiteDecoder, VARIANTS

SEED_CHANNELS = (64, 128, 256, 512, 512)
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, what OpenCV's grey conversion uses
ARCHES = ("seed", *VARIANTS)


@dataclass
class ModelConfig:
    image_size: int = 224
    width: float = 1.0  # seed family only
    norm: bool = False  # seed family only
    pooling: str = "gem"  # avg | gem | flatten
    embed_dim: int = 256
    arch: str = "seed"  # seed | efficientnet-lite0 | efficientnet-lite1 | efficientnet-lite2
    general_dim: int = 0  # lite: dims of the embedding that are a fixed PCA of ImageNet features
    general_weight: float = 0.5  # lite: share of the squared norm given to the general part
    grey: bool = False  # lite: the backbone sees the photo's luma only (garment, not colour)
    colour: bool = False  # lite: append the fixed colour histogram (train/colour.py) after it
    colour_weight: float = 0.25  # share of the squared norm given to the colour part
    head: str = "split"  # lite: split ([general PCA | shop]) or projection (one learned map)
    colour_names: tuple[str, ...] = ()  # lite, colour: a learned colour part over these names

    def channels(self) -> list[int]:
        return [max(8, int(round(c * self.width))) for c in SEED_CHANNELS]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        out = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "colour_names" in out:
            out["colour_names"] = tuple(out["colour_names"])
        return cls(**out)


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


def make_pool(pooling: str) -> nn.Module:
    if pooling == "avg":
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if pooling == "gem":
        return GeM()
    raise ValueError(f"unknown pooling {pooling!r} for this family: use avg or gem")


class SplitHead(nn.Module):
    """Pooled features -> [general | shop], each L2-normalised, weighted, concatenated.

    The general part is ``(f - mean) @ basis.T`` with a fixed PCA basis of the frozen ImageNet
    features (set by :meth:`set_general_basis` before training; a buffer, never trained), so the
    instance detail ImageNet features carry survives whatever the labels pull the shop part to.
    ``general_weight`` w gives the two parts squared norms w and 1 - w: the result is unit."""

    def __init__(self, features: int, pooling: str, general_dim: int, shop_dim: int,
                 general_weight: float):
        super().__init__()
        if general_dim < 0 or shop_dim < 0 or general_dim + shop_dim == 0:
            raise ValueError(f"embedding split {general_dim} general + {shop_dim} shop is empty")
        if general_dim > features:
            raise ValueError(f"general_dim {general_dim} exceeds the {features} features")
        self.pool = make_pool(pooling)
        self.general_dim, self.shop_dim = general_dim, shop_dim
        self.register_buffer("pca_mean", torch.zeros(features))
        self.register_buffer("pca_basis", torch.eye(features)[:general_dim].clone())
        self.proj = nn.Linear(features, shop_dim) if shop_dim else None
        w = general_weight if general_dim and shop_dim else float(general_dim > 0)
        self.register_buffer("weights", torch.tensor([w, 1.0 - w]).sqrt())

    @torch.no_grad()
    def set_general_basis(self, features: torch.Tensor) -> None:
        """PCA of (n, features) frozen-backbone features -> the general part's projection."""
        mean = features.mean(0)
        _, _, v = torch.linalg.svd(features - mean, full_matrices=False)
        self.pca_mean.copy_(mean)
        self.pca_basis.copy_(v[: self.general_dim])

    def parts(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.pool(z)
        out = {"pooled": f}
        pieces = []
        if self.general_dim:
            out["general"] = F.normalize((f - self.pca_mean) @ self.pca_basis.T, dim=1)
            pieces.append(self.weights[0] * out["general"])
        if self.proj is not None:
            out["shop"] = F.normalize(self.proj(f), dim=1)
            pieces.append(self.weights[1] * out["shop"])
        out["embedding"] = torch.cat(pieces, dim=1)
        return out

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.parts(z)["embedding"]


def luma(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> its BT.601 luma in all three channels. Linear, so it holds for the
    normalised photo too when the channels share one mean and std (the ImageNet family's do)."""
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True).expand(-1, 3, -1, -1)


class Luma(nn.Module):
    """:func:`luma` as a module, to put in front of a backbone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return luma(x)


def backbone_input(x: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """What the backbone sees: the normalised photo, or (``grey``) its luma."""
    return luma(x) if cfg.grey else x


def search_embedding(encoder: nn.Module, head: nn.Module, colour: nn.Module | None,
                     cfg: ModelConfig, x: torch.Tensor) -> torch.Tensor:
    """The search embedding: the garment part (colour-blind when ``grey``), then (``colour``)
    the colour part, with squared norms 1 - colour_weight and colour_weight, so the whole is a
    unit vector and a query can reweigh the parts (the export records where each lies)."""
    garment = head(encoder(backbone_input(x, cfg)))
    if colour is None:
        return garment
    rgb = x * INPUT_STD[0] + INPUT_MEAN[0]
    w = cfg.colour_weight
    return torch.cat([garment * (1 - w) ** 0.5, colour(rgb) * w ** 0.5], dim=1)


class AutoEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32, got {cfg.image_size}")
        if cfg.arch not in ARCHES:
            raise ValueError(f"unknown arch {cfg.arch!r}: use one of {', '.join(ARCHES)}")
        self.cfg = cfg
        if (cfg.grey or cfg.colour) and cfg.arch == "seed":
            raise ValueError("grey and colour are options of the ImageNet family, not the seed")
        if not 0.0 < cfg.colour_weight < 1.0:
            raise ValueError(f"colour_weight must be in (0, 1), got {cfg.colour_weight}")
        self.colour: nn.Module | None = None
        if cfg.colour:
            self.colour = ColourNames(list(cfg.colour_names)) if cfg.colour_names \
                else ColourHistogram()
        if cfg.arch != "seed":
            self.encoder = EfficientNetLite(cfg.arch)
            self.decoder = LiteDecoder(self.encoder.out_channels)
            if cfg.head == "projection":  # train/design_head.py: trained on design positives
                self.head = EmbeddingHead(self.encoder.out_channels, 1, cfg.pooling,
                                          cfg.embed_dim)
            elif cfg.head == "split":
                self.head = SplitHead(self.encoder.out_channels, cfg.pooling, cfg.general_dim,
                                      cfg.embed_dim - cfg.general_dim, cfg.general_weight)
            else:
                raise ValueError(f"unknown head {cfg.head!r}: use split or projection")
            return
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

    def backbone_input(self, x: torch.Tensor) -> torch.Tensor:
        return backbone_input(x, self.cfg)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return search_embedding(self.encoder, self.head, self.colour, self.cfg, x)

    def parts(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything the training terms need from one forward pass: the reconstruction, the
        pooled features, the embedding and (split heads) its general and shop parts."""
        z = self.encoder(self.backbone_input(x))
        if isinstance(self.head, SplitHead):
            out = self.head.parts(z)
        else:
            pooled = self.head.pool(z)
            emb = F.normalize(self.head.proj(pooled), dim=1)
            out = {"embedding": emb, "shop": emb, "pooled": pooled}
        out["recon"] = self.decoder(z)
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(self.backbone_input(x))
        return self.decoder(z), self.head(z)


class EmbeddingModel(nn.Module):
    """Encoder + head only: what is exported to ONNX (the decoder stays behind)."""

    def __init__(self, ae: AutoEncoder):
        super().__init__()
        self.encoder, self.head, self.colour, self.cfg = ae.encoder, ae.head, ae.colour, ae.cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return search_embedding(self.encoder, self.head, self.colour, self.cfg, x)

    def parts(self) -> dict[str, list[int]]:
        """Where each part lies in the output: {name: [start, stop]} (what the runtime reads
        to weigh garment against colour at query time)."""
        if isinstance(self.head, EmbeddingHead):
            garment = self.head.proj.out_features
        else:
            garment = self.head.general_dim + self.head.shop_dim
        out = {"garment": [0, garment]}
        if self.colour is not None:
            colour_dim = len(self.colour.names) if isinstance(self.colour, ColourNames) \
                else COLOUR_DIM
            out["colour"] = [garment, garment + colour_dim]
        return out
