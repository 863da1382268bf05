"""PNG plots people would rather look at than read: loss curves and reconstructions."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_history(history: list[dict], path: str | Path) -> None:
    if not history:
        return
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for key in ("train_recon", "holdout_recon"):
        axes[0].plot(epochs, [r[key] for r in history], marker="o", label=key)
    axes[0].set(title="reconstruction MSE", xlabel="epoch")
    axes[0].legend()
    for key in ("train_total", "holdout_total"):
        axes[1].plot(epochs, [r[key] for r in history], marker="o", label=key)
    p10 = [k for k in history[-1] if k.startswith("holdout_P@10")]
    if p10:
        twin = axes[1].twinx()
        for key in p10:
            twin.plot(epochs, [r.get(key, np.nan) for r in history], "--", label=key)
        twin.set_ylabel("holdout P@10")
        twin.legend(loc="center right", fontsize=7)
    axes[1].set(title="total loss", xlabel="epoch")
    axes[1].legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_reconstructions(images: np.ndarray, recons: np.ndarray, path: str | Path) -> None:
    """Top row: holdout photos (NCHW in [0,1]); bottom row: what the decoder makes of them."""
    n = len(images)
    if n == 0:
        return
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.4), squeeze=False)
    for i in range(n):
        for row, arr in enumerate((images, recons)):
            axes[row][i].imshow(np.clip(arr[i].transpose(1, 2, 0), 0, 1))
            axes[row][i].axis("off")
    axes[0][0].set_title("input", fontsize=8, loc="left")
    axes[1][0].set_title("reconstruction", fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
