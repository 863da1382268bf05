"""Regenerate tests/golden/default_model.json after deliberately changing the shipped model.

The golden inputs are committed files (``tests/golden/inputs/``: a JPEG, a PNG and a raw array),
so an OpenCV upgrade that encodes differently cannot move them; ``--new-inputs`` rewrites them.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from export.synthetic import generated_squares

GOLDEN = Path(__file__).parent / "golden" / "default_model.json"
INPUTS = Path(__file__).parent / "golden" / "inputs"


def write_golden_inputs() -> None:
    sq = generated_squares(120, 3, seed=42)
    portrait = np.full((160, 120, 3), 255, np.uint8)
    portrait[20:140] = sq[0]
    INPUTS.mkdir(parents=True, exist_ok=True)
    (INPUTS / "portrait.jpg").write_bytes(
        cv2.imencode(".jpg", portrait[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
    (INPUTS / "square.png").write_bytes(cv2.imencode(".png", sq[1][..., ::-1])[1].tobytes())
    np.save(INPUTS / "array.npy", sq[2], allow_pickle=False)


def golden_inputs() -> list:
    """Three fixed inputs through the full path: JPEG bytes, a PNG file's path, a raw array."""
    return [(INPUTS / "portrait.jpg").read_bytes(), str(INPUTS / "square.png"),
            np.load(INPUTS / "array.npy", allow_pickle=False)]


def main() -> None:
    import sys

    from fai_infer import Encoder

    if "--new-inputs" in sys.argv or not (INPUTS / "array.npy").is_file():
        write_golden_inputs()

    enc = Encoder()
    emb = enc.embed(golden_inputs())
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({"model": enc.path.name,
                                  "weights_sha256": enc.info.weights_sha256,
                                  "embeddings": np.round(emb, 6).tolist()}))
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
