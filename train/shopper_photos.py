"""Synthetic shopper photos: a fixed, seeded distortion of catalogue squares.

No labelled set of shoppers' phone photos is at hand, so quality on them is estimated with a
stand-in: each query photo is re-shot "by a shopper" (tilted and off-centre, on a cluttered
table or bed, under a warm or cold lamp with vignetting, slightly blurred, noisy and
JPEG-compressed) and must still find its own catalogue item and items like it.

The distortion deliberately uses primitives the training augmentation does not (perspective
warp, hard-edged clutter with a shadow, white-balance cast, vignetting, blur, JPEG), so that
the figure measures transfer rather than the augmentation seen in training. It is seeded by
the photo's id, so every model is measured on exactly the same distorted queries.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ShopperPhotoConfig:
    """Ranges each distortion is drawn from (sizes are fractions of the square's side)."""

    perspective: float = 0.08  # corner jitter
    max_rotation_deg: float = 12.0
    zoom: tuple[float, float] = (0.75, 1.0)  # how much of the frame the garment fills
    brightness: tuple[float, float] = (0.65, 1.15)
    contrast: tuple[float, float] = (0.7, 1.05)
    colour_cast: float = 0.12  # red/blue gain of a warm or cold lamp
    vignette: float = 0.35
    blur_sigma: tuple[float, float] = (0.0, 0.006)  # of the side: ~1.3 px at 224
    noise_std: tuple[float, float] = (2.0, 7.0)  # uint8 levels
    jpeg_quality: tuple[int, int] = (35, 75)
    background_threshold: int = 246  # pixels brighter than this in all channels are backdrop


def seed_for(photo_id: str) -> int:
    """A stable per-photo seed (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha1(f"shopper:{photo_id}".encode()).digest()[:8], "little")


def _clutter(size: int, rng: np.random.Generator) -> np.ndarray:
    """A table or bed: a smooth colour field with a few hard-edged objects on it."""
    coarse = rng.uniform(40, 230, size=(3, 3, 3)).astype(np.float32)
    bg = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    bg = 0.6 * bg + 0.4 * bg.mean(axis=2, keepdims=True)  # rooms are less vivid than noise
    for _ in range(rng.integers(2, 6)):
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(size // 8, size // 2, 2)
        colour = rng.uniform(0, 255, 3).tolist()
        if rng.random() < 0.5:
            cv2.rectangle(bg, (int(x0), int(y0)), (int(x0 + w), int(y0 + h)), colour, -1)
        else:
            cv2.line(bg, (int(x0), int(y0)), (int(x0 + w), int(y0 - h)), colour,
                     max(1, size // 40))
    return np.clip(bg, 0, 255)


def _backdrop_mask(square: np.ndarray, threshold: int) -> np.ndarray:
    """1 where the studio backdrop shows: near-white regions that touch the frame's edge (a
    white shirt's inside stays), softened so the cut-out has no halo."""
    bright = (square.min(axis=2) > threshold).astype(np.uint8)
    _, labels = cv2.connectedComponents(bright, connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge = edge[edge > 0]
    mask = np.isin(labels, edge).astype(np.float32)
    return cv2.GaussianBlur(mask, (0, 0), max(0.5, square.shape[0] / 150))[..., None]


def shopper_photo(square: np.ndarray, seed: int,
                  cfg: ShopperPhotoConfig = ShopperPhotoConfig()) -> np.ndarray:
    """One uint8 RGB square -> the same garment as a shopper's phone might capture it."""
    if square.ndim != 3 or square.shape[2] != 3 or square.shape[0] != square.shape[1]:
        raise ValueError(f"expected a square HxWx3 image, got shape {square.shape}")
    rng = np.random.default_rng(seed)
    size = square.shape[0]
    img = square.astype(np.float32)

    # Clutter behind the garment, with a soft drop shadow so it is not a clean cut-out.
    mask = _backdrop_mask(square, cfg.background_threshold)
    shadow = cv2.GaussianBlur(1 - mask[..., 0], (0, 0), size / 30)
    dx, dy = (rng.uniform(0.01, 0.04, 2) * size).astype(int)
    shadow = np.roll(shadow, (int(dy), int(dx)), axis=(0, 1))[..., None]
    backdrop = _clutter(size, rng) * (1 - 0.5 * shadow)
    img = img * (1 - mask) + backdrop * mask

    # Camera pose: zoom, tilt and perspective; the frame is filled by reflecting the scene.
    zoom = rng.uniform(*cfg.zoom)
    angle = np.deg2rad(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg))
    centre = size / 2 + rng.uniform(-0.08, 0.08, 2) * size
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float32) * size / 2
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = corners @ rot.T / zoom + centre
    src += rng.uniform(-cfg.perspective, cfg.perspective, (4, 2)) * size
    dst = corners + size / 2
    warp = cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))
    img = cv2.warpPerspective(img, warp, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)

    # Lighting: exposure, contrast, a warm or cold cast and vignetting.
    mean = img.mean()
    img = (img - mean) * rng.uniform(*cfg.contrast) + mean
    img *= rng.uniform(*cfg.brightness)
    cast = rng.uniform(-cfg.colour_cast, cfg.colour_cast)
    img *= np.array([1 + cast, 1.0, 1 - cast], dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size / 2) - 1
    img *= (1 - rng.uniform(0, cfg.vignette) * (xx**2 + yy**2) / 2)[..., None]

    # Optics and sensor: blur, noise, then the phone's JPEG.
    sigma = rng.uniform(*cfg.blur_sigma) * size
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += rng.normal(0, rng.uniform(*cfg.noise_std), img.shape)
    out = np.clip(img, 0, 255).astype(np.uint8)
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG re-encoding failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def shopper_photos(squares: np.ndarray, ids: list[str],
                   cfg: ShopperPhotoConfig = ShopperPhotoConfig()) -> np.ndarray:
    """Distort a stack of squares, each seeded by its photo id."""
    if len(squares) != len(ids):
        raise ValueError(f"{len(squares)} squares but {len(ids)} ids")
    return np.stack([shopper_photo(s, seed_for(i), cfg) for s, i in zip(squares, ids)]) \
        if len(ids) else squares.copy()
