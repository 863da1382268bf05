"""An exponential moving average of a model's weights (Polyak averaging).

Fine-tuning from ImageNet with a few epochs of labels is noisy: the averaged weights drift less
far from where they started and usually generalise a little better than the last step's. The
average is what the holdout is scored on and what ``best.pt`` stores.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


class WeightAverage:
    """Shadow copies of every floating-point tensor in ``model.state_dict()`` (parameters and
    BatchNorm statistics alike), updated after each optimiser step."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()
                       if v.dtype.is_floating_point}
        self.steps = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.steps += 1
        # The usual warm-up: early on the average follows the model closely.
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v.detach(), 1.0 - d)

    @contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[None]:
        """Run the block with the averaged weights in ``model``, then put the live ones back."""
        live = {k: v.detach().clone() for k, v in model.state_dict().items() if k in self.shadow}
        model.load_state_dict(self.shadow, strict=False)
        try:
            yield
        finally:
            model.load_state_dict(live, strict=False)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "steps": self.steps, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.steps = state["decay"], state["steps"]
        for k, v in state["shadow"].items():
            if k in self.shadow:
                self.shadow[k].copy_(v)
