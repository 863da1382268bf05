"""A test size's cost as arithmetic, not as a stopwatch reading.

``train.choose`` used to leave out sizes whose encoder took longer than ``--max-ms`` per photo
*measured at run time*, so the shipped choice depended on how loaded the machine was that
minute (the same checkpoint kept or dropped 224 px; issue 23). GFLOPs of one photo through the
exported encoder are the same on every machine and every run: counted here from the
convolution and linear layers' shapes with forward hooks.
"""

from __future__ import annotations

import torch


def encoder_gflops(module: torch.nn.Module, size: int) -> float:
    """GFLOPs (2 x multiply-adds) of one ``size`` x ``size`` photo through ``module``."""
    total = 0

    def conv(m: torch.nn.Conv2d, _inp, out) -> None:
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += 2 * k * out.numel()

    def linear(m: torch.nn.Linear, _inp, out) -> None:
        nonlocal total
        total += 2 * m.in_features * out.numel()

    hooks = [m.register_forward_hook(conv) for m in module.modules()
             if isinstance(m, torch.nn.Conv2d)]
    hooks += [m.register_forward_hook(linear) for m in module.modules()
              if isinstance(m, torch.nn.Linear)]
    try:
        with torch.no_grad():
            module.eval()(torch.zeros(1, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
    return total / 1e9
