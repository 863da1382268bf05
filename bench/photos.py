"""Photos a benchmark measures with: the shared Myntra folder, else generated ones.

Apart from ``bench/__main__.py`` so the other benchmarks (``bench.scale``) share it without
importing the main benchmark."""

from __future__ import annotations

from pathlib import Path

import cv2

from export.synthetic import generated_squares

MYNTRA = Path("../shared/data/myntra/images")


def sample_photos(folder: Path, n: int, tmp: Path) -> list[Path]:
    """The first ``n`` JPEGs of ``folder``, else ``n`` generated product photos under ``tmp``."""
    if folder.is_dir():
        return sorted(folder.glob("*.jpg"))[:n]
    tmp.mkdir(parents=True, exist_ok=True)
    out = []
    for i, sq in enumerate(generated_squares(120, n, seed=5)):
        out.append(tmp / f"g{i:05d}.jpg")
        cv2.imwrite(str(out[-1]), sq[..., ::-1])
    return out
