"""The garment parser: EfficientNet-Lite0 features at four scales and a small FPN decoder.

Why this shape: the runtime runs it next to the encoder on a 2-core CPU, and the issue wants
parser + encoder within 2x the encoder alone, so the backbone stops before Lite0's 1280-channel
head (unused here) and the decoder is a handful of 1x1 convolutions plus one depthwise-separable
3x3 at 1/4 resolution. Logits come out at 1/4 of the input size; the caller upsamples them
(bilinear) to whatever resolution it needs, which is cheaper than doing it inside the graph.

Input is the runtime's preprocessing (``fai_infer.image.preprocess``): a letterboxed square scaled
to [-1, 1] (mean = std = 0.5), what the ImageNet Lite weights expect.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fai_infer.image.preprocess import PreprocessSpec
from train.efficientnet_lite import (INPUT_MEAN, INPUT_STD, EfficientNetLite, imagenet_backbone)
from train.parser_data import GROUPS

# Lite0 block indices whose outputs are the features at strides 4, 8, 16 and 32 (24, 40, 112
# and 320 channels).
TAPS = (2, 4, 10, 15)
TAP_CHANNELS = (24, 40, 112, 320)


@dataclass
class ParserConfig:
    """Everything needed to rebuild the network (stored in each checkpoint)."""

    image_size: int = 160
    pad_value: int = 128
    channels: int = 64
    groups: tuple[str, ...] = GROUPS

    def to_dict(self) -> dict:
        return {**asdict(self), "groups": list(self.groups)}

    @classmethod
    def from_dict(cls, data: dict) -> "ParserConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "groups" in known:
            known["groups"] = tuple(known["groups"])
        return cls(**known)

    def spec(self) -> PreprocessSpec:
        """The runtime preprocessing for this parser (stored in the ONNX metadata)."""
        return PreprocessSpec(size=self.image_size, pad_value=self.pad_value,
                              mean=INPUT_MEAN, std=INPUT_STD,
                              notes="letterbox to a square with pad_value, resize, x/255, "
                                    "(x-mean)/std: [-1, 1] for EfficientNet-Lite")


def conv_bn(c_in: int, c_out: int, k: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class GarmentParser(nn.Module):
    """(N, 3, S, S) in [-1, 1] -> (N, groups, S/4, S/4) logits."""

    def __init__(self, config: ParserConfig | None = None,
                 backbone: EfficientNetLite | None = None):
        super().__init__()
        self.config = config or ParserConfig()
        if self.config.image_size % 32:
            raise ValueError("image_size must be a multiple of 32 (the backbone's stride)")
        self.backbone = backbone if backbone is not None else EfficientNetLite("efficientnet-lite0")
        c = self.config.channels
        self.lateral = nn.ModuleList([conv_bn(ch, c) for ch in TAP_CHANNELS])
        self.smooth = nn.Sequential(conv_bn(c, c, 3, groups=c), conv_bn(c, c))
        self.classify = nn.Conv2d(c, len(self.config.groups), 1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        b = self.backbone
        x = F.relu6(b._bn0(b._conv_stem(x)))
        taps = []
        for i, block in enumerate(b._blocks):
            x = block(x)
            if i in TAPS:
                taps.append(x)
        return taps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps = self.features(x)
        y = self.lateral[-1](taps[-1])
        for tap, lat in zip(reversed(taps[:-1]), list(self.lateral)[-2::-1]):
            y = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
            y = y + lat(tap)
        return self.classify(self.smooth(y))


def build_parser(config: ParserConfig, pretrained: bool = True) -> GarmentParser:
    """A parser whose backbone starts from ImageNet (trainable again) or at random."""
    if pretrained:
        backbone = imagenet_backbone("efficientnet-lite0")
        for p in backbone.parameters():
            p.requires_grad_(True)
        backbone.train()
    else:
        backbone = EfficientNetLite("efficientnet-lite0")
    return GarmentParser(config, backbone)


def load_parser(path: str, device: str = "cpu") -> tuple[GarmentParser, dict]:
    """Checkpoint file -> (parser in eval mode, the raw checkpoint dict)."""
    ckpt = torch.load(path, map_location=device, weights_only=True)
    model = GarmentParser(ParserConfig.from_dict(ckpt["parser_config"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt
