"""A generation's whitening on disk: two small ``.npy`` files beside the vectors, listed (and
so checksummed) in the manifest like every other file, described under ``"whitening"``.

Why apart: the replica (``replica.py``) only calls these two hooks, so the whitening's file
format changes here and nowhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from fai_infer.index.whitening import ARRAYS, Whitening
from fai_infer.safe_files import load_npy
from fai_infer.store.generations import CatalogError


def whitening_writers(whitening: Whitening | None
                      ) -> tuple[dict[str, Callable[[Path], None]], dict]:
    """(file name -> writer, manifest entries) for a base whose vectors went through
    ``whitening`` (nothing for None)."""
    if whitening is None:
        return {}, {}
    writers = {name: (lambda p, a=array: np.save(p, a, allow_pickle=False))
               for name, array in whitening.arrays().items()}
    return writers, {"whitening": whitening.describe()}


def load_whitening(root: Path, gen: Path, manifest: dict, dim: int) -> Whitening | None:
    """The whitening a checked manifest lists, or None; a damaged one is one CatalogError."""
    meta = manifest.get("whitening")
    listed = [name in manifest["files"] for name in ARRAYS]
    if meta is None and not any(listed):
        return None
    if not isinstance(meta, dict) or not all(listed):
        raise CatalogError(f"{root}: the whitening of {gen.name} is incomplete (its "
                           f"description or one of {', '.join(ARRAYS)} is missing); re-index")
    try:
        arrays = {}
        for name in ARRAYS:
            arrays[name] = load_npy(gen / name)
        return Whitening.from_arrays(arrays, meta, dim)
    except (OSError, ValueError) as exc:
        raise CatalogError(f"{root}: the whitening of {gen.name} cannot be read ({exc}); "
                           f"re-index") from None
