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


def png_raw(w: int, h: int, depth: int, colour: int, channels: int) -> bytes:
    """A valid PNG of w x h zero pixels, compressed row by row (never held decoded here)."""
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    row = b"\x00" * (1 + w * channels * depth // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _gif_frames(w: int, h: int, frames: int) -> bytes:
    """A GIF with a w x h logical screen and ``frames`` one-pixel frames (a few kB)."""
    head = b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    frame = (b"\x21\xf9\x04\x04\x01\x00\x00\x00" + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
             + b"\x02\x02\x44\x01\x00")
    return head + loop + frame * frames + b"\x3b"


def make_bombs(folder: Path) -> dict[str, str]:
    """Files of a few kB that decode to hundreds of MB: each must be refused from its header
    (issue 17 measured 5-6 GB for some before). Generated without ever decoding them here."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "bomb-rgba-10000.webp": _pil(Image.new("RGBA", (10_000, 10_000), (200, 30, 30, 128)),
                                     "WEBP", lossless=True),
        "bomb-16bit-rgba.png": png_raw(6000, 6000, 16, 6, 4),
        "bomb-float32.tiff": _pil(Image.new("F", (6000, 6000), 0.5), "TIFF",
                                  compression="tiff_deflate"),
        "bomb-uint16.tiff": _pil(Image.new("I;16", (8000, 8000), 700), "TIFF",
                                 compression="tiff_deflate"),
        "bomb-200-frames.gif": _gif_frames(10_000, 10_000, 200),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: "error" for name in files}


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
    expect.update(make_bombs(folder))
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
