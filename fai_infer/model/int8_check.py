"""The int8 self-check: an int8 file must still match its fp32 model on the CPU it runs on.

An int8 file passed its gate on the CPU that exported it, but onnxruntime picks its int8
kernels by CPU (``fai_infer.model.cpu``), and some of them round differently or saturate. So the
export stores a few deterministic inputs and their fp32 embeddings in the file
(``fai.int8_golden``); at load the Encoder embeds them once here and compares, and when they
miss the gate it says so in one line and uses the fp32 file beside it instead.
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from dataclasses import dataclass

import numpy as np

from fai_infer.model.cpu import int8_path
from fai_infer.model.info import META_PREFIX

GOLDEN_KEY = META_PREFIX + "int8_golden"
MIN_MEAN_COSINE = 0.99  # the export gate's mean cosine
MIN_COSINE = 0.98  # and no golden input far off


class GoldenError(ValueError):
    """The file's golden inputs cannot be read (damaged or foreign metadata)."""


@dataclass(frozen=True)
class Int8Check:
    passed: bool
    mean_cosine: float
    min_cosine: float
    inputs: int
    cpu_path: str
    ms: float

    def summary(self) -> dict:
        return {"passed": self.passed, "mean_cosine": round(self.mean_cosine, 4),
                "min_cosine": round(self.min_cosine, 4), "inputs": self.inputs,
                "cpu_path": self.cpu_path, "ms": round(self.ms, 1),
                "gate": {"mean_cosine": MIN_MEAN_COSINE, "min_cosine": MIN_COSINE}}


def _pack(a: np.ndarray) -> dict:
    return {"dtype": str(a.dtype), "shape": list(a.shape),
            "zlib_b64": base64.b64encode(zlib.compress(np.ascontiguousarray(a).tobytes(), 9)
                                         ).decode("ascii")}


def _unpack(d: dict, dtype: str, max_bytes: int = 64 << 20) -> np.ndarray:
    if d.get("dtype") != dtype:
        raise GoldenError(f"dtype {d.get('dtype')!r}, expected {dtype}")
    shape = [int(s) for s in d["shape"]]
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if any(s < 0 for s in shape) or size > max_bytes:
        raise GoldenError(f"shape {shape} out of bounds")
    raw = zlib.decompressobj().decompress(base64.b64decode(d["zlib_b64"]), size + 1)
    if len(raw) != size:
        raise GoldenError(f"{len(raw)} bytes for shape {shape}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def golden_metadata(squares: np.ndarray, fp32_embeddings: np.ndarray) -> dict[str, str]:
    """The ONNX metadata entry an export adds to an int8 file: prepared uint8 squares
    (n, size, size, 3) and the fp32 model's unit embeddings of them."""
    emb = np.asarray(fp32_embeddings, dtype=np.float32)
    if len(squares) != len(emb) or not len(emb):
        raise ValueError("one fp32 embedding per golden square, at least one")
    return {GOLDEN_KEY: json.dumps({"squares": _pack(np.asarray(squares, dtype=np.uint8)),
                                    "embeddings": _pack(emb)}, sort_keys=True)}


def read_golden(meta: dict[str, str], size: int, dim: int
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """(squares, fp32 embeddings) from a model's metadata; None when the file has none."""
    if GOLDEN_KEY not in meta:
        return None
    try:
        data = json.loads(meta[GOLDEN_KEY])
        squares = _unpack(data["squares"], "uint8")
        emb = _unpack(data["embeddings"], "float32")
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        raise GoldenError(f"unreadable {GOLDEN_KEY} ({str(exc)[:80]})") from None
    if squares.shape[1:] != (size, size, 3) or emb.shape != (len(squares), dim):
        raise GoldenError(f"{GOLDEN_KEY} shapes {squares.shape} / {emb.shape} do not fit the "
                          f"model ({size} px, {dim}-d)")
    return squares, emb


def run_check(embed_squares, squares: np.ndarray, expected: np.ndarray) -> Int8Check:
    """Embed the golden squares with ``embed_squares`` (unit rows) and judge them."""
    t0 = time.perf_counter()
    got = embed_squares(squares)
    ms = (time.perf_counter() - t0) * 1e3
    ref = expected / np.maximum(np.linalg.norm(expected, axis=1, keepdims=True), 1e-12)
    cos = np.sum(ref * got, axis=1)
    cos = np.where(np.isfinite(cos), cos, -1.0)
    mean, low = float(cos.mean()), float(cos.min())
    return Int8Check(mean >= MIN_MEAN_COSINE and low >= MIN_COSINE, mean, low, len(cos),
                     int8_path(), ms)
