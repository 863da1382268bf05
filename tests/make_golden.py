"""Regenerate tests/golden/default_model.json after deliberately changing the shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from export.synthetic import generated_squares

GOLDEN = Path(__file__).parent / "golden" / "default_model.json"


def golden_inputs() -> list:
    """Three fixed inputs through the full path: an encoded JPEG, a PNG and a raw array."""
    sq = generated_squares(120, 3, seed=42)
    portrait = np.full((160, 120, 3), 255, np.uint8)
    portrait[20:140] = sq[0]
    jpeg = cv2.imencode(".jpg", portrait[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    png = cv2.imencode(".png", sq[1][..., ::-1])[1].tobytes()
    return [jpeg, png, sq[2]]


def main() -> None:
    from fai_infer import Encoder

    enc = Encoder()
    emb = enc.embed(golden_inputs())
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({"model": enc.path.name,
                                  "weights_sha256": enc.info.weights_sha256,
                                  "embeddings": np.round(emb, 6).tolist()}))
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
