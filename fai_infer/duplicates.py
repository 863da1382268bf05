"""Near-identical photos in a catalogue: the same photo re-encoded, resized, cropped a little,
or one product uploaded under two ids.

Why the embedding and not a perceptual hash: the index is already there, and an embedding
survives a crop or a new backdrop that moves every bit of a hash. Items whose score reaches the
threshold are linked; linked items form a group (a union-find over the links). Figures on Myntra
val with 200 altered copies, beside perceptual hashing: docs/merchandising.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fai_infer.neighbours import Neighbours

if TYPE_CHECKING:
    from fai_infer.api import BaseCatalog

THRESHOLD = 0.95  # chosen on Myntra val's altered copies (docs/merchandising.md)
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
    """Groups of items linked by scores at or above ``threshold``, largest and closest first."""
    parent = list(range(len(nb.ids)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    links: dict[tuple[int, int], float] = {}
    for i in range(len(nb.ids)):
        for j, score in zip(nb.index[i], nb.scores[i]):
            if j < 0 or score < threshold:
                break  # neighbours are best first
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
