"""CCP photos and masks for the garment parser: groups, a split by photo, a cache, augmentation.

Why groups: CCP labels 58 things per pixel, many of them rare or visually interchangeable
(pumps vs heels, jumper vs sweater). A shop sells kinds of garment, so the parser predicts ten
fixed groups (``GROUPS``); the mapping from CCP's labels is written out once here and every
label lands in exactly one group (tests/test_parser.py checks it against labels.csv).

Hats stay in ``accessory``: they are in 108 of the 1,004 masked photos and cover a few hundred
pixels each, too little to learn a group of their own in one short run, and the issue lists
"hats and accessories" together. A hat sits above the face, so the runtime can still tell it
from a belt or a bag by position.

Why this split: by photo, from a stable hash of the photo id (no random state, no file
order), so the held-apart list is the same on every machine and for every run. A second hash
bucket of the remaining photos is the validation part that training may look at (checkpoint
choice); the held-apart photos are never loaded by training at all.

Geometry is the runtime's: photos are letterboxed with ``fai_infer.image.preprocess.square_resize``
and masks are placed with the same arithmetic (nearest neighbour), so training, evaluation and
the kiosk see identical pixels.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fai_infer.image.preprocess import PreprocessSpec, square_resize
from train.parser_output import letterbox_geometry

DEFAULT_DATA = "../shared/data/ccp"

GROUPS: tuple[str, ...] = ("background", "skin", "hair", "upper", "lower", "whole", "outer",
                           "shoes", "bag", "accessory")
GARMENT_GROUPS: tuple[str, ...] = GROUPS[3:]  # what a shop sells; the rest is "not garment"

# Each group's CCP label names (labels.csv); every label is in exactly one group.
GROUP_LABELS: dict[str, tuple[str, ...]] = {
    "background": ("null",),
    "skin": ("skin",),
    "hair": ("hair",),
    # upper body, worn under any outer layer
    "upper": ("blouse", "bodysuit", "bra", "hoodie", "intimate", "jumper", "shirt", "sweater",
              "sweatshirt", "t-shirt", "top", "vest"),
    # lower body; stockings and tights too: they cover the legs like leggings, which CCP's
    # annotators do not tell apart from them consistently
    "lower": ("jeans", "leggings", "pants", "panties", "shorts", "skirt", "stockings", "tights"),
    # one piece for the whole body
    "whole": ("dress", "romper", "suit", "swimwear"),
    "outer": ("blazer", "cape", "cardigan", "coat", "jacket"),
    # footwear; socks too: they show at the ankle, inside the shoe's region
    "shoes": ("boots", "clogs", "flats", "heels", "loafers", "pumps", "sandals", "shoes",
              "sneakers", "socks", "wedges"),
    "bag": ("bag", "purse", "wallet"),
    "accessory": ("accessories", "belt", "bracelet", "earrings", "glasses", "gloves", "hat",
                  "necklace", "ring", "scarf", "sunglasses", "tie", "watch"),
}
LABEL_GROUP: dict[str, str] = {name: g for g, names in GROUP_LABELS.items() for name in names}

HELD_APART_SALT = "fai-parser-held-apart-v1"
VAL_SALT = "fai-parser-val-v1"


def read_labels(data: str | Path) -> dict[int, str]:
    """labels.csv -> {label id: name}."""
    with open(Path(data) / "labels.csv", newline="") as f:
        return {int(r["id"]): r["name"] for r in csv.DictReader(f)}


def label_lut(labels: dict[int, str]) -> np.ndarray:
    """A 256-entry lookup table: CCP label id -> group index. Unknown names are an error (a
    new label must be placed deliberately, not defaulted)."""
    missing = sorted(n for n in labels.values() if n not in LABEL_GROUP)
    if missing:
        raise ValueError(f"CCP labels without a parser group: {', '.join(missing)}")
    lut = np.zeros(256, dtype=np.uint8)
    for i, name in labels.items():
        lut[i] = GROUPS.index(LABEL_GROUP[name])
    return lut


def stable_fraction(photo: str, salt: str) -> float:
    """A number in [0, 1) fixed by the photo id alone."""
    digest = hashlib.sha256(f"{salt}:{photo}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(photo: str, held_apart: float = 0.2, val: float = 0.1) -> str:
    """'test' (held apart: evaluation only), 'val' (training's own check) or 'train'."""
    if stable_fraction(photo, HELD_APART_SALT) < held_apart:
        return "test"
    return "val" if stable_fraction(photo, VAL_SALT) < val else "train"


def masked_photos(data: str | Path) -> list[str]:
    """Ids (file stems) of the photos that have a mask, sorted."""
    root = Path(data)
    return sorted(p.stem for p in (root / "masks").glob("*.png")
                  if (root / "images" / f"{p.stem}.jpg").is_file())


def photos_in(data: str | Path, split: str, held_apart: float = 0.2, val: float = 0.1
              ) -> list[str]:
    return [p for p in masked_photos(data) if split_of(p, held_apart, val) == split]


def letterbox_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A group mask placed like its photo (nearest neighbour); padding is background (0)."""
    top, left, new_h, new_w = letterbox_geometry(*mask.shape[:2], size)
    small = cv2.resize(mask, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
    out = np.zeros((size, size), dtype=np.uint8)
    out[top : top + new_h, left : left + new_w] = small
    return out


def read_photo(data: str | Path, photo: str) -> np.ndarray:
    """RGB uint8 photo (CCP's JPEGs are trusted local files; no EXIF rotation in them)."""
    bgr = cv2.imread(str(Path(data) / "images" / f"{photo}.jpg"), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read photo {photo} in {data}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_groups(data: str | Path, photo: str, lut: np.ndarray) -> np.ndarray:
    """The photo's mask as group indices at the photo's own size."""
    raw = cv2.imread(str(Path(data) / "masks" / f"{photo}.png"), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise FileNotFoundError(f"cannot read mask {photo} in {data}")
    if raw.ndim == 3:
        raw = raw[..., 0]
    return lut[raw]


@dataclass
class ParserSet:
    """Letterboxed photos (N, S, S, 3) uint8 and group masks (N, S, S) uint8."""

    photos: list[str]
    images: np.ndarray
    masks: np.ndarray


def load_set(data: str | Path, photos: list[str], spec: PreprocessSpec,
             cache: str | Path | None = None) -> ParserSet:
    """Decode and letterbox once; with ``cache`` an npz keyed by the photos, size and pad
    value, so later runs skip JPEG decoding."""
    key = hashlib.sha256(repr((photos, spec.size, spec.pad_value, sorted(LABEL_GROUP.items()))
                              ).encode()).hexdigest()[:16]
    path = Path(cache) / f"ccp-{spec.size}-{key}.npz" if cache else None
    if path is not None and path.is_file():
        z = np.load(path)
        return ParserSet(list(photos), z["images"], z["masks"])
    lut = label_lut(read_labels(data))
    images = np.stack([square_resize(read_photo(data, p), spec) for p in photos])
    masks = np.stack([letterbox_mask(read_groups(data, p, lut), spec.size) for p in photos])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, images=images, masks=masks)
        tmp.replace(path)
    return ParserSet(list(photos), images, masks)


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, pad_value: int,
            scale: tuple[float, float] = (0.75, 1.3), jitter: float = 0.25
            ) -> tuple[np.ndarray, np.ndarray]:
    """One letterboxed pair -> a flipped, rescaled, shifted and colour-jittered pair of the
    same size. Zooming out pads with the runtime's pad value and background, as letterboxing
    does; colour jitter (brightness, contrast, saturation) stands in for street lighting."""
    size = image.shape[0]
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    s = float(rng.uniform(*scale))
    new = max(8, round(size * s))
    img = cv2.resize(image, (new, new), interpolation=cv2.INTER_LINEAR)
    msk = cv2.resize(np.ascontiguousarray(mask), (new, new), interpolation=cv2.INTER_NEAREST)
    out_i = np.full((size, size, 3), pad_value, dtype=np.uint8)
    out_m = np.zeros((size, size), dtype=np.uint8)
    # place the rescaled square at a random offset (crop when bigger, pad when smaller)
    dy = int(rng.integers(min(0, size - new), max(0, size - new) + 1))
    dx = int(rng.integers(min(0, size - new), max(0, size - new) + 1))
    sy, sx = max(0, -dy), max(0, -dx)
    ty, tx = max(0, dy), max(0, dx)
    hh, ww = min(new - sy, size - ty), min(new - sx, size - tx)
    out_i[ty : ty + hh, tx : tx + ww] = img[sy : sy + hh, sx : sx + ww]
    out_m[ty : ty + hh, tx : tx + ww] = msk[sy : sy + hh, sx : sx + ww]
    if jitter > 0:
        f = out_i.astype(np.float32)
        f *= rng.uniform(1 - jitter, 1 + jitter)  # brightness
        mean = f.mean()
        f = (f - mean) * rng.uniform(1 - jitter, 1 + jitter) + mean  # contrast
        grey = f.mean(axis=2, keepdims=True)
        f = (f - grey) * rng.uniform(1 - jitter, 1 + jitter) + grey  # saturation
        out_i = np.clip(f, 0, 255).astype(np.uint8)
    return out_i, out_m
