"""Catalogue listing, a decoded-image cache and batched augmentations for training.

Photos are decoded once through ``fai_infer.image.preprocess`` (the same path the kiosk uses) into a
uint8 cache of squares at the training size; augmentation then runs on whole batches in torch,
which on a 2-core machine is far cheaper than decoding JPEGs every epoch.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fai_infer.catalog.sources import csv_dict_reader, list_images, shorten
from fai_infer.image.preprocess import IMPLEMENTATION, ImageError, PreprocessSpec, load_square

CSV_CANDIDATES = ("styles.csv", "metadata.csv", "catalog.csv", "articles.csv")


@dataclass
class Catalogue:
    """Photos of one shop: ids, paths, split ('train'/'val') and metadata rows."""

    ids: list[str]
    paths: list[Path]
    splits: list[str]
    rows: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def column(self, name: str) -> list[str]:
        return [r.get(name, "") for r in self.rows]

    def subset(self, keep: list[int]) -> "Catalogue":
        return Catalogue([self.ids[i] for i in keep], [self.paths[i] for i in keep],
                         [self.splits[i] for i in keep], [self.rows[i] for i in keep])


def stable_fraction(key: str, salt: str) -> float:
    """A deterministic number in [0, 1) per id: splits that never change between runs."""
    digest = hashlib.sha1(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _index_images(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in list_images(folder):
        if p.is_file():
            found.setdefault(p.stem, p)
    return found


def detect_id_column(root: str | Path, csv_path: str | Path | None = None) -> str:
    """The CSV column whose values name the photos (file stems), so a shop's own CSV works
    without being told; 'id' when there is no CSV or no column fits (load_catalogue then
    names the columns in its one-line error)."""
    root = Path(root)
    image_dir = root / "images" if (root / "images").is_dir() else root
    stems = {p.stem for p in list_images(image_dir)}
    if csv_path is None:
        csv_path = next((root / c for c in CSV_CANDIDATES if (root / c).is_file()), None)
    if csv_path is None or not stems:
        return "id"
    try:
        reader = csv_dict_reader(csv_path)
        rows = [r for _, r in zip(range(200), reader)]
    except (OSError, csv.Error):
        return "id"
    best, hits = "id", 0
    for column in reader.fieldnames or []:
        found = sum((r.get(column) or "") in stems for r in rows)
        if found > hits:
            best, hits = column, found
    return best


def load_catalogue(root: str | Path, csv_path: str | Path | None = None, id_column: str = "id",
                   val_fraction: float = 0.1) -> Catalogue:
    """``root/images/<id>.jpg`` (or any images under root) plus an optional CSV.

    With a CSV, rows whose image is missing are dropped and its ``split`` column is used when
    present. Without one, every image is used and the split is a stable hash of the id.
    """
    root = Path(root)
    image_dir = root / "images" if (root / "images").is_dir() else root
    images = _index_images(image_dir)
    if csv_path is None:
        csv_path = next((root / c for c in CSV_CANDIDATES if (root / c).is_file()), None)
    rows: list[dict[str, str]]
    if csv_path is not None:
        try:
            reader = csv_dict_reader(csv_path)
            columns = reader.fieldnames or []
            if id_column not in columns:
                raise SystemExit(f"{csv_path}: no {id_column!r} column (columns: "
                                 f"{', '.join(shorten(c) for c in columns)}); name the id "
                                 f"column with --id-column")
            all_rows = [{k: (v or "") for k, v in r.items() if k is not None} for r in reader]
        except (OSError, csv.Error) as exc:
            raise SystemExit(f"{csv_path}: cannot read the CSV ({exc})") from None
        rows = [r for r in all_rows if r.get(id_column, "") in images]
        if all_rows and not rows:
            raise SystemExit(
                f"{csv_path}: none of its {len(all_rows)} {id_column!r} values (e.g. "
                f"{all_rows[0].get(id_column)!r}) names a photo under {image_dir} (e.g. "
                f"{next(iter(images), 'no photos there')!r}); pick the column holding the file "
                f"names with --id-column")
        ids = [r[id_column] for r in rows]
    else:
        ids = sorted(images)
        rows = [{id_column: i} for i in ids]
    splits = []
    for i, r in zip(ids, rows):
        s = (r.get("split") or "").strip().lower()
        if s not in ("train", "val"):
            s = "val" if stable_fraction(i, "split") < val_fraction else "train"
        splits.append(s)
    return Catalogue(ids, [images[i] for i in ids], splits, rows)


def unseen_kinds(values: list[str], fraction: float) -> set[str]:
    """About ``fraction`` of the distinct values of a label column (e.g. articleType), chosen by
    a stable hash of the value: kinds that training never sees (no gradient, no choice), so
    ``train.evaluate --unseen`` can measure how well the model generalises to new kinds."""
    return {v for v in set(values) if v and stable_fraction(v, "unseen") < fraction}


def unseen_mask(values: list[str], fraction: float) -> tuple[np.ndarray, set[str]]:
    """(which rows are of an unseen kind, the unseen kinds): what training leaves out, choices
    skip and ``train.evaluate --unseen`` scores."""
    kinds = unseen_kinds(values, fraction) if fraction > 0 else set()
    return np.array([v in kinds for v in values], dtype=bool), kinds


def proxy_mask(values: list[str], fraction: float, unseen_fraction: float
               ) -> tuple[np.ndarray, set[str]]:
    """(which rows are of a *proxy* kind, the proxy kinds): about ``fraction`` of the kinds
    that are not unseen, by another stable hash, also kept out of every gradient. Their
    train photos, queried among themselves, stand in for unseen kinds when ``train.choose``
    makes its choices, so the real unseen kinds are never looked at before the final report."""
    unseen = unseen_kinds(values, unseen_fraction) if unseen_fraction > 0 else set()
    kinds = {v for v in set(values) if v and v not in unseen
             and stable_fraction(v, "proxy") < fraction} if fraction > 0 else set()
    return np.array([v in kinds for v in values], dtype=bool), kinds


def holdout_mask(ids: list[str], fraction: float) -> np.ndarray:
    """Part of *train* kept out of the gradient for early stopping and recipe choices."""
    return np.array([stable_fraction(i, "holdout") < fraction for i in ids], dtype=bool)


def decode_cache_path(paths: list[Path], spec: PreprocessSpec, cache_dir: str | Path | None
                      ) -> Path | None:
    """Where :func:`decode_all` keeps these photos' squares (a caller planning a budget asks
    whether they are there)."""
    if not cache_dir:
        return None
    key = hashlib.sha1(json.dumps([IMPLEMENTATION, spec.to_dict(), [str(p) for p in paths]]
                                  ).encode()).hexdigest()
    return Path(cache_dir) / f"squares-{spec.size}-{key[:16]}.npz"


def decode_all(paths: list[Path], spec: PreprocessSpec, workers: int = 2,
               cache_dir: str | Path | None = None, desc: str = "decode"
               ) -> tuple[np.ndarray, list[str | None]]:
    """Decode every photo to a spec.size square (uint8 NHWC). Bad files become white squares
    and their reason is returned in ``errors`` so callers can drop and report them."""
    cache = decode_cache_path(paths, spec, cache_dir)
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            errors = [e if e else None for e in z["errors"].tolist()]
            return z["images"], errors
    out = np.full((len(paths), spec.size, spec.size, 3), 255, dtype=np.uint8)
    errors: list[str | None] = [None] * len(paths)

    def work(i: int) -> None:
        try:
            out[i] = load_square(paths[i], spec)
        except ImageError as exc:
            errors[i] = str(exc)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(tqdm(pool.map(work, range(len(paths))), total=len(paths), desc=desc, leave=False))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, images=out, errors=np.array([e or "" for e in errors]))
        tmp.replace(cache)
    return out, errors


@dataclass
class AugmentConfig:
    """Views a shopper's camera or another shop's studio could produce."""

    crop_scale: tuple[float, float] = (0.55, 1.0)
    max_rotation_deg: float = 15.0
    flip: bool = True
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.2
    clutter_prob: float = 0.3
    noise_std: float = 0.02
    colour_cast: float = 0.0  # red/blue gain of a warm or cold lamp (white balance)
    blur_prob: float = 0.0  # share of views softened, as by a phone's focus or motion


def _random_background(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """Smooth random colour fields with some texture: a stand-in for a room or a table."""
    coarse = torch.rand(n, 3, 4, 4, generator=gen)
    field_ = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    fine = torch.rand(n, 1, size // 4, size // 4, generator=gen)
    fine = F.interpolate(fine, size=(size, size), mode="nearest")
    return (0.8 * field_ + 0.2 * fine).clamp(0, 1)


def augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """A batch of float NCHW photos in [0,1] -> randomly cropped, rotated, lit and cluttered."""
    n, _, h, w = x.shape
    scale = torch.empty(n).uniform_(*cfg.crop_scale, generator=gen).sqrt()
    angle = torch.empty(n).uniform_(-1, 1, generator=gen) * math.radians(cfg.max_rotation_deg)
    flip = (torch.rand(n, generator=gen) < 0.5).float() * 2 - 1 if cfg.flip else torch.ones(n)
    shift = (1 - scale)
    tx = torch.empty(n).uniform_(-1, 1, generator=gen) * shift
    ty = torch.empty(n).uniform_(-1, 1, generator=gen) * shift
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1),
                         torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Sample 1-x with zero padding, so areas outside the photo come out white.
    out = 1 - F.grid_sample(1 - x, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
    if cfg.clutter_prob > 0:
        white = (out.min(dim=1, keepdim=True).values > 0.94).float()
        use = (torch.rand(n, 1, 1, 1, generator=gen) < cfg.clutter_prob).float()
        bg = _random_background(n, h, gen)
        out = out * (1 - white * use) + bg * white * use
    b = 1 + torch.empty(n, 1, 1, 1).uniform_(-cfg.brightness, cfg.brightness, generator=gen)
    c = 1 + torch.empty(n, 1, 1, 1).uniform_(-cfg.contrast, cfg.contrast, generator=gen)
    s = 1 + torch.empty(n, 1, 1, 1).uniform_(-cfg.saturation, cfg.saturation, generator=gen)
    gray = out.mean(dim=1, keepdim=True)
    out = gray + (out - gray) * s
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * c + mean
    out = out * b
    if cfg.colour_cast > 0:
        cast = torch.empty(n, 1, 1, 1).uniform_(-cfg.colour_cast, cfg.colour_cast, generator=gen)
        out = out * torch.cat([1 + cast, torch.ones_like(cast), 1 - cast], dim=1)
    if cfg.blur_prob > 0:
        kernel = torch.tensor([1.0, 2.0, 1.0])
        kernel = (kernel[:, None] * kernel[None, :] / 16).expand(3, 1, 3, 3).contiguous()
        soft = F.conv2d(F.pad(out, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
        amount = torch.rand(n, 1, 1, 1, generator=gen)
        amount = amount * (torch.rand(n, 1, 1, 1, generator=gen) < cfg.blur_prob).float()
        out = out + (soft - out) * amount
    if cfg.noise_std > 0:
        out = out + torch.randn(out.shape, generator=gen) * cfg.noise_std
    return out.clamp_(0, 1)
