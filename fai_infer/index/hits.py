"""What a search returns (``Hit``), what indexing skipped (``Skipped``) and the one error for an
unknown id: plain values with no dependencies, so every layer can name them."""

from __future__ import annotations

from dataclasses import dataclass, field


class NotInCatalogue(ValueError):
    """An item id that is not (or no longer) in the catalogue."""

    def __init__(self, item_id: str):
        super().__init__(f"not in the catalogue: {item_id}")
        self.item_id = item_id


@dataclass
class Hit:
    """One result. ``source``: for basket results, the basket item it was found for (its id,
    or the photo's name for a basket photo that is not a catalogue item); else "".
    ``confidence`` (0..1) and ``match`` (plain words) put ``score`` on the catalogue's own scale
    (``fai_infer/catalog/confidence.py``); None where the catalogue is too small to have one.
    ``region``: for a photo query, the part of the photo that was embedded (a garment group
    such as "upper" or "whole-body", as ``region=`` takes it back, or "whole photo"); "" for a
    catalogue item's query."""

    id: str
    score: float
    path: str
    metadata: dict[str, str] = field(default_factory=dict)
    source: str = ""
    confidence: float | None = None
    match: str | None = None
    region: str = ""

    def to_dict(self) -> dict:
        out = {"id": self.id, "score": round(float(self.score), 6), "path": self.path,
               "metadata": self.metadata}
        if self.source:
            out["source"] = self.source
        out["confidence"] = self.confidence
        out["match"] = self.match
        if self.region:
            out["region"] = self.region
        return out


@dataclass
class Skipped:
    """A photo that could not be indexed, and why (one line)."""

    path: str
    reason: str

    def to_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason}
