"""Reading the parser's ONNX file and its output: re-exported from the runtime, which owns it.

Why a re-export: evaluation must read the model exactly as the kiosk does, so the torch-free
reading lives in ``fai_infer/model/parser.py`` (one owner) and training's scripts import it
from here unchanged.

    meta = parser_metadata(session)                  # or read from the .onnx with onnx
    x = preprocess(photo, meta.spec)[None]           # fai_infer.image.preprocess: (1, 3, S, S)
    logits = session.run(None, {"image": x})[0][0]   # (G, S/4, S/4) float32
    probs = probabilities_at_photo(logits, h, w, meta.spec.size)  # (G, h, w), sums to 1
    groups = probs.argmax(0)                         # index into meta.groups
"""

from __future__ import annotations

from fai_infer.model.parser import (METADATA_KEY, ParserMetadata, group_map,  # noqa: F401
                                    letterbox_geometry, metadata_from_json, parser_metadata,
                                    probabilities_at_photo, softmax)

__all__ = ["METADATA_KEY", "ParserMetadata", "group_map", "letterbox_geometry",
           "metadata_from_json", "parser_metadata", "probabilities_at_photo", "softmax"]
