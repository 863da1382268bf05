"""The one preprocessing path shared by training, export checks and the runtime.

Everything that turns a photo into model input lives here, in numpy + OpenCV only, so the kiosk
runtime, the training loop and the exporter's parity checks can never drift apart. The spec that
parametrises it travels inside every exported ONNX file (see ``PreprocessSpec.to_dict``).

Catalogue photos sit on white studio backgrounds, so images are padded to a square with white
(never stretched, never cropped) before resizing.
"""

from __future__ import annotations

import os
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

# OpenCV reads this once, at its first decode: a second line of defence behind our own header
# check against decompression bombs in formats whose header we do not parse (TIFF, WebP, ...).
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(100_000_000))
import cv2  # noqa: E402

from fai_infer.image_header import decoded_layout  # noqa: E402

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]

DEFAULT_MAX_PIXELS = 100_000_000  # a 108 MP phone photo is refused; 50,000 x 50,000 bombs are too
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# What one input may decode to (width x height x channels x bytes per sample), checked from the
# header before decoding: 96 MiB is a 32 MP RGB PNG; JPEGs count at their reduced decode size.
# With the decoder's own buffers a refused-or-decoded input peaks under 300 MB of RSS
# (tests/test_hostile.py measures it per file). UI and API uploads use a stricter budget.
DEFAULT_MAX_DECODED_BYTES = 96 * 1024 * 1024
IMPLEMENTATION = 2  # bumped whenever the pixels this module produces change (keys caches)


class ImageError(ValueError):
    """An input that cannot be turned into model input; the message names the input and why."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


@dataclass(frozen=True)
class PreprocessSpec:
    """How a photo becomes a CHW float tensor. Stored in each model file's metadata."""

    size: int = 96
    pad_value: int = 255  # white: catalogue backgrounds are white
    resize: str = "area"  # cv2.INTER_AREA when shrinking, cubic when enlarging
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channel_order: str = "RGB"
    layout: str = "CHW"
    version: int = 1
    notes: str = field(default="pad to square with pad_value, resize, x*scale, (x-mean)/std")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PreprocessSpec":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("mean", "std"):
            if key in known:
                known[key] = tuple(float(x) for x in known[key])
        spec = cls(**known)
        if spec.version != 1 or spec.channel_order != "RGB" or spec.layout != "CHW":
            raise ValueError(f"unsupported preprocessing spec: {data}")
        if len(spec.mean) != 3 or len(spec.std) != 3 or min(spec.std) <= 0 or spec.size <= 0:
            raise ValueError(f"invalid preprocessing spec (3 means, 3 positive stds and a "
                             f"positive size needed): {data}")
        return spec


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
    try:
        if path.is_dir():
            raise ImageError(name, "is a directory, not an image file")
        if not path.exists():
            reason = "broken symbolic link" if path.is_symlink() else "file not found"
            raise ImageError(name, reason)
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageError(name, f"file is {size:,} bytes, over the {max_bytes:,} byte limit")
        return path.read_bytes()
    except PermissionError:
        raise ImageError(name, "permission denied (file is not readable)") from None
    except OSError as exc:
        raise ImageError(name, f"cannot read file ({exc.strerror or exc})") from None


def _jpeg_size(buf: bytes) -> tuple[int, int] | None:
    """Width and height from a JPEG's SOF marker, without decoding the image."""
    layout = decoded_layout(buf)
    return (layout.width, layout.height) if layout is not None else None


def check_png_chunks(buf: bytes, name: str) -> None:
    """Refuse a PNG whose chunk lengths run past the end of the file before OpenCV reads it:
    its reader allocates what a chunk claims (fuzzing found 3.5 GB and 7 s for a 3 kB file)."""
    pos, n = 8, len(buf)
    while pos + 8 <= n:
        (length,) = struct.unpack(">I", buf[pos : pos + 4])
        kind = buf[pos + 4 : pos + 8]
        if length > n - pos - 12:
            label = kind.decode("latin-1") if kind.isalpha() else repr(kind)
            raise ImageError(name, f"corrupt or truncated PNG: chunk {label} claims {length:,} "
                                   f"bytes but only {max(0, n - pos - 12):,} remain")
        pos += 12 + length
        if kind == b"IEND":
            return


def header_size(buf: bytes) -> tuple[str, tuple[int, int] | None]:
    """(format, (width, height) or None) read from the first bytes of an encoded image."""
    if buf[:3] == b"\xff\xd8\xff":
        return "jpeg", _jpeg_size(buf)
    if buf[:8] == b"\x89PNG\r\n\x1a\n":
        if len(buf) >= 24:
            w, h = struct.unpack(">II", buf[16:24])
            return "png", (w, h)
        return "png", None
    if buf[:6] in (b"GIF87a", b"GIF89a") and len(buf) >= 10:
        w, h = struct.unpack("<HH", buf[6:10])
        return "gif", (w, h)
    if buf[:2] == b"BM" and len(buf) >= 26:
        w, h = struct.unpack("<ii", buf[18:26])
        return "bmp", (abs(w), abs(h))
    if buf[:4] == b"RIFF" and buf[8:12] == b"WEBP":
        return "webp", None
    if buf[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff", None
    return "unknown", None


def _tiff_orientation(tiff: bytes) -> int:
    """The Orientation tag (0x0112) of IFD0 in TIFF-structured data (EXIF), or 1."""
    if tiff[:6] == b"Exif\x00\x00":
        tiff = tiff[6:]
    if len(tiff) < 8 or tiff[:4] not in (b"II*\x00", b"MM\x00*"):
        return 1
    end = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack(end + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(end + "H", tiff[ifd : ifd + 2])
    for i in range(min(count, 512)):
        entry = tiff[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
        if len(entry) < 12:
            break
        tag, kind = struct.unpack(end + "HH", entry[:4])
        if tag == 0x0112 and kind == 3:  # SHORT
            (value,) = struct.unpack(end + "H", entry[8:10])
            return value if 1 <= value <= 8 else 1
    return 1


def exif_orientation(buf: bytes, fmt: str) -> int:
    """EXIF orientation (1..8, 1 = as stored) of a PNG (eXIf chunk) or WebP (EXIF chunk), read
    without decoding. OpenCV applies it to JPEGs (IMREAD_COLOR) and TIFFs itself, but not to
    these when it keeps their alpha and depth (IMREAD_UNCHANGED), which is how they decode."""
    try:
        if fmt == "png":
            pos = 8
            while pos + 8 <= len(buf):
                (length,) = struct.unpack(">I", buf[pos : pos + 4])
                kind = buf[pos + 4 : pos + 8]
                if kind == b"eXIf":
                    return _tiff_orientation(buf[pos + 8 : pos + 8 + length])
                if kind == b"IEND":
                    break
                pos += 12 + length
        elif fmt == "webp":
            pos = 12
            while pos + 8 <= len(buf):
                kind = buf[pos : pos + 4]
                (length,) = struct.unpack("<I", buf[pos + 4 : pos + 8])
                if kind == b"EXIF":
                    return _tiff_orientation(buf[pos + 8 : pos + 8 + length])
                pos += 8 + length + (length & 1)
    except struct.error:
        pass
    return 1


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


def square_resize(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Letterbox: resize the long side to spec.size, then centre on a ``pad_value`` square.

    Resizing before padding keeps memory proportional to the photo (a 65,536 x 40 strip must
    not become a 65,536^2 canvas) and is what makes big phone photos cheap."""
    if spec.resize != "area":
        raise ValueError(f"unsupported resize mode {spec.resize!r}")
    h, w = rgb.shape[:2]
    side = max(h, w)
    new_h = max(1, min(spec.size, round(h * spec.size / side)))
    new_w = max(1, min(spec.size, round(w * spec.size / side)))
    if (new_h, new_w) != (h, w):
        interp = cv2.INTER_AREA if side > spec.size else cv2.INTER_CUBIC
        rgb = cv2.resize(rgb, (new_w, new_h), interpolation=interp)
    if new_h == new_w == spec.size:
        return np.ascontiguousarray(rgb)
    square = np.full((spec.size, spec.size, 3), spec.pad_value, dtype=np.uint8)
    top, left = (spec.size - new_h) // 2, (spec.size - new_w) // 2
    square[top : top + new_h, left : left + new_w] = rgb
    return square


def scale_pixels(squares: Any, spec: PreprocessSpec) -> Any:
    """uint8 HxWx3 (or NxHxWx3), numpy or torch -> float32 CHW (NCHW) times ``spec.scale``.
    Training augments in this space (pixel values in [0, 1]) before :func:`normalise`."""
    if isinstance(squares, (np.ndarray, list, tuple)):
        arr = np.asarray(squares, dtype=np.float32) * np.float32(spec.scale)
        return np.ascontiguousarray(np.moveaxis(arr, -1, -3))
    return squares.movedim(-1, -3).float() * spec.scale  # a torch tensor (training)


def normalise(x: Any, spec: PreprocessSpec) -> Any:
    """Scaled CHW (NCHW) pixels -> model input: (x - mean) / std per channel, numpy or torch.
    The one place mean and std are applied, for training, evaluation, export and the runtime."""
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(3, 1, 1)
    if not (np.any(mean != 0) or np.any(std != 1)):
        return x
    if isinstance(x, np.ndarray):
        return (x - mean) / std
    return (x - x.new_tensor(mean)) / x.new_tensor(std)  # a torch tensor (training)


def to_tensor(square: Any, spec: PreprocessSpec) -> Any:
    """uint8 HxWx3 (or a stack of them; numpy or torch) -> the float CHW (NCHW) model input."""
    return normalise(scale_pixels(square, spec), spec)


def load_square(source: ImageInput, spec: PreprocessSpec, **limits: int) -> np.ndarray:
    """Decode and pad/resize one input to a spec.size square uint8 RGB image."""
    return square_resize(load_rgb(source, target=spec.size, **limits), spec)


def preprocess(source: ImageInput, spec: PreprocessSpec, **limits: int) -> np.ndarray:
    """One input -> float32 CHW tensor ready for the encoder."""
    return to_tensor(load_square(source, spec, **limits), spec)
