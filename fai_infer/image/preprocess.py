"""The one preprocessing path shared by training, export checks and the runtime.

Everything that turns a decoded photo into model input lives here, in numpy + OpenCV only, so
the kiosk runtime, the training loop and the exporter's parity checks can never drift apart.
Decoding untrusted bytes is ``fai_infer/image/decode.py`` (re-exported here: callers import both from
this module). The spec that
parametrises it travels inside every exported ONNX file (see ``PreprocessSpec.to_dict``).

Catalogue photos sit on white studio backgrounds, so images are padded to a square with white
(never stretched, never cropped) before resizing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# Decoding first: it sets OpenCV's pixel limit before cv2 is imported anywhere.
from fai_infer.image.decode import (ImageError, ImageInput, check_decoded_size,  # noqa: F401
                                    describe, load_rgb)
from fai_infer.image.header import header_size  # noqa: F401
import cv2  # noqa: E402

IMPLEMENTATION = 2  # bumped whenever the pixels this module produces change (keys caches)


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


def centre_crop(square: np.ndarray, share: float) -> np.ndarray:
    """The middle ``share`` of a square uint8 image, resized back to its size: a shopper's
    photo often holds the garment in the middle and a room around it. One function for the
    runtime's query views and the evaluation that chose them."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"centre crop share {share!r}: expected a number in (0, 1]")
    if square.ndim != 3 or square.shape[0] != square.shape[1] or square.shape[2] != 3:
        raise ValueError(f"centre crop: expected a square HxWx3 image, got {square.shape}")
    size = square.shape[0]
    lo = min(int(round(size * (1 - share) / 2)), (size - 1) // 2)
    if lo == 0:
        return square
    middle = square[lo : size - lo, lo : size - lo]
    return cv2.resize(middle, (size, size), interpolation=cv2.INTER_CUBIC)
