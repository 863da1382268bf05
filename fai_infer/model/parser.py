"""The garment parser at run time: a photo -> its garments (mask, box, confidence), skin, hair
and background, with onnxruntime, numpy and OpenCV only.

Why here: a shopper's photo holds a person, a backdrop and several garments, and the encoder
should see one garment. The parser file (``models/fai-parser.onnx``, made by
``export/parser_onnx.py``) carries everything needed to read it in its metadata
(``fai_parser``: groups in output order, input size, preprocessing, output stride), so nothing
about the model is hard-coded here; training's evaluation reads the output with these same
functions (``train/parser_output.py`` imports them), so the figures describe this code.

    parser = GarmentParser()                 # models/fai-parser.onnx beside the encoder
    found = parser.parse("street.jpg")        # Parse: .regions, .skin, .hair, .background
    view = garment_view(found.photo, found.regions[0])  # the garment on white, like a packshot
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fai_infer.model.ort import ort  # first: telemetry off before onnxruntime loads
from fai_infer.model.encoder import one_line
from fai_infer.model.graph_check import GraphRefused, check_graph
from fai_infer.safe_files import NotARegularFile, open_regular
from fai_infer.image.preprocess import (ImageError, ImageInput, PreprocessSpec, describe,
                                        load_rgb, to_tensor, square_resize)
import cv2  # noqa: E402  (after the decoder: it sets OpenCV's pixel limit)

METADATA_KEY = "fai_parser"
DEFAULT_PARSER_NAME = "fai-parser.onnx"
# Masks are made on the photo shrunk to this long side: enough for a garment's outline and
# its crop for the encoder, and (groups x pixels) probabilities stay a few megabytes.
WORK_SIDE = 640
MIN_SHARE = 0.005  # a garment smaller than this share of the photo is noise, not a garment
# A blob of a garment's group smaller than this share of the group's largest blob is a stray
# (a speck of "bag" on a sleeve): it is left out of the region, so the box stays tight.
MIN_BLOB_OF_LARGEST = 0.1

# What a shopper calls each garment group (the catalogue's own kinds may name them better).
KIND_WORDS: dict[str, str] = {
    "upper": "top", "lower": "trousers, skirt or shorts", "whole": "dress or jumpsuit",
    "outer": "jacket or coat", "shoes": "shoes", "bag": "bag", "accessory": "accessory",
}


# -- reading the file ---------------------------------------------------------------------------
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
    of ``fai_infer.image.preprocess.square_resize``."""
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


def default_parser_path() -> Path:
    """$FAI_PARSER, else models/fai-parser.onnx beside the default encoder (the checkout's
    models/, else a wheel's package data): found the way the encoder's default is."""
    from fai_infer.model.encoder import shipped_model_path

    return shipped_model_path(DEFAULT_PARSER_NAME, "FAI_PARSER", "garment parser",
                              "python -m export.parser_onnx")


# -- what a parse returns -----------------------------------------------------------------------
@dataclass
class Region:
    """One garment group found in a photo. ``box`` is (x0, y0, x1, y1) in the parsed photo's
    pixels, end-exclusive (``photo[y0:y1, x0:x1]``); ``confidence`` is the mean probability of
    the group inside ``mask``; ``share`` is the mask's share of the photo."""

    group: str
    kind: str
    mask: np.ndarray
    box: tuple[int, int, int, int]
    confidence: float
    share: float

    def to_dict(self) -> dict:
        return {"group": self.group, "kind": self.kind, "box": list(self.box),
                "confidence": round(self.confidence, 4), "share": round(self.share, 4)}


@dataclass
class Parse:
    """A photo's garments (largest first) and its skin, hair and background pixels, all on
    ``photo`` (the decoded photo, long side at most WORK_SIDE)."""

    photo: np.ndarray
    regions: list[Region]
    skin: np.ndarray
    hair: np.ndarray
    background: np.ndarray
    source: str = ""
    groups: tuple[str, ...] = field(default=())

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of ``photo`` and of every mask."""
        return self.photo.shape[0], self.photo.shape[1]

    @property
    def person_share(self) -> float:
        """The share of the photo that is skin or hair: a person is in it when this is high."""
        return float((self.skin | self.hair).mean())

    def region(self, group: str) -> Region | None:
        return next((r for r in self.regions if r.group == group), None)


def _clean(mask: np.ndarray) -> np.ndarray:
    """The mask without stray blobs far smaller than its largest one."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= MIN_BLOB_OF_LARGEST * areas.max()) + 1
    return np.isin(labels, keep)


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), end-exclusive, of a non-empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def to_photo(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A mask made at the parse's resolution, on the photo's pixels (nearest neighbour)."""
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask.astype(np.uint8), (width, height),
                      interpolation=cv2.INTER_NEAREST).astype(bool)


def regions_from(probs: np.ndarray, groups: tuple[str, ...], garment_groups: tuple[str, ...],
                 min_share: float = MIN_SHARE, size: tuple[int, int] | None = None
                 ) -> list[Region]:
    """(G, h, w) probabilities -> one Region per garment group present, largest first, with
    masks and boxes on a photo of ``size`` (height, width; default h x w)."""
    labels = probs.argmax(0)
    height, width = size or labels.shape
    out: list[Region] = []
    for g in garment_groups:
        index = groups.index(g)
        small = labels == index
        if small.mean() < min_share:
            continue
        small = _clean(small)
        mask = to_photo(small, height, width)
        share = float(mask.mean())
        if share < min_share or not mask.any():
            continue
        out.append(Region(g, KIND_WORDS.get(g, g), mask, box_of(mask),
                          float(probs[index][small].mean()), share))
    return sorted(out, key=lambda r: -r.share)


def garment_view(photo: np.ndarray, region: Region, margin: float = 0.1,
                 paint: bool = True) -> np.ndarray:
    """The region's box grown by ``margin`` of its size on each side, every pixel outside the
    region's mask painted white: the garment as a packshot shows it. White also keeps the
    encoder's colour part on the garment (it weighs cells by their distance from the border
    colour, here the white backdrop). ``paint=False``: the box as photographed."""
    h, w = photo.shape[:2]
    x0, y0, x1, y1 = region.box
    mx, my = round((x1 - x0) * margin), round((y1 - y0) * margin)
    x0, y0, x1, y1 = max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)
    if not paint:
        return np.ascontiguousarray(photo[y0:y1, x0:x1])
    view = np.full((y1 - y0, x1 - x0, 3), 255, dtype=np.uint8)
    keep = region.mask[y0:y1, x0:x1]
    view[keep] = photo[y0:y1, x0:x1][keep]
    return view


def work_photo(rgb: np.ndarray, side: int = WORK_SIDE) -> np.ndarray:
    """The photo with its long side at most ``side`` (area-averaged), else as it is."""
    h, w = rgb.shape[:2]
    if max(h, w) <= side:
        return rgb
    scale = side / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA)


# -- the model --------------------------------------------------------------------------------
class GarmentParser:
    """``GarmentParser(None)`` loads models/fai-parser.onnx; ``.parse(photo)`` -> Parse."""

    def __init__(self, path: str | os.PathLike | None = None, threads: int = 0,
                 min_share: float = MIN_SHARE):
        self.path = Path(path) if path is not None else default_parser_path()
        try:  # the encoder's checks: no FIFO or device, no hostile graph before onnxruntime
            os.close(open_regular(self.path, follow_symlinks=True))
            check_graph(self.path)
        except FileNotFoundError:
            raise FileNotFoundError(f"garment parser file not found: {self.path}") from None
        except NotARegularFile as exc:
            raise ValueError(f"{self.path}: not a model file ({exc})") from None
        except GraphRefused as exc:
            raise ValueError(f"{self.path}: refused: {exc}") from None
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the encoder
        try:
            self.session = ort.InferenceSession(str(self.path), so,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: not a loadable ONNX model ({one_line(exc)})") from None
        try:
            self.meta = parser_metadata(self.session)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.path}: {exc}") from None
        self.spec = self.meta.spec
        self.groups = self.meta.groups
        missing = [g for g in ("background", "skin", "hair") if g not in self.groups]
        if missing:
            raise ValueError(f"{self.path}: parser groups lack {', '.join(missing)}")
        self.garment_groups = self.meta.garment_groups
        self.min_share = float(min_share)
        self._input = self.session.get_inputs()[0].name
        self._check_answers()

    def _check_answers(self) -> None:
        """Run once on a blank square: a file that copies a parser's metadata but answers
        with other shapes or non-finite logits would otherwise switch "shop the look" off
        without a word (found by an outside red team)."""
        size, stride = self.spec.size, self.meta.output_stride
        want = (1, len(self.groups), size // stride, size // stride)
        blank = to_tensor(np.full((size, size, 3), 128, np.uint8), self.spec)[None]
        try:
            got = self.session.run(None, {self._input: blank})[0]
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: does not run as a garment parser "
                             f"({one_line(exc)})") from None
        if got.shape != want or not np.isfinite(got).all():
            raise ValueError(f"{self.path}: does not answer like the garment parser its "
                             f"metadata describes (logits {tuple(got.shape)}, expected {want}"
                             f"{'' if np.isfinite(got).all() else ', not finite'})")

    def probabilities(self, rgb: np.ndarray, height: int = 0, width: int = 0) -> np.ndarray:
        """(G, height, width) group probabilities of a decoded HxWx3 uint8 RGB photo (default:
        at the photo's own size)."""
        x = to_tensor(square_resize(rgb, self.spec), self.spec)[None]
        logits = self.session.run(None, {self._input: x})[0][0]
        return probabilities_at_photo(logits, height or rgb.shape[0], width or rgb.shape[1],
                                      self.spec.size)

    def parse(self, image: ImageInput) -> Parse:
        """A photo (path, bytes, or HxWx3 uint8 RGB array) -> its Parse; bad input raises one
        ImageError naming it (decoding is ``fai_infer.image``'s, bounded)."""
        rgb = work_photo(load_rgb(image, target=WORK_SIDE))
        return self.parse_rgb(rgb, describe(image))

    def parse_rgb(self, rgb: np.ndarray, source: str = "") -> Parse:
        """As :meth:`parse` for an already decoded photo."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ImageError(source or describe(rgb), "expected an HxWx3 uint8 RGB photo")
        h, w = rgb.shape[:2]
        # Read at the model's own input resolution (long side spec.size), then scaled to the
        # photo: the output is 1/4 of that, so a finer read only interpolates, and it is what
        # made parsing cost several encoder runs.
        _, _, mh, mw = letterbox_geometry(h, w, self.spec.size)
        mh, mw = min(mh, h), min(mw, w)
        probs = self.probabilities(rgb, mh, mw)
        labels = probs.argmax(0)
        by = {g: to_photo(labels == self.groups.index(g), h, w)
              for g in ("background", "skin", "hair")}
        regions = regions_from(probs, self.groups, self.garment_groups, self.min_share, (h, w))
        return Parse(rgb, regions, by["skin"], by["hair"], by["background"], source,
                     self.groups)
