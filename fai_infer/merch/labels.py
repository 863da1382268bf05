"""Labels from photos: ``tag`` fills a missing label with what an item's nearest labelled
neighbours agree on; ``audit`` lists items whose label their neighbours contradict.

Why neighbours and not a classifier: the catalogue already holds the embeddings and the index,
and a shop's labels are its own (its types, its colour names), so the only model that knows
them is the shop's own labelled items. A vote is weighted by similarity; its **confidence** is
the winning label's share of the weight. Figures on Myntra val: docs/merchandising.md.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from fai_infer.index.filters import Where
from fai_infer.merch.neighbours import Neighbours

if TYPE_CHECKING:
    from fai_infer.catalog.contract import BaseCatalog

VOTES = 10  # labelled neighbours that vote
SEARCHED = 30  # neighbours searched per item, so VOTES labelled ones are usually among them
# Suggestions at or above this confidence are applied by --apply: on Myntra val 90% of them
# were right for articleType (docs/merchandising.md).
TAG_CONFIDENCE = 0.61
MISSING = frozenset({"", "nan", "na", "n/a", "none", "null", "-", "?", "unknown"})
# An item is flagged when its label is at least this far from what its neighbours say, as a
# share of the typical distance between two of the catalogue's labels: a near-synonym
# ("Beanie" for "Hat/beanie") is far below it, a label from another part of the shop above.
FLAG_DISTANCE = 0.5


def is_missing(value: str | None) -> bool:
    """An empty or placeholder label ('', 'NaN', 'n/a', 'unknown', ...)."""
    return value is None or value.strip().casefold() in MISSING


@dataclass
class Suggestion:
    """A label for ``column`` of item ``id`` and how sure the neighbours are (0..1)."""

    id: str
    column: str
    value: str
    confidence: float
    neighbours: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Finding:
    """An item whose ``label`` its neighbours dispute: they say ``suggested``. ``sureness``:
    the suggested label's share of the vote minus the item's own (0..1). ``distance``: how far
    the stated label is from what the neighbours say, each voted label weighed by its share,
    in typical label-to-label distances of this catalogue (1 = as far apart as two of its
    labels usually are; a near-synonym is near 0); findings come farthest first."""

    id: str
    column: str
    label: str
    suggested: str
    sureness: float
    neighbours: list[str]
    distance: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def vote(nb: Neighbours, labels: Sequence[str | None], position: int, votes: int = VOTES
         ) -> tuple[dict[str, float], list[int]]:
    """Similarity-weighted shares of each label among item ``position``'s first ``votes``
    labelled neighbours (``labels[j]`` None: unlabelled, no vote), and who voted."""
    weights: dict[str, float] = defaultdict(float)
    voters: list[int] = []
    for j, score in zip(nb.index[position], nb.scores[position]):
        if j < 0 or labels[j] is None:
            continue
        weights[labels[j]] += max(float(score), 1e-6)
        voters.append(int(j))
        if len(voters) == votes:
            break
    total = sum(weights.values())
    return ({lab: w / total for lab, w in weights.items()} if total else {}), voters


def predict(nb: Neighbours, labels: Sequence[str | None], positions: Sequence[int],
            column: str, votes: int = VOTES) -> list[Suggestion]:
    """The neighbours' label for each of ``positions`` (items with no labelled neighbour get
    none)."""
    out = []
    for p in positions:
        shares, voters = vote(nb, labels, p, votes)
        if shares:
            value = max(shares, key=lambda lab: (shares[lab], lab))
            out.append(Suggestion(nb.ids[p], column, value, round(shares[value], 4),
                                  [nb.ids[j] for j in voters]))
    return out


class LabelSpace:
    """How far apart the catalogue's own labels are, as its photos show them: 1 - cosine
    between the labels' mean embeddings, divided by the median over all pairs of labels. So
    labels a shop uses for one look ("Beanie", "Hat/beanie") come out near 0 and labels for
    different garments near or above 1, in this shop's terms and with no word list. The item
    being judged is left out of its own label's mean: a rare label that only a mislabelled
    item carries would otherwise look just like that item."""

    def __init__(self, vectors: np.ndarray, labels: Sequence[str | None]):
        self.names = sorted({lab for lab in labels if lab is not None})
        self.at = {lab: i for i, lab in enumerate(self.names)}
        self.sums = np.zeros((len(self.names), vectors.shape[1]), np.float64)
        for lab, v in zip(labels, vectors):
            if lab is not None:
                self.sums[self.at[lab]] += v
        self.centres = self._unit(self.sums)
        far = 1.0 - self.centres @ self.centres.T
        pairs = far[~np.eye(len(self.names), dtype=bool)]
        self.typical = max(float(np.median(pairs)), 1e-6) if len(pairs) else 1.0

    @staticmethod
    def _unit(x: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(x, axis=-1, keepdims=True)
        return np.where(norms > 1e-9, x / np.maximum(norms, 1e-12), 0.0)

    def distances(self, own: str, others: Sequence[str], vector: np.ndarray | None = None
                  ) -> list[float]:
        """Distance from label ``own`` (its mean less ``vector``, the judged item's own) to
        each of ``others``; a label no other item carries is typically far (1)."""
        mine = self.sums[self.at[own]] - (vector if vector is not None else 0.0)
        if np.linalg.norm(mine) <= 1e-6:
            return [1.0 for _ in others]
        centre = self._unit(mine)
        return [(1.0 - float(centre @ self.centres[self.at[o]])) / self.typical for o in others]


def label_distances(vectors: np.ndarray, labels: Sequence[str | None]) -> LabelSpace:
    """The catalogue's ``LabelSpace`` for ``labels`` (one per row of ``vectors``)."""
    return LabelSpace(np.asarray(vectors, np.float64), labels)


def disputes(nb: Neighbours, labels: Sequence[str | None], positions: Sequence[int],
             column: str, votes: int = VOTES,
             distances: LabelSpace | None = None,
             flag_distance: float = FLAG_DISTANCE) -> list[Finding]:
    """Labelled items among ``positions`` whose neighbours vote for another label. With the
    catalogue's label ``distances`` (``label_distances``): only those whose label is at least
    ``flag_distance`` from what the neighbours say, farthest first, so a blazer labelled
    "Eyeglasses" leads and a beanie labelled "Hat/beanie" is not flagged at all; without:
    every dispute, surest first (the vote alone)."""
    out = []
    for p in positions:
        own = labels[p]
        if own is None:
            continue
        shares, voters = vote(nb, labels, p, votes)
        if not shares:
            continue
        best = max(shares, key=lambda lab: (shares[lab], lab))
        if best == own:
            continue
        far = 0.0
        if distances is not None:
            others = [lab for lab in shares if lab != own]
            vector = nb.vectors[p] if nb.vectors is not None else None
            far = sum(shares[lab] * d for lab, d in
                      zip(others, distances.distances(own, others, vector)))
            if far < flag_distance:
                continue
        out.append(Finding(nb.ids[p], column, own, best,
                           round(shares[best] - shares.get(own, 0.0), 4),
                           [nb.ids[j] for j in voters], round(far, 4)))
    out.sort(key=lambda f: (-f.distance, -f.sureness, f.id))
    return out


def column_labels(nb: Neighbours, column: str) -> list[str | None]:
    """Each item's label in ``column``, None where missing."""
    return [None if is_missing(r.get(column)) else r[column].strip() for r in nb.rows]


def _checked_columns(cat: "BaseCatalog", columns: Sequence[str]) -> list[str]:
    known = cat._known_columns()
    if not columns:
        raise ValueError("name at least one label column")
    for column in columns:
        if column not in known:
            raise ValueError(f"no column {column!r} in this catalogue (it has "
                             f"{', '.join(known[:12]) or 'no metadata'})")
    return list(columns)


def _targets(cat: "BaseCatalog", nb: Neighbours, where: Where | None) -> list[int]:
    if not where:
        return list(range(len(nb.ids)))
    allowed = set(cat.matching(where, limit=None))
    return [p for p, item in enumerate(nb.ids) if item in allowed]


def tag(cat: "BaseCatalog", columns: Sequence[str], where: Where | None = None,
        votes: int = VOTES, progress: bool = False, neighbours: Neighbours | None = None
        ) -> list[Suggestion]:
    """For items (passing ``where``) with a missing label in any of ``columns``: the label
    their nearest labelled neighbours agree on, with its confidence; most confident first."""
    columns = _checked_columns(cat, columns)
    nb = neighbours or Neighbours.of_catalogue(cat, SEARCHED, progress)
    targets = _targets(cat, nb, where)
    out: list[Suggestion] = []
    for column in columns:
        labels = column_labels(nb, column)
        out += predict(nb, labels, [p for p in targets if labels[p] is None], column, votes)
    out.sort(key=lambda s: (-s.confidence, s.column, s.id))
    return out


def apply_tags(cat: "BaseCatalog", suggestions: Sequence[Suggestion],
               min_confidence: float = TAG_CONFIDENCE) -> list[Suggestion]:
    """Write the suggestions at or above ``min_confidence`` (one ``update_metadata`` call);
    returns those written."""
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min confidence must be from 0 to 1, got {min_confidence:g}")
    chosen = [s for s in suggestions if s.confidence >= min_confidence]
    by_item: dict[str, dict[str, str]] = defaultdict(dict)
    for s in chosen:
        by_item[s.id][s.column] = s.value
    if by_item:
        cat.update_metadata(list(by_item), list(by_item.values()))
    return chosen


def audit(cat: "BaseCatalog", column: str, where: Where | None = None, votes: int = VOTES,
          progress: bool = False, neighbours: Neighbours | None = None) -> list[Finding]:
    """Items (passing ``where``) whose ``column`` label is far from what their photo's
    neighbours say (``disputes``), farthest first."""
    (column,) = _checked_columns(cat, [column])
    nb = neighbours or Neighbours.of_catalogue(cat, SEARCHED, progress)
    labels = column_labels(nb, column)
    distances = label_distances(nb.vectors, labels) if nb.vectors is not None else None
    return disputes(nb, labels, _targets(cat, nb, where), column, votes, distances)


def majority(labels: Sequence[str | None]) -> str | None:
    """The commonest label (the baseline a vote must beat)."""
    counts: dict[str, int] = defaultdict(int)
    for lab in labels:
        if lab is not None:
            counts[lab] += 1
    return max(counts, key=lambda lab: (counts[lab], lab)) if counts else None


__all__ = ["FLAG_DISTANCE", "Finding", "LabelSpace", "Suggestion", "TAG_CONFIDENCE", "apply_tags", "audit",
           "column_labels", "disputes", "is_missing", "label_distances", "majority", "predict",
           "tag", "vote"]
