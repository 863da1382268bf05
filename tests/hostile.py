"""A generator of hostile inputs: what a shopper's phone, a shop's export or an attacker sends.

``make_hostile(folder)`` writes every kind and returns {file name: expectation}, where
"ok" means a usable photo and "error" means a clear ImageError naming the file.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from export.synthetic import generated_squares


def _png(arr: np.ndarray) -> bytes:
    return cv2.imencode(".png", arr)[1].tobytes()


def _jpeg(arr: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", arr)[1].tobytes()


def _pil(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_header(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


def make_hostile(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    product = generated_squares(96, 1, seed=11)[0][..., ::-1]  # BGR for cv2
    good_jpeg = _jpeg(product)
    rgba = np.dstack([product, np.full(product.shape[:2], 128, np.uint8)])
    frames = [Image.new("RGB", (30, 30), (i * 80, 20, 20)) for i in range(3)]
    exif_img = Image.fromarray(product[..., ::-1])
    exif = exif_img.getexif()
    exif[0x0112] = 8
    palette = Image.new("P", (24, 24), 1)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    files: dict[str, tuple[bytes | None, str]] = {
        "empty.jpg": (b"", "error"),
        "truncated.jpg": (good_jpeg[: len(good_jpeg) // 3], "error"),
        "truncated.png": (_png(product)[:200], "error"),
        "text.jpg": (b"just some text, not a photo\n", "error"),
        "page.jpg": (b"<!DOCTYPE html><html><body>hi</body></html>", "error"),
        "svg.png": (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "error"),
        "random.png": (os.urandom(2048), "error"),
        "bomb.png": (_png_header(50_000, 50_000) + b"\x00" * 64, "error"),
        "zero-size.png": (_png_header(0, 0), "error"),
        "header-only.jpg": (good_jpeg[:20], "error"),
        "one-pixel.png": (_png(np.full((1, 1, 3), 90, np.uint8)), "ok"),
        "sixteen-bit.png": (_png((product.astype(np.uint16) * 257)), "ok"),
        "grayscale.jpg": (_jpeg(product[..., 0]), "ok"),
        "rgba.png": (_png(rgba), "ok"),
        "palette-transparent.png": (_pil(palette, "PNG", transparency=0), "ok"),
        "cmyk.jpg": (_pil(Image.fromarray(product[..., ::-1]).convert("CMYK"), "JPEG"), "ok"),
        "animated.gif": (_pil(frames[0], "GIF", save_all=True, append_images=frames[1:]),
                         "ok"),
        "exif-rotated.jpg": (_pil(exif_img, "JPEG", exif=exif), "ok"),
        "wide-strip.png": (_png(np.full((4, 3000, 3), 60, np.uint8)), "ok"),
        "tall-strip.png": (_png(np.full((3000, 4, 3), 60, np.uint8)), "ok"),
        "trailing-garbage.jpg": (good_jpeg + os.urandom(500), "ok"),
        "photo.webp": (cv2.imencode(".webp", product)[1].tobytes(), "ok"),
        "photo.bmp": (cv2.imencode(".bmp", product)[1].tobytes(), "ok"),
        "photo.tiff": (cv2.imencode(".tiff", product)[1].tobytes(), "ok"),
        "png-named.jpg": (_png(product), "ok"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    expect = {name: e for name, (_, e) in files.items()}
    (folder / "folder.jpg").mkdir()
    expect["folder.jpg"] = "error"
    os.symlink(folder / "does-not-exist.jpg", folder / "broken-link.jpg")
    expect["broken-link.jpg"] = "error"
    odd = os.fsdecode(b"caf\xe9-\xff.jpg")  # not valid UTF-8 on disk
    (folder / odd).write_bytes(good_jpeg)
    expect[odd] = "ok"
    locked = folder / "unreadable.jpg"
    locked.write_bytes(good_jpeg)
    locked.chmod(0)
    expect["unreadable.jpg"] = "ok" if os.geteuid() == 0 else "error"  # root reads anyway
    return expect
