"""The learned colour part: which colour a shopper would name the garment, read from its pixels.

The hand-made histogram (``train/colour.py``) weighs every cell that differs from the border,
so skin, hair, prints and shadows all vote, and its notion of "same colour" is a bin overlap,
not what a shop calls a colour. This part learns both from Myntra's ``baseColour``:

- the photo is averaged down to a GRID x GRID grid and each cell converted to CIE Lab (a
  perceptual space: equal steps look about equally different), beside its distance in Lab from
  the photo's border (the backdrop) and its place in the frame;
- a few 1x1 and 3x3 convolutions give each cell a garment score and a colour feature; the
  garment scores, softmaxed over the cells, say where the garment is (during training they are
  pulled toward the garment parser's own garment mask, so skin, hair and backdrop weigh nothing
  at run time without running the parser);
- the attended colour feature gives a distribution over the shop's colour names; the part is
  its square root, a unit vector, so the dot product of two parts is the Bhattacharyya
  coefficient of the two colour-name distributions: 1 for the same colour, near 0 for two
  colours no one would confuse.

It is small (about 21,000 weights, a few hundred thousand multiply-adds a photo) and exports to
plain ONNX ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GRID = 32
FEATURES = 32
VERSION = "colour-names-v1"

# sRGB (D65) -> XYZ, and the D65 white point, as the CIE defines them.
_RGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375),
               (0.2126729, 0.7151522, 0.0721750),
               (0.0193339, 0.1191920, 0.9503041))
_WHITE = (0.95047, 1.0, 1.08883)


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) sRGB in [0, 1] -> CIE Lab scaled to about [-1, 1] (L/100, a/100, b/100)."""
    rgb = rgb.clamp(0, 1)
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055).clamp(min=1e-6) ** 2.4,
                         rgb / 12.92)
    m = torch.tensor(_RGB_TO_XYZ, dtype=rgb.dtype, device=rgb.device)
    xyz = torch.einsum("ij,njhw->nihw", m, linear)
    xyz = xyz / torch.tensor(_WHITE, dtype=rgb.dtype, device=rgb.device).reshape(1, 3, 1, 1)
    eps = 216 / 24389
    f = torch.where(xyz > eps, xyz.clamp(min=1e-6) ** (1 / 3), (24389 / 27 * xyz + 16) / 116)
    lightness = 116 * f[:, 1:2] - 16
    a = 500 * (f[:, 0:1] - f[:, 1:2])
    b = 200 * (f[:, 1:2] - f[:, 2:3])
    return torch.cat([lightness, a, b], dim=1) / 100


class ColourNames(nn.Module):
    """(N, 3, H, W) photos with pixels in [0, 1] -> (N, len(names)) unit colour parts.

    ``parts(rgb)`` also returns the logits and the garment attention (what training needs)."""

    def __init__(self, names: list[str]):
        super().__init__()
        if len(names) < 2:
            raise ValueError("a colour part needs at least two colour names")
        self.names = list(names)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, GRID), torch.linspace(-1, 1, GRID),
                                indexing="ij")
        self.register_buffer("position", torch.stack([ys, xs]).unsqueeze(0), persistent=False)
        ring = torch.ones(GRID, GRID)
        ring[1:-1, 1:-1] = 0
        self.register_buffer("ring", (ring / ring.sum()).reshape(1, 1, GRID, GRID),
                             persistent=False)
        inputs = 3 + 3 + 1 + 2  # Lab, Lab minus backdrop, distance from backdrop, position
        self.cells = nn.Sequential(
            nn.Conv2d(inputs, FEATURES, 1), nn.ReLU(inplace=True),
            nn.Conv2d(FEATURES, FEATURES, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(FEATURES, FEATURES, 3, padding=1), nn.ReLU(inplace=True))
        self.where = nn.Conv2d(FEATURES, 1, 1)
        self.what = nn.Sequential(nn.Conv2d(FEATURES + 3, FEATURES, 1), nn.ReLU(inplace=True))
        self.classify = nn.Linear(FEATURES, len(names))

    def parts(self, rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        lab = srgb_to_lab(F.adaptive_avg_pool2d(rgb, GRID))
        backdrop = (lab * self.ring).sum(dim=(2, 3), keepdim=True)
        diff = lab - backdrop
        distance = diff.pow(2).sum(dim=1, keepdim=True).sqrt()
        position = self.position.expand(lab.shape[0], -1, -1, -1)
        h = self.cells(torch.cat([lab, diff, distance, position], dim=1))
        attention = torch.softmax(self.where(h).flatten(1), dim=1)  # (N, GRID*GRID)
        what = self.what(torch.cat([h, lab], dim=1)).flatten(2)  # (N, F, GRID*GRID)
        pooled = torch.bmm(what, attention.unsqueeze(2)).squeeze(2)
        logits = self.classify(pooled)
        part = torch.softmax(logits, dim=1).clamp(min=0).sqrt()
        return {"logits": logits, "attention": attention, "part": part}

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.parts(rgb)["part"]
