"""python docs/make_architecture.py: draws docs/architecture.png (modules and three flows).

Matplotlib only, positions by hand: the picture is meant to be read, not laid out by a tool.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

W, H = 2.9, 0.62  # box size
BOXES = {  # name: (x, y, label, package)
    "guard": (0.3, 8.2, "ui/guard.py\nHost, upload cap", "ui"),
    "http_api": (0.3, 7.1, "ui/http_api.py\nPOST /api/similar", "ui"),
    "app": (0.3, 6.0, "ui/app.py\nGradio page", "ui"),
    "service": (0.3, 4.9, "ui/service.py\nShopService (no Gradio)", "ui"),
    "cli": (3.7, 8.2, "fai_infer/cli/main.py\nfai index / query", "fai"),
    "api": (3.7, 6.6, "fai_infer/catalog/contract.py\nBaseCatalog: similar,\nbasket, display", "fai"),
    "catalog": (3.7, 4.9, "fai_infer/catalog/local.py\nCatalog (facade, lock)", "fai"),
    "milvus": (3.7, 3.8, "fai_infer/scale/\nmilvus_catalog.py", "fai"),
    "state": (7.1, 8.2, "store/state.py\nids, rows, apply(delta)", "store"),
    "replica": (7.1, 7.1, "store/replica.py\nopen, refresh, commit,\ncompact, manifest", "store"),
    "store": (7.1, 6.0, "store/journal.py + delta.py\nwriter lock, deltas", "store"),
    "storage": (7.1, 4.9, "store/generations.py\ngenerations, CURRENT", "store"),
    "filter_cache": (7.1, 3.8, "index/filter_cache.py +\nmetadata.py, filters.py", "store"),
    "encoder": (10.5, 8.2, "model/encoder.py\nonnxruntime", "fai"),
    "decode": (10.5, 7.1, "image/decode.py + header.py\nhostile input, limits", "fai"),
    "preprocess": (10.5, 6.0, "image/preprocess.py\npad, resize, normalise", "fai"),
    "vector_index": (10.5, 3.8, "index/vector_index.py +\nsearch.py: hnswlib / exact", "fai"),
    "train": (13.9, 8.2, "train/__main__, loop.py\nmodel.py, data.py", "train"),
    "checkpoint": (13.9, 7.1, "runs/*/best.pt\n(train/choose.py)", "file"),
    "export": (13.9, 6.0, "export/onnx.py\nparity, quantize.py", "export"),
    "onnx_graph": (13.9, 4.9, "train/onnx_graph.py\ntorch -> ONNX graph", "train"),
    "model": (13.9, 3.8, "models/*.onnx\nspec in metadata", "file"),
    "disk": (3.7, 2.5, "catalogue folder: gen-N/ (base + delta-000001 ...), LOCK", "file"),
}
COLOURS = {"ui": "#fde68a", "fai": "#bfdbfe", "store": "#c7d2fe", "train": "#bbf7d0",
           "export": "#a7f3d0", "file": "#e5e7eb"}
FLOWS = {  # colour, label, [(from, to, step)]
    "index": ("#1d4ed8", "1  index a folder: fai index PHOTOS --out CAT",
              [("cli", "catalog", "1a"), ("catalog", "api", "1b"), ("api", "encoder", "1c"),
               ("encoder", "decode", "1d"), ("decode", "preprocess", "1e"),
               ("catalog", "state", "1f"), ("catalog", "replica", "1g"),
               ("replica", "store", "1h"), ("store", "storage", "1i")]),
    "query": ("#c2410c", "2  one HTTP query: POST /api/similar",
              [("guard", "http_api", "2a"), ("http_api", "service", "2b"),
               ("service", "api", "2c"), ("api", "catalog", "2d"),
               ("catalog", "filter_cache", "2e"), ("catalog", "vector_index", "2f")]),
    "train": ("#15803d", "3  training to an exported model",
              [("train", "checkpoint", "3a"), ("checkpoint", "export", "3b"),
               ("export", "onnx_graph", "3c"), ("onnx_graph", "model", "3d"),
               ("model", "encoder", "3e")]),
}


def centre(name: str) -> tuple[float, float]:
    x, y, *_ = BOXES[name]
    width = 9.6 if name == "disk" else W
    return x + width / 2, y + H / 2


def edge(name: str, towards: tuple[float, float]) -> tuple[float, float]:
    """Where the line from a box's centre towards a point leaves the box."""
    (cx, cy), (tx, ty) = centre(name), towards
    half_w = (9.6 if name == "disk" else W) / 2 + 0.06
    half_h = H / 2 + 0.06
    dx, dy = tx - cx, ty - cy
    scale = min(half_w / abs(dx) if dx else float("inf"), half_h / abs(dy) if dy else float("inf"))
    return cx + dx * scale, cy + dy * scale


def main(out: Path = Path(__file__).with_name("architecture.png")) -> None:
    fig, ax = plt.subplots(figsize=(17, 9.5))
    ax.set_xlim(0, 17.1)
    ax.set_ylim(1.2, 9.9)
    ax.axis("off")
    for name, (x, y, label, kind) in BOXES.items():
        width = 9.6 if name == "disk" else W
        ax.add_patch(FancyBboxPatch((x, y), width, H, boxstyle="round,pad=0.04,rounding_size=0.08",
                                    fc=COLOURS[kind], ec="#374151", lw=0.8, zorder=2))
        ax.text(x + width / 2, y + H / 2, label, ha="center", va="center", fontsize=8.2,
                zorder=3)
    for x, title in ((0.3, "ui/  (page + HTTP API)"), (3.7, "fai_infer/  contract"),
                     (7.1, "fai_infer/  the store"), (10.5, "fai_infer/  photos, search"),
                     (13.9, "train/ -> export/")):
        ax.text(x, 9.05, title, fontsize=10.5, weight="bold")
    ax.annotate("", xy=edge("disk", centre("storage")), xytext=edge("storage", centre("disk")),
                arrowprops=dict(arrowstyle="-|>", color="#6b7280", lw=1, ls="--"))
    ax.annotate("", xy=edge("api", centre("milvus")), xytext=edge("milvus", centre("api")),
                arrowprops=dict(arrowstyle="-|>", color="#6b7280", lw=1, ls="--"))
    ax.text(4.0, 3.55, "same contract, Milvus primitives", fontsize=7, color="#6b7280")
    for offset, (colour, label, edges) in zip((-0.07, 0.0, 0.07), FLOWS.values()):
        for a, b, step in edges:
            (x0, y0), (x1, y1) = edge(a, centre(b)), edge(b, centre(a))
            arrow = FancyArrowPatch((x0 + offset, y0 + offset), (x1 + offset, y1 + offset),
                                    arrowstyle="-|>", mutation_scale=12, color=colour, lw=1.5,
                                    connectionstyle="arc3,rad=0.08", shrinkA=0, shrinkB=0,
                                    zorder=3, alpha=0.9)
            ax.add_patch(arrow)
            # the step's number a third of the way along, off the boxes where it can be
            tx, ty = x0 + (x1 - x0) * 0.5 + offset, y0 + (y1 - y0) * 0.5 + offset
            ax.text(tx, ty, step, color=colour, fontsize=7.5, weight="bold", ha="center",
                    va="center", zorder=4, bbox=dict(fc="white", ec=colour, pad=0.8, lw=0.5,
                                                     boxstyle="round,pad=0.15"))
    for i, (colour, label, _) in enumerate(FLOWS.values()):
        ax.text(0.3, 2.05 - 0.32 * i, label, color=colour, fontsize=9.5, weight="bold")
    ax.text(0.3, 9.55, "FAI: modules and three flows (arrows: who calls whom; imports point the "
            "same way, never back)", fontsize=12, weight="bold")
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
