"""The basket merge shared by every catalogue back end (local and Milvus).

Each basket item brings its own neighbour list; the lists take turns, and within a turn the
pick is maximal-marginal-relevance, so a shirt + shoes + watch basket brings shirts, shoes and
watches, and near-duplicates of one another collapse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fai_infer.catalog import Hit


def round_robin(lists: list[list["Hit"]], vectors: dict[str, np.ndarray], names: list[str],
                k: int, diversity: float, dim: int) -> list["Hit"]:
    """Up to k hits, one per basket item in turn: ``(1 - diversity) * similarity to that item -
    diversity * similarity to the closest hit already picked`` (``diversity=0``: nearest
    first). Hits whose vector is unknown (removed meanwhile) are skipped; each result's
    ``source`` names the basket item it was picked for."""
    from fai_infer.catalog import Hit

    chosen: list[Hit] = []
    taken: set[str] = set()
    picked = np.zeros((0, dim), np.float32)
    while len(chosen) < k:
        progressed = False
        for i, hits in enumerate(lists):
            if len(chosen) >= k:
                break
            left = [h for h in hits if h.id not in taken and h.id in vectors]
            if not left:
                continue
            rel = np.array([h.score for h in left], np.float32)
            if diversity > 0 and len(picked):
                red = (np.stack([vectors[h.id] for h in left]) @ picked.T).max(axis=1)
                best = int(np.argmax((1 - diversity) * rel - diversity * red))
            else:
                best = 0  # nearest first (lists are sorted by similarity)
            h = left[best]
            chosen.append(Hit(h.id, h.score, h.path, h.metadata, source=names[i]))
            taken.add(h.id)
            picked = np.vstack([picked, vectors[h.id][None]])
            progressed = True
        if not progressed:
            break
    return chosen
