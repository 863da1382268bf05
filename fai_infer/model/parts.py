"""Garment and colour: weighing the two parts of an embedding at query time.

A model exported with a colour part (``train/colour.py``) stores each item as
``[sqrt(1 - c0) * garment, sqrt(c0) * colour]`` (both parts unit vectors, c0 the model's default
colour weight), so a plain dot product of two stored vectors is ``(1 - c0) g.g' + c0 h.h'``.
A query asking for colour weight ``w`` scales its own two stored parts by ``(1 - w) / (1 - c0)``
and ``w / c0``; its dot product with any stored vector is then ``(1 - w) g.g' + w h.h'``.
The index stays as it is: only the query changes, and scores stay in [-1, 1].
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np


class ColourWeightError(ValueError):
    """A colour weight that is not a number in [0, 1], or asked of a model without colour."""


@dataclass(frozen=True)
class EmbeddingParts:
    """Where the garment and colour parts lie in a model's output, and its default weight."""

    garment: tuple[int, int]
    colour: tuple[int, int] | None = None
    default_colour: float = 0.0

    @property
    def has_colour(self) -> bool:
        return self.colour is not None

    @classmethod
    def whole(cls, dim: int) -> "EmbeddingParts":
        """A model without a colour part: the whole vector is one part."""
        return cls(garment=(0, dim))

    @classmethod
    def from_metadata(cls, parts_json: str | None, weight: str | None, dim: int,
                      source: str) -> "EmbeddingParts":
        """``fai.embedding_parts`` / ``fai.colour_weight`` -> parts, checked against ``dim``."""
        if not parts_json:
            return cls.whole(dim)
        try:
            data = json.loads(parts_json)
            garment = tuple(int(x) for x in data["garment"])
            colour = tuple(int(x) for x in data["colour"]) if "colour" in data else None
            c0 = float(weight) if colour is not None else 0.0
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            raise ValueError(f"{source}: bad model metadata: fai.embedding_parts is unusable "
                             f"({type(exc).__name__})") from None
        spans = [garment] + ([colour] if colour else [])
        ends = [0] + [b for _, b in spans]
        if any(len(s) != 2 for s in spans) or [a for a, _ in spans] != ends[:-1] \
                or ends[-1] != dim or any(b <= a for a, b in spans):
            raise ValueError(f"{source}: bad model metadata: embedding parts {parts_json[:80]} "
                             f"do not tile the {dim} dimensions")
        if colour is not None and not (math.isfinite(c0) and 0.0 < c0 < 1.0):
            raise ValueError(f"{source}: bad model metadata: fai.colour_weight {weight!r} is "
                             f"not in (0, 1)")
        return cls(garment=garment, colour=colour, default_colour=c0)

    def check_weight(self, colour: float | None) -> float | None:
        """``colour`` as a float in [0, 1], None for the model's default; one-line errors."""
        if colour is None:
            return None
        if isinstance(colour, bool) or not isinstance(colour, (int, float, np.floating)):
            raise ColourWeightError(f"colour weight must be a number from 0 to 1, got "
                                    f"{str(colour)[:20]!r}")
        value = float(colour)
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ColourWeightError(f"colour weight must be from 0 to 1, got {value:g}")
        if not self.has_colour:
            raise ColourWeightError("this catalogue's model has no colour part; search "
                                    "without a colour weight")
        return value

    def reweigh(self, queries: np.ndarray, colour: float | None) -> np.ndarray:
        """(n, dim) stored-form query vectors -> the same with colour weight ``colour``
        (None or the default: unchanged). See the module's docstring for the algebra."""
        colour = self.check_weight(colour)
        if colour is None or colour == self.default_colour:
            return queries
        out = np.array(queries, dtype=np.float32, copy=True)
        c0 = self.default_colour
        g0, g1 = self.garment
        h0, h1 = self.colour  # type: ignore[misc]
        out[..., g0:g1] *= (1.0 - colour) / (1.0 - c0)
        out[..., h0:h1] *= colour / c0
        return out

    def stored_as(self, vectors: np.ndarray, colour: float) -> np.ndarray:
        """Stored vectors -> the vectors a model with default weight ``colour`` would store:
        ``[sqrt(1 - w) g, sqrt(w) h]``. Dot products between them are the reweighed scores on
        both sides, which is what evaluation needs (a catalogue only reweighs queries)."""
        colour = self.check_weight(colour)
        out = np.array(vectors, dtype=np.float32, copy=True)
        if colour is None:
            return out
        c0 = self.default_colour
        g0, g1 = self.garment
        h0, h1 = self.colour  # type: ignore[misc]
        out[..., g0:g1] *= math.sqrt(1.0 - colour) / math.sqrt(1.0 - c0)
        out[..., h0:h1] *= math.sqrt(colour) / math.sqrt(c0)
        return out

    def to_dict(self) -> dict:
        out = {"garment": list(self.garment), "default_colour": self.default_colour}
        if self.colour is not None:
            out["colour"] = list(self.colour)
        return out
