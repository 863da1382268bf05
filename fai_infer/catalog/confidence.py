"""How sure a hit is: a score put on the catalogue's own scale, and said in plain words.

A raw cosine score means different things in different shops and models (0.75 can be a near
twin in one catalogue and a stranger in another). So each catalogue is its own yardstick: a
sample of its items is searched for their ``NEIGHBOUR_RANK``-th nearest *other* item, and a
hit's **confidence** is the share of those scores it reaches (an empirical CDF, interpolated):

- 0.5: the hit is as close to the query as a typical catalogue item's 5th-closest sibling is;
- 0.05: closer than only 5% of items' 5th siblings: a loose match at best.

The 5th rather than the 1st neighbour: shops list the same product twice (two photos, a
re-upload), and twins would set a bar that ordinary good matches never reach.

A query from a kind the shop does not sell (a hat in a shop without hats) scores below almost
every item's nearest neighbour, so its best hit gets a low confidence and the page says "no close
match in this shop" instead of showing a full bar. The words' thresholds were checked on
held-out Myntra photos and the H&M shop (docs/quality.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

SAMPLE = 400  # items searched to fit a catalogue's scale: ~0.1 s with HNSW, once per change
NEIGHBOUR_RANK = 5  # the scale is each sampled item's 5th-nearest other item's score
MIN_ITEMS = 8  # below this a catalogue has no meaningful scale: hits carry no confidence

# (lowest confidence, words), most confident first; below the last: no close match.
LABELS = ((0.5, "very close"), (0.15, "similar"), (0.03, "loosely similar"))
NO_MATCH = "no close match in this shop"
# A catalogue below MIN_ITEMS has no scale to rate on: its hits say so in words rather than
# showing nothing (issue 33), and carry no confidence figure.
TOO_FEW = "too few items in this shop to rate the match"


def label(confidence: float | None) -> str | None:
    """A shopper's words for a confidence (None: the catalogue is too small to say)."""
    if confidence is None:
        return None
    for lowest, words in LABELS:
        if confidence >= lowest:
            return words
    return NO_MATCH


@dataclass(frozen=True)
class MatchScale:
    """Sorted nearest-neighbour scores of a sample of the catalogue's items."""

    neighbour_scores: np.ndarray

    def confidence(self, scores: np.ndarray | list[float]) -> np.ndarray:
        """Scores -> the share of sampled items whose nearest neighbour scores at most that,
        interpolated between sample points so equal scores always get equal confidence."""
        ref = self.neighbour_scores
        ranks = np.arange(1, len(ref) + 1, dtype=np.float64) / len(ref)
        return np.interp(np.asarray(scores, dtype=np.float64), ref, ranks, left=0.0, right=1.0)

    def to_dict(self) -> dict:
        q = np.quantile(self.neighbour_scores, [0.05, 0.25, 0.5, 0.75, 0.95])
        return {"sampled": int(len(self.neighbour_scores)),
                "nearest_neighbour_score_quantiles": {
                    p: round(float(v), 4) for p, v in zip(("5%", "25%", "50%", "75%", "95%"), q)}}


def sample_rows(count: int, sample: int = SAMPLE) -> np.ndarray:
    """Evenly spread row positions: deterministic, so a scale never changes between reruns."""
    if count <= sample:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, sample).round().astype(np.int64))


def fit_scale(vectors: np.ndarray, rows: np.ndarray,
              nearest_other: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> MatchScale | None:
    """``nearest_other(query_vectors, their_rows)`` -> each query's ``NEIGHBOUR_RANK``-th best
    score among the other items. None for a catalogue too small to have a scale."""
    if len(rows) < MIN_ITEMS:
        return None
    scores = np.asarray(nearest_other(vectors, rows), dtype=np.float64)
    scores = np.sort(scores[np.isfinite(scores)])
    if len(scores) < MIN_ITEMS:
        return None
    return MatchScale(scores)


# -- words that know the kind ------------------------------------------------------------------
DIFFERENT_KIND = "a different kind"
COULD_BE = "could be"
KIND_AGREEMENT = 0.7  # share of the top hits of one kind from which a photo's kind counts known
KIND_VOTERS = 10  # top hits whose kinds say what a photo shows
_STRONG = frozenset(words for lowest, words in LABELS if lowest >= 0.15)  # "very close", "similar"


def kind_words(hits: list, kind_column: str | None, query_kind: str | None = None) -> None:
    """Lower the words of hits whose kind is not the query's, in place: a look-alike of
    another kind is not "similar" when the shop holds the right kind. The query's kind is its
    own label (a catalogue item) or what its top hits agree on (a photo: one kind holding at
    least ``KIND_AGREEMENT`` of them). A hit of another kind says ``DIFFERENT_KIND``; when the
    top hits of a photo do not agree, nothing is "very close" or "similar" but ``COULD_BE``.
    Weak words (loosely similar, no close match) stay; confidences (the bar) are unchanged."""
    if not kind_column or not hits:
        return
    kinds = [str(h.metadata.get(kind_column) or "") for h in hits]
    if query_kind is None:
        voters = [k for k in kinds[:KIND_VOTERS] if k]
        top = max(set(voters), key=voters.count) if voters else ""
        if not voters or voters.count(top) < KIND_AGREEMENT * len(voters):
            for h in hits:
                if h.match in _STRONG:
                    h.match = COULD_BE
            return
        query_kind = top
    for h, kind in zip(hits, kinds):
        if kind and kind != query_kind and h.match in _STRONG:
            h.match = DIFFERENT_KIND
