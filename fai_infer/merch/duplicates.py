"""Near-identical photos in a catalogue: the same photo re-encoded, resized, cropped a little,
or one product uploaded under two ids.

Why the embedding and not a perceptual hash: the index is already there, and an embedding
survives a crop or a re-encode that moves many bits of a hash. But a fashion catalogue is full of
different products shot alike (plain T-shirts on white score 0.95 with each other), so a score
alone links far too much. Two items are linked when

* their score reaches ``CERTAIN`` (the same file, or nearly), or
* it reaches the threshold, they are each other's nearest item, and the pair stands out: one
  of them is closer to the other by ``MARGIN`` than to anything else.

Linked items form a group (a union-find over the links). Figures on Myntra val with 200 altered
copies, beside perceptual hashing: docs/merchandising.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fai_infer.merch.neighbours import Neighbours

if TYPE_CHECKING:
    from fai_infer.catalog.contract import BaseCatalog

THRESHOLD = 0.93  # chosen on Myntra val's altered copies (docs/merchandising.md)
MARGIN = 0.03  # how far a pair must stand out from each item's next nearest
CERTAIN = 0.985  # linked whatever else is near: re-uploads of one photo
SEARCHED = 10  # neighbours per item: a group larger than this still links through its members


@dataclass
class DuplicateGroup:
    """Items that look alike; ``pairs``: the links found, (id, id, score), best first."""

    ids: list[str]
    pairs: list[tuple[str, str, float]]

    def to_dict(self) -> dict:
        return {"ids": self.ids, "pairs": [{"a": a, "b": b, "score": round(s, 4)}
                                           for a, b, s in self.pairs]}


def groups(nb: Neighbours, threshold: float = THRESHOLD) -> list[DuplicateGroup]:
    """Groups of linked items (see the module's docstring), largest and closest first."""
    parent = list(range(len(nb.ids)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def margin(i: int) -> float:
        return float(nb.scores[i, 0] - nb.scores[i, 1]) if nb.scores.shape[1] > 1 else 1.0

    def linked(i: int, slot: int, j: int, score: float) -> bool:
        if score >= max(CERTAIN, threshold):
            return True
        return slot == 0 and nb.index[j, 0] == i and max(margin(i), margin(j)) >= MARGIN

    links: dict[tuple[int, int], float] = {}
    for i in range(len(nb.ids)):
        for slot, (j, score) in enumerate(zip(nb.index[i], nb.scores[i])):
            if j < 0 or score < threshold:
                break  # neighbours are best first
            if not linked(i, slot, int(j), float(score)):
                continue
            pair = (min(i, int(j)), max(i, int(j)))
            links[pair] = max(links.get(pair, -1.0), float(score))
            parent[root(pair[0])] = root(pair[1])
    members: dict[int, list[int]] = {}
    for i in sorted({i for pair in links for i in pair}):
        members.setdefault(root(i), []).append(i)
    pairs_of: dict[int, list[tuple[str, str, float]]] = {}
    for (a, b), score in links.items():
        pairs_of.setdefault(root(a), []).append((nb.ids[a], nb.ids[b], score))
    out = [DuplicateGroup([nb.ids[i] for i in items],
                          sorted(pairs_of[r], key=lambda p: (-p[2], p[0], p[1])))
           for r, items in members.items()]
    out.sort(key=lambda g: (-len(g.ids), -g.pairs[0][2], g.ids[0]))
    return out


def duplicates(cat: "BaseCatalog", threshold: float = THRESHOLD, progress: bool = False,
               neighbours: Neighbours | None = None) -> list[DuplicateGroup]:
    """Groups of near-identical photos in any catalogue of the contract."""
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a score from -1 to 1, got {threshold:g}")
    return groups(neighbours or Neighbours.of_catalogue(cat, SEARCHED, progress), threshold)
