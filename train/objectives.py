"""Training terms on top of reconstruction: label-aware and contrastive.

Reconstruction alone learns layout and colour blobs; these terms shape the pooled embedding so
that neighbours share what a shopper calls similar (type, colour), while the decoder keeps
training on the same bottleneck.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CosineClassifier(nn.Module):
    """Logits = scale * cos(embedding, class prototype): classes live on the same sphere the
    search runs on, so what the classifier separates, cosine search separates too."""

    def __init__(self, dim: int, classes: int, scale: float = 16.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, dim) * 0.01)
        self.scale = scale

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.scale * emb @ F.normalize(self.weight, dim=1).T


class LabelHeads(nn.Module):
    """One cosine classifier per label column (e.g. articleType, baseColour)."""

    def __init__(self, dim: int, classes: dict[str, int]):
        super().__init__()
        self.heads = nn.ModuleDict({k: CosineClassifier(dim, n) for k, n in classes.items()})

    def loss(self, emb: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        total = emb.new_zeros(())
        for name, head in self.heads.items():
            t = targets[name]
            known = t >= 0
            if known.any():
                total = total + F.cross_entropy(head(emb[known]), t[known], label_smoothing=0.1)
        return total


def supervised_contrastive(emb: torch.Tensor, group: torch.Tensor,
                           temperature: float = 0.1) -> torch.Tensor:
    """SupCon (Khosla et al. 2020) on L2-normalised embeddings: rows with the same ``group``
    (the same photo's other view, or the same labels) are pulled together, the rest pushed
    apart. Rows without any positive in the batch are ignored."""
    sims = emb @ emb.T / temperature
    n = emb.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=emb.device)
    sims = sims.masked_fill(eye, float("-inf"))
    pos = (group[:, None] == group[None, :]) & ~eye
    log_prob = sims - torch.logsumexp(sims, dim=1, keepdim=True)
    has_pos = pos.any(dim=1)
    if not has_pos.any():
        return emb.new_zeros(())
    mean_pos = (log_prob.masked_fill(~pos, 0).sum(1) / pos.sum(1).clamp(min=1))[has_pos]
    return -mean_pos.mean()


def instance_contrastive(views: torch.Tensor, clean: torch.Tensor,
                         temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent between camera-like views and the clean photos they came from: each view must
    pick its own photo out of the batch's, and each photo its view (rows of ``views`` may hold
    several views per photo, photo-major repeats of ``clean``'s rows). Label-free, so it keeps
    the instance detail that category labels erase."""
    n = clean.shape[0]
    owner = torch.arange(views.shape[0], device=views.device) % n
    logits = views @ clean.T / temperature
    to_clean = F.cross_entropy(logits, owner)
    first = logits[:n]  # one view per photo for the reverse direction
    to_view = F.cross_entropy(first.T, torch.arange(n, device=views.device))
    return 0.5 * (to_clean + to_view)


def joint_label_groups(targets: dict[str, torch.Tensor], columns: list[str],
                       sizes: dict[str, int]) -> torch.Tensor:
    """One integer per row for the joint value of ``columns`` (e.g. articleType+baseColour),
    the positives of SupCon. Columns missing from ``targets`` are ignored (all missing: the
    first target column); an unknown value (-1) counts as a value of its own."""
    present = [c for c in columns if c in targets] or [next(iter(targets))]
    group = torch.zeros_like(targets[present[0]])
    for col in present:
        group = group * (sizes[col] + 1) + targets[col] + 1
    return group
