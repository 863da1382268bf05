"""Reading the parser's ONNX file and its output: numpy + OpenCV only, no torch.

Why here and torch-free: evaluation must read the model exactly as the kiosk will, and the
runtime wrapper (``fai_infer``, phase 2 of issue 30) can take these functions over unchanged.
The file carries everything needed in its metadata (``fai_parser``: groups, input size,
preprocessing, output layout), so nothing about the model is hard-coded by its caller.

    meta = parser_metadata(session)                  # or read from the .onnx with onnx
    x = preprocess(photo, meta.spec)[None]           # fai_infer.preprocess: (1, 3, S, S)
    logits = session.run(None, {"image": x})[0][0]   # (G, S/4, S/4) float32
    probs = probabilities_at_photo(logits, h, w, meta.spec.size)  # (G, h, w), sums to 1
    groups = probs.argmax(0)                         # index into meta.groups
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from fai_infer.preprocess import PreprocessSpec

METADATA_KEY = "fai_parser"


@dataclass(frozen=True)
class ParserMetadata:
    """What a parser file says about itself."""

    groups: tuple[str, ...]
    garment_groups: tuple[str, ...]
    spec: PreprocessSpec
    output_stride: int
    raw: dict[str, Any]


def metadata_from_json(text: str) -> ParserMetadata:
    data = json.loads(text)
    return ParserMetadata(tuple(data["groups"]), tuple(data["garment_groups"]),
                          PreprocessSpec.from_dict(data["preprocess"]),
                          int(data["output_stride"]), data)


def parser_metadata(session: Any) -> ParserMetadata:
    """From an onnxruntime InferenceSession of a parser file (an error if it is not one)."""
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise ValueError(f"not a garment parser model: no '{METADATA_KEY}' metadata")
    return metadata_from_json(props[METADATA_KEY])


def letterbox_geometry(h: int, w: int, size: int) -> tuple[int, int, int, int]:
    """(top, left, new_h, new_w) of an h x w photo inside its letterbox square: the arithmetic
    of ``fai_infer.preprocess.square_resize``."""
    side = max(h, w)
    new_h = max(1, min(size, round(h * size / side)))
    new_w = max(1, min(size, round(w * size / side)))
    return (size - new_h) // 2, (size - new_w) // 2, new_h, new_w


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def probabilities_at_photo(logits: np.ndarray, height: int, width: int, size: int
                           ) -> np.ndarray:
    """(G, S/4, S/4) logits of one photo -> (G, height, width) probabilities on the photo's own
    pixels: logits upsampled (bilinear, half-pixel centres like torch's align_corners=False) to
    the S x S letterbox, the padding cut off, then resized to the photo."""
    g = logits.shape[0]
    hwc = np.ascontiguousarray(np.moveaxis(logits.astype(np.float32), 0, -1))
    square = cv2.resize(hwc, (size, size), interpolation=cv2.INTER_LINEAR).reshape(size, size, g)
    top, left, new_h, new_w = letterbox_geometry(height, width, size)
    inner = np.ascontiguousarray(square[top : top + new_h, left : left + new_w])
    if (new_h, new_w) != (height, width):
        inner = cv2.resize(inner, (width, height), interpolation=cv2.INTER_LINEAR)
    inner = inner.reshape(height, width, g)
    return softmax(np.moveaxis(inner, -1, 0), axis=0)


def group_map(logits: np.ndarray, height: int, width: int, size: int) -> np.ndarray:
    """(height, width) uint8 group index per photo pixel (argmax of the probabilities)."""
    return probabilities_at_photo(logits, height, width, size).argmax(0).astype(np.uint8)
