"""python -m ui.showcase: PNGs people would rather look at than read.

``query-examples.png``: a few query photos with their top-5 from the catalogue, and
``reconstructions.png``: what the autoencoder's decoder makes of photos. By default both use the
project's own generated demo shop, so they can be committed; pointing ``--catalog`` at shared
photos renders them locally (keep those out of git: they contain the photos).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fai_infer import Catalog, Encoder  # noqa: E402
from fai_infer.image.preprocess import PreprocessSpec, load_square  # noqa: E402

THUMBNAIL = PreprocessSpec(size=128)  # display size of each cell in the grid


def query_grid(cat: Catalog, queries: list[str], out: Path, k: int = 5) -> None:
    fig, axes = plt.subplots(len(queries), k + 1, figsize=(1.7 * (k + 1), 1.9 * len(queries)),
                             squeeze=False)
    for row, qid in enumerate(queries):
        hits = cat.similar(qid, k=k)
        cells = [(cat.get(qid).path, f"query {qid}")] + [
            (h.path, f"{h.score:.2f} {h.metadata.get('type', h.metadata.get('articleType', ''))}"
             [:22]) for h in hits]
        for col, (path, title) in enumerate(cells):
            ax = axes[row][col]
            ax.imshow(load_square(path, THUMBNAIL))
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def reconstructions(checkpoint: str, paths: list[str], out: Path) -> None:
    import torch

    from fai_infer.image.preprocess import normalise, scale_pixels
    from train.checkpoint import load_checkpoint
    from train.plots import plot_reconstructions

    model, spec, _ = load_checkpoint(checkpoint)
    x = scale_pixels(torch.from_numpy(np.stack([load_square(p, spec) for p in paths])), spec)
    with torch.no_grad():
        recon, _ = model(normalise(x, spec))
    plot_reconstructions(x.numpy(), recon.numpy(), out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ui.showcase", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="ONNX model (default: the shipped one)")
    p.add_argument("--checkpoint", default="models/fai-default.pt",
                   help="torch checkpoint for reconstructions")
    p.add_argument("--catalog", default=None, help="photo folder (default: the demo shop)")
    p.add_argument("--metadata", default=None)
    p.add_argument("--out", default="docs", help="folder for the PNGs")
    p.add_argument("--queries", type=int, default=6)
    a = p.parse_args(argv)
    if a.catalog is None:
        from ui.demo_catalog import generate

        folder = generate(Path(".cache") / "demo-shop", per_combination=2)
        a.catalog, a.metadata = str(folder), str(folder / "metadata.csv")
    cat = Catalog.build(a.catalog, a.metadata, encoder=Encoder(a.model))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    picks = [cat.ids[i] for i in np.linspace(0, len(cat) - 1, a.queries).astype(int)]
    query_grid(cat, picks, out / "query-examples.png")
    if Path(a.checkpoint).is_file():
        reconstructions(a.checkpoint, [cat.get(i).path for i in picks[:8]],
                        out / "reconstructions.png")
    print(f"written {out}/query-examples.png and reconstructions.png")


if __name__ == "__main__":
    main()
