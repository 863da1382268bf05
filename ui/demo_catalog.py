"""A demo shop the project renders itself: garments, shoes and bags on white, with metadata.

Deterministic (a seeded generator), so every machine builds the same catalogue, and free of any
third-party photos. ``python -m ui.demo_catalog OUT`` writes it without starting the UI.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np

W, H = 300, 400  # 3:4 portrait, like catalogue photos
COLOURS = {
    "Black": (30, 30, 30), "White": (235, 235, 230), "Grey": (128, 128, 128),
    "Navy Blue": (30, 40, 110), "Blue": (40, 90, 200), "Red": (200, 30, 40),
    "Pink": (235, 130, 170), "Green": (40, 140, 60), "Yellow": (240, 200, 40),
    "Brown": (120, 75, 40), "Beige": (215, 195, 160), "Purple": (110, 50, 150),
}
PATTERNS = ("Solid", "Striped", "Dotted", "Checked")
TYPES = {  # type -> (genders it is made for, polygon(s) in unit coordinates)
    "Tshirt": (("Men", "Women", "Unisex"), [[(.30, .18), (.42, .14), (.58, .14), (.70, .18),
                                            (.88, .32), (.78, .40), (.70, .34), (.70, .85),
                                            (.30, .85), (.30, .34), (.22, .40), (.12, .32)]]),
    "Dress": (("Women",), [[(.40, .10), (.60, .10), (.62, .30), (.80, .90), (.20, .90),
                           (.38, .30)]]),
    "Trousers": (("Men", "Women"), [[(.30, .10), (.70, .10), (.72, .92), (.56, .92),
                                    (.50, .35), (.44, .92), (.28, .92)]]),
    "Skirt": (("Women",), [[(.36, .30), (.64, .30), (.78, .75), (.22, .75)]]),
    "Shoe": (("Men", "Women", "Unisex"), [[(.12, .62), (.40, .60), (.52, .46), (.66, .46),
                                          (.70, .56), (.88, .64), (.88, .72), (.12, .72)]]),
    "Handbag": (("Women",), [[(.22, .42), (.78, .42), (.84, .82), (.16, .82)]]),
}


def _pattern(kind: str, colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A full-canvas texture of ``kind`` in ``colour`` (RGB float)."""
    img = np.ones((H, W, 3), np.float32) * colour
    accent = np.clip(colour * 0.45 + (255 - colour) * rng.uniform(0.2, 0.5), 0, 255)
    yy, xx = np.mgrid[:H, :W]
    if kind == "Striped":
        period = int(rng.integers(14, 30))
        mask = (yy // (period // 2)) % 2 == 0
    elif kind == "Dotted":
        period = int(rng.integers(18, 30))
        mask = ((yy % period - period / 2) ** 2 + (xx % period - period / 2) ** 2
                < (period / 4.5) ** 2)
    elif kind == "Checked":
        period = int(rng.integers(20, 40))
        mask = ((yy // period) + (xx // period)) % 2 == 0
    else:
        mask = np.zeros((H, W), bool)
    img[mask] = accent
    return img


def render(item_type: str, colour_name: str, pattern: str, rng: np.random.Generator
           ) -> np.ndarray:
    """One product photo: RGB uint8 HxWx3 on white, with soft shading and an outline."""
    canvas = np.full((H, W, 3), 255, np.float32)
    scale, dx, dy = rng.uniform(0.85, 1.05), rng.uniform(-.04, .04), rng.uniform(-.03, .03)
    mask = np.zeros((H, W), np.uint8)
    for poly in TYPES[item_type][1]:
        pts = np.array([((x - .5) * scale + .5 + dx) * W for x, _ in poly])
        ys = np.array([((y - .5) * scale + .5 + dy) * H for _, y in poly])
        cv2.fillPoly(mask, [np.stack([pts, ys], 1).astype(np.int32)], 255)
    if item_type == "Handbag":  # a handle
        cx, top = int((0.5 + dx) * W), int(((0.42 - .5) * scale + .5 + dy) * H)
        cv2.ellipse(mask, (cx, top), (int(60 * scale), int(55 * scale)), 0, 180, 360, 255, 9)
    base = np.array(COLOURS[colour_name], np.float32) * rng.uniform(0.9, 1.1)
    texture = _pattern(pattern, np.clip(base, 0, 255), rng)
    shade = np.linspace(1.08, 0.85, H, dtype=np.float32)[:, None, None]
    m = (mask > 0)[..., None]
    canvas = np.where(m, np.clip(texture * shade, 0, 255), canvas)
    edges = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    canvas[edges] = canvas[edges] * 0.6
    noise = rng.normal(0, 2.0, canvas.shape).astype(np.float32)
    return np.clip(canvas + noise * m, 0, 255).astype(np.uint8)


def generate(out: str | Path, per_combination: int = 1, seed: int = 7) -> Path:
    """Write images/<id>.jpg and metadata.csv under ``out``; returns ``out``. Idempotent."""
    out = Path(out)
    done = out / "metadata.csv"
    if done.is_file():
        return out
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    prices = np.random.default_rng(seed + 1)  # its own stream: the photos stay as they were
    base = {"Tshirt": 14, "Dress": 39, "Trousers": 34, "Skirt": 24, "Shoe": 49, "Handbag": 44}
    rows = []
    n = 0
    for item_type, (genders, _) in TYPES.items():
        for colour in COLOURS:
            for pattern in PATTERNS:
                if pattern != "Solid" and rng.random() < 0.35:
                    continue
                for _ in range(per_combination):
                    n += 1
                    item_id = f"demo{n:04d}"
                    gender = genders[int(rng.integers(len(genders)))]
                    img = render(item_type, colour, pattern, rng)
                    cv2.imwrite(str(out / "images" / f"{item_id}.jpg"), img[..., ::-1],
                                [cv2.IMWRITE_JPEG_QUALITY, 90])
                    rows.append({"id": item_id, "type": item_type, "colour": colour,
                                 "pattern": pattern, "gender": gender,
                                 "name": f"{colour} {pattern.lower()} {item_type.lower()}",
                                 "price": f"{base[item_type] + 5 * int(prices.integers(6))}.99"})
    tmp = out / "metadata.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(done)  # written last: its presence means the catalogue is complete
    return out


def main() -> None:
    p = argparse.ArgumentParser(description="Render FAI's demo catalogue.")
    p.add_argument("out", help="folder to write images/ and metadata.csv into")
    p.add_argument("--per-combination", type=int, default=1)
    a = p.parse_args()
    print(generate(a.out, a.per_combination))


if __name__ == "__main__":
    main()
