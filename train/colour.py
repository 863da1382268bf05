"""The colour part of the embedding: a fixed, soft colour histogram of the garment, no weights.

The garment part of the embedding sees a grey photo, so it cannot tell a white hat from a black
one; this part says which colours the garment is made of, and the catalogue weighs the two at
query time ("this look" vs "this design in any colour"). It is hand-made rather than learned so
that it means the same in every shop and survives export exactly:

- the photo is averaged down to a 16x16 grid;
- each cell is weighed by how far its colour is from the photo's border (the studio backdrop,
  the letterbox padding, a table) and by a soft centre prior, plus a small floor, so a white
  shirt on a white backdrop is still "white";
- each cell's colour, in an opponent space (lightness, red-green, yellow-blue), is soft-binned
  on a coarse 3 x 5 x 5 grid (triangular kernels: a small shift of hue moves weight gradually);
- the histogram is normalised to sum 1 and square-rooted (the Hellinger map), so the dot product
  of two parts is the Bhattacharyya coefficient of the two colour distributions, in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GRID = 16
LIGHTNESS_BINS = 3
CHROMA_BINS = 5
CHROMA_RANGE = 0.5  # red-green and yellow-blue centres span -0.5..0.5 (inputs in [0, 1])
BACKDROP_SCALE = 0.02  # squared colour distance at which a cell counts as foreground (~63%)
CENTRE_SIGMA = 0.35  # of the photo's width
FLOOR = 0.03  # every cell keeps this much weight, so a white garment on white is still white
COLOUR_DIM = LIGHTNESS_BINS * CHROMA_BINS * CHROMA_BINS
VERSION = "colour-hist-v1"


def _soft_bins(v: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(N, P) values -> (N, P, B) triangular memberships that sum to 1 inside the range."""
    step = centres[1] - centres[0]
    v = v.clamp(float(centres[0]), float(centres[-1]))
    return (1 - (v.unsqueeze(-1) - centres).abs() / step).clamp(min=0)


class ColourHistogram(nn.Module):
    """(N, 3, H, W) photos with pixels in [0, 1] -> (N, COLOUR_DIM) unit colour descriptors."""

    def __init__(self):
        super().__init__()
        self.register_buffer("l_centres", torch.linspace(0, 1, LIGHTNESS_BINS), persistent=False)
        self.register_buffer("c_centres", torch.linspace(-CHROMA_RANGE, CHROMA_RANGE,
                                                         CHROMA_BINS), persistent=False)
        ys = (torch.arange(GRID, dtype=torch.float32) + 0.5) / GRID - 0.5
        prior = torch.exp(-(ys[:, None] ** 2 + ys[None, :] ** 2) / (2 * CENTRE_SIGMA ** 2))
        self.register_buffer("prior", prior.reshape(1, GRID * GRID), persistent=False)
        ring = torch.ones(GRID, GRID)
        ring[1:-1, 1:-1] = 0
        self.register_buffer("ring", (ring / ring.sum()).reshape(1, 1, GRID * GRID),
                             persistent=False)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        n = rgb.shape[0]
        cells = F.adaptive_avg_pool2d(rgb, GRID).reshape(n, 3, GRID * GRID)
        backdrop = (cells * self.ring).sum(dim=2, keepdim=True)
        distance = ((cells - backdrop) ** 2).sum(dim=1)
        weight = self.prior * (FLOOR + 1 - torch.exp(-distance / BACKDROP_SCALE))
        r, g, b = cells[:, 0], cells[:, 1], cells[:, 2]
        lightness = _soft_bins((r + g + b) / 3, self.l_centres)
        red_green = _soft_bins(r - g, self.c_centres)
        yellow_blue = _soft_bins((r + g) / 2 - b, self.c_centres)
        joint = (lightness.unsqueeze(-1) * red_green.unsqueeze(-2)).reshape(
            n, GRID * GRID, LIGHTNESS_BINS * CHROMA_BINS)
        joint = (joint.unsqueeze(-1) * yellow_blue.unsqueeze(-2)).reshape(
            n, GRID * GRID, COLOUR_DIM)
        hist = (weight.unsqueeze(-1) * joint).sum(dim=1)
        hist = hist / hist.sum(dim=1, keepdim=True).clamp(min=1e-8)
        return F.normalize(hist.clamp(min=0).sqrt(), dim=1)
