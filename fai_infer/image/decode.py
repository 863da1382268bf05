"""Hostile-input decoding: a path, bytes or an array -> HxWx3 uint8 RGB, or one ImageError.

Why its own module: this is where untrusted bytes meet a decoder. Every limit (file bytes,
pixels, decoded bytes from the header, PNG chunk bounds) is checked here before OpenCV
allocates anything; headers are parsed only by ``fai_infer/image/header.py`` (one reader per
format). ``fai_infer/image/preprocess.py`` turns the decoded photo into model input.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import numpy as np

# OpenCV reads this once, at its first decode: a second line of defence behind our own header
# check against decompression bombs in formats whose header we do not parse (TIFF, WebP, ...).
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(100_000_000))
import cv2  # noqa: E402

# A refused or broken image is reported by us in one line (ImageError); OpenCV's imgcodecs
# also logged several lines of its own at ERROR level for each (GIF frames outside the screen,
# 4 TB TIFF tiles; issue 33), on every kiosk's stderr. Only fatal messages are kept.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)

from fai_infer.errors import ImageError  # noqa: E402
from fai_infer.safe_files import NotARegularFile, read_bounded  # noqa: E402
from fai_infer.image.header import (MAX_JPEG_SCANS, decoded_layout,  # noqa: E402
                                    exif_orientation, header_size, jpeg_scans, png_chunks)

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]

DEFAULT_MAX_PIXELS = 100_000_000  # a 108 MP phone photo is refused; 50,000 x 50,000 bombs are too
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# What one input may decode to (width x height x channels x bytes per sample), checked from the
# header before decoding: 96 MiB is a 32 MP RGB PNG; JPEGs count at their reduced decode size.
# With the decoder's own buffers a refused-or-decoded input peaks under 300 MB of RSS
# (tests/test_hostile.py measures it per file). UI and API uploads use a stricter budget.
DEFAULT_MAX_DECODED_BYTES = 96 * 1024 * 1024

def describe(source: Any) -> str:
    """A short, printable name for an input, used in every error message."""
    if isinstance(source, (str, os.PathLike)):
        return os.fsdecode(source).encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, np.ndarray):
        return f"<array {source.shape} {source.dtype}>"
    return f"<{type(source).__name__}>"


def _read_file(path: Path, name: str, max_bytes: int) -> bytes:
    """A photo's bytes: regular files only (a link to one is fine), opened without blocking
    and read up to ``max_bytes`` counted as read (a device reports size 0; issue 33)."""
    try:
        return read_bounded(path, max_bytes, follow_symlinks=True)
    except NotARegularFile as exc:
        if exc.errno == 27:
            raise ImageError(name, f"file is over the {max_bytes:,} byte limit") from None
        kind = str(exc).rsplit(" is ", 1)[-1]
        raise ImageError(name, f"is {kind}, not an image file") from None
    except FileNotFoundError:
        reason = "broken symbolic link" if path.is_symlink() else "file not found"
        raise ImageError(name, reason) from None
    except PermissionError:
        raise ImageError(name, "permission denied (file is not readable)") from None
    except OSError as exc:
        raise ImageError(name, f"cannot read file ({exc.strerror or exc})") from None


def check_png_chunks(buf: bytes, name: str) -> None:
    """Refuse a PNG whose chunk lengths run past the end of the file before OpenCV reads it:
    its reader allocates what a chunk claims (fuzzing found 3.5 GB and 7 s for a 3 kB file)."""
    n = len(buf)
    for kind, start, length in png_chunks(buf):
        if length > n - start - 4:
            label = kind.decode("latin-1") if kind.isalpha() else repr(kind)
            raise ImageError(name, f"corrupt or truncated PNG: chunk {label} claims {length:,} "
                                   f"bytes but only {max(0, n - start - 4):,} remain")


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a decoded array the way EXIF orientation 2..8 says (as PIL's exif_transpose)."""
    if orientation in (5, 6, 7, 8):
        img = np.swapaxes(img, 0, 1)  # transpose; then 6 and 7 flip columns, 7 and 8 rows
        if orientation in (6, 7):
            img = img[:, ::-1]
        if orientation in (7, 8):
            img = img[::-1]
    elif orientation == 2:
        img = img[:, ::-1]
    elif orientation == 3:
        img = img[::-1, ::-1]
    elif orientation == 4:
        img = img[::-1]
    return np.ascontiguousarray(img)


def _to_uint8(img: np.ndarray, name: str) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        finite = np.nan_to_num(img.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        peak = 255.0 if finite.size and float(finite.max()) > 1.0 else 1.0
        return np.clip(finite * (255.0 / peak), 0, 255).round().astype(np.uint8)
    if np.issubdtype(img.dtype, np.integer) or img.dtype == np.bool_:
        return np.clip(img, 0, 255).astype(np.uint8)
    raise ImageError(name, f"unsupported pixel type {img.dtype}")


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32)
    return (rgb * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)


def _normalise_channels(img: np.ndarray, name: str, bgr: bool) -> np.ndarray:
    """Any decoded array -> HxWx3 uint8 RGB; alpha composited on white."""
    img = _to_uint8(img, name)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[..., None], 3, axis=2))
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ImageError(name, f"expected an HxW, HxWx3 or HxWx4 image, got shape {img.shape}")
    if img.shape[2] == 4:
        order = [2, 1, 0, 3] if bgr else [0, 1, 2, 3]
        return _composite_on_white(img[..., order])
    if bgr:  # cv2's SIMD channel swap: ~10x faster than numpy's strided copy of img[..., ::-1]
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def _jpeg_reduction(dims: tuple[int, int] | None, target: int) -> tuple[int, int]:
    """(scale factor, cv2 flag): the smallest JPEG decode that still has 2x ``target``."""
    if dims is not None and target > 0:
        for factor, reduced in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                                (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if min(dims) // factor >= 2 * target:
                return factor, reduced
    return 1, cv2.IMREAD_COLOR


def check_decoded_size(buf: bytes, name: str,
                       max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
                       target: int = 0) -> None:
    """Refuse an encoded image whose header says it decodes to more than ``max_decoded_bytes``
    (or whose size cannot be read from its header), before any decoder allocates it."""
    fmt, _ = header_size(buf)
    if fmt == "unknown":
        return  # decode_bytes names it as "not an image"
    layout = decoded_layout(buf)
    if layout is None:
        if fmt == "jpeg":
            return  # no frame header: OpenCV decodes nothing and says so
        raise ImageError(name, f"cannot read the {fmt} header (image size unknown)")
    if fmt == "jpeg":  # each scan is a pass over the whole image: a CPU bomb, not a memory one
        scans = jpeg_scans(buf)
        if scans > MAX_JPEG_SCANS:
            raise ImageError(name, f"JPEG has more than {MAX_JPEG_SCANS} scans (a progressive "
                                   f"file needs about 10); refused before decoding")
    factor = _jpeg_reduction((layout.width, layout.height), target)[0] if fmt == "jpeg" else 1
    decoded = (-(-layout.width // factor)) * (-(-layout.height // factor)) * layout.channels \
        * layout.sample_bytes + layout.working_bytes  # progressive JPEG: all coefficients
    if decoded > max_decoded_bytes:
        raise ImageError(name, f"{layout.describe()} decodes to {decoded:,} bytes, over the "
                               f"{max_decoded_bytes:,} byte limit")


def _shrink_before_converting(img: np.ndarray, target: int) -> np.ndarray:
    """Resize a decoded non-JPEG to the size square_resize will produce, in its own depth and
    channels, so 16-bit, float and alpha conversions run on a small image, not a full one."""
    h, w = img.shape[:2]
    side = max(h, w)
    if target <= 0 or side <= target or img.dtype not in (np.uint8, np.uint16, np.float32):
        return img
    new_h = max(1, min(target, round(h * target / side)))
    new_w = max(1, min(target, round(w * target / side)))
    try:
        return cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_AREA)
    except cv2.error:
        return img


def decode_bytes(
    buf: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS, target: int = 0,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> np.ndarray:
    """Encoded bytes -> HxWx3 uint8 RGB. ``target`` lets big JPEGs decode at 1/2..1/8 scale and
    other formats shrink before their depth and alpha are converted."""
    if len(buf) == 0:
        raise ImageError(name, "empty file (0 bytes)")
    fmt, dims = header_size(buf)
    if fmt == "unknown":
        head = buf[:64].lstrip().lower()
        kind = "HTML or text" if head[:1] in (b"<", b"{", b"[") or head.isascii() else "unknown"
        raise ImageError(name, f"not an image ({kind} content, no known image signature)")
    layout = decoded_layout(buf)
    if dims is None and layout is not None:
        dims = (layout.width, layout.height)
    if dims is not None:
        w, h = dims
        if w <= 0 or h <= 0:
            raise ImageError(name, f"{fmt} header declares an empty {w}x{h} image")
        if w * h > max_pixels:
            raise ImageError(
                name, f"{fmt} is {w}x{h} = {w * h:,} pixels, over the {max_pixels:,} pixel limit"
            )
    check_decoded_size(buf, name, max_decoded_bytes, target)
    if fmt == "png":
        check_png_chunks(buf, name)
    arr = np.frombuffer(buf, dtype=np.uint8)
    try:
        if fmt == "jpeg":
            # IMREAD_COLOR honours EXIF orientation and converts grayscale and CMYK to BGR.
            img = cv2.imdecode(arr, _jpeg_reduction(dims, target)[1])
        else:
            img = cv2.imdecode(arr, cv2.IMREAD_UNCHANGED)
            if img is not None and img.size:
                img = _shrink_before_converting(img, target)
                img = apply_orientation(img, exif_orientation(buf, fmt))
    except cv2.error as exc:
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else "decoder error"
        raise ImageError(name, f"cannot decode {fmt}: {msg}") from None
    if img is None or img.size == 0:
        raise ImageError(name, f"cannot decode {fmt} data (corrupt or truncated file)")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise ImageError(name, f"image is {img.shape[1]}x{img.shape[0]}, over the pixel limit")
    return _normalise_channels(img, name, bgr=True)


def load_rgb(
    source: ImageInput,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    target: int = 0,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> np.ndarray:
    """Path, bytes or array -> HxWx3 uint8 RGB, or ImageError naming the input."""
    name = describe(source)
    if isinstance(source, np.ndarray):
        if source.size == 0:
            raise ImageError(name, "empty array")
        if source.ndim >= 2 and source.shape[0] * source.shape[1] > max_pixels:
            raise ImageError(name, "array is over the pixel limit")
        return _normalise_channels(source, name, bgr=False)
    if isinstance(source, (bytes, bytearray, memoryview)):
        buf = bytes(source)
        if len(buf) > max_bytes:
            raise ImageError(name, f"{len(buf):,} bytes, over the {max_bytes:,} byte limit")
        return decode_bytes(buf, name, max_pixels, target, max_decoded_bytes)
    if isinstance(source, (str, os.PathLike)):
        return decode_bytes(_read_file(Path(source), name, max_bytes), name, max_pixels, target,
                            max_decoded_bytes)
    raise ImageError(name, "expected a file path, encoded bytes or an HxWx3 uint8 RGB array")
