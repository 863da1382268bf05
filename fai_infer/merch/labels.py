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
    the suggested label's share of the vote minus the item's own (0..1, higher first)."""

    id: str
    column: str
    label: str
    suggested: str
    sureness: float
    neighbours: list[str]

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


def disputes(nb: Neighbours, labels: Sequence[str | None], positions: Sequence[int],
             column: str, votes: int = VOTES) -> list[Finding]:
    """Labelled items among ``positions`` whose neighbours vote for another label, surest
    first."""
    out = []
    for p in positions:
        own = labels[p]
        if own is None:
            continue
        shares, voters = vote(nb, labels, p, votes)
        if not shares:
            continue
        best = max(shares, key=lambda lab: (shares[lab], lab))
        if best != own:
            out.append(Finding(nb.ids[p], column, own, best,
                               round(shares[best] - shares.get(own, 0.0), 4),
                               [nb.ids[j] for j in voters]))
    out.sort(key=lambda f: (-f.sureness, f.id))
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
    """Items (passing ``where``) whose ``column`` label their photo's neighbours dispute,
    surest first."""
    (column,) = _checked_columns(cat, [column])
    nb = neighbours or Neighbours.of_catalogue(cat, SEARCHED, progress)
    return disputes(nb, column_labels(nb, column), _targets(cat, nb, where), column, votes)


def majority(labels: Sequence[str | None]) -> str | None:
    """The commonest label (the baseline a vote must beat)."""
    counts: dict[str, int] = defaultdict(int)
    for lab in labels:
        if lab is not None:
            counts[lab] += 1
    return max(counts, key=lambda lab: (counts[lab], lab)) if counts else None


__all__ = ["Finding", "Suggestion", "TAG_CONFIDENCE", "apply_tags", "audit", "column_labels",
           "disputes", "is_missing", "majority", "predict", "tag", "vote"]
