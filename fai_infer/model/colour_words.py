"""The colour a shopper would name, read from an embedding's learned colour part.

A model whose colour part is learned (``train/colour_net.py``) stores it as the square root of a
distribution over the shop's colour names (``fai.colour_names``), so the part itself says what
colour the garment is: "navy blue", or "black, grey" for a garment between the two. Models with
the fixed histogram carry no names and get no words.
"""

from __future__ import annotations

import numpy as np

from fai_infer.model.parts import EmbeddingParts

MIN_SHARE = 0.25  # a name is said when the part gives it at least this share
MAX_WORDS = 2


def colour_words(vector: np.ndarray, parts: EmbeddingParts | None, names: tuple[str, ...]
                 ) -> list[str]:
    """The likeliest colour names (at most MAX_WORDS, each with at least MIN_SHARE), likeliest
    first; [] when the model has no named colour part."""
    if parts is None or parts.colour is None or not names:
        return []
    h0, h1 = parts.colour
    if h1 - h0 != len(names):
        return []
    share = np.square(np.asarray(vector, dtype=np.float64)[h0:h1])
    total = share.sum()
    if not np.isfinite(total) or total <= 0:
        return []
    share = share / total
    order = np.argsort(-share)[:MAX_WORDS]
    return [names[i].lower() for i in order if share[i] >= MIN_SHARE]
