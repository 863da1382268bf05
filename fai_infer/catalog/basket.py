"""The basket merge shared by every catalogue back end (local and Milvus).

Each basket item brings its own neighbour list; the lists take turns, and within a turn the
pick is maximal-marginal-relevance, so a shirt + shoes + watch basket brings shirts, shoes and
watches, and near-duplicates of one another collapse.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Sequence

import numpy as np

from fai_infer.index.hits import Hit
from fai_infer.image.preprocess import describe


DESIGN_THRESHOLD = 0.9  # a hit this close to a basket item counts as its design (no column)


def design_view(vectors: np.ndarray, parts: Any) -> np.ndarray:
    """Unit vectors as a design sees them: the garment part alone for a model with a colour
    part (a colourway differs only in colour), the whole vector otherwise."""
    v = parts.stored_as(vectors, 0.0) if parts.has_colour else np.asarray(vectors, np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def same_design(hit: Hit, vector: np.ndarray, designs: set[str], design_column: str | None,
                unknown: np.ndarray, threshold: float = DESIGN_THRESHOLD) -> bool:
    """Whether ``hit`` is a basket item's design in another colourway: it shares a basket
    item's value in the shop's design column (e.g. product_code), or, for basket items
    without one (no column named, a photo), its ``design_view`` is within ``threshold`` of
    theirs (``unknown``; ``vector`` is the hit's own design view)."""
    if design_column and hit.metadata.get(design_column, "") in designs:
        return True
    return bool(len(unknown)) and float((unknown @ vector).max()) >= threshold


def round_robin(lists: list[list[Hit]], vectors: dict[str, np.ndarray], names: list[str],
                k: int, diversity: float, dim: int, kind_column: str | None = None,
                basket_kinds: Sequence[str] = ()) -> list[Hit]:
    """Up to k hits, one per basket item in turn: ``(1 - diversity) * similarity to that item -
    diversity * redundancy`` (``diversity=0``: nearest first), the redundancy being the
    similarity to the closest hit already picked plus, with a ``kind_column``, how many
    picks and basket items already are of the hit's kind, so two hoodies bring the nearest
    other kinds rather than more hoodies. Hits whose vector is unknown (removed meanwhile)
    are skipped; each result's ``source`` names the basket item it was picked for."""
    chosen: list[Hit] = []
    taken: set[str] = set()
    picked = np.zeros((0, dim), np.float32)
    seen: Counter[str] = Counter(k_ for k_ in basket_kinds if k_)

    def kinds_of(hits: list[Hit]) -> np.ndarray:
        return np.array([seen[h.metadata.get(kind_column, "")] if kind_column
                         and h.metadata.get(kind_column) else 0.0 for h in hits], np.float32)

    while len(chosen) < k:
        progressed = False
        for i, hits in enumerate(lists):
            if len(chosen) >= k:
                break
            left = [h for h in hits if h.id not in taken and h.id in vectors]
            if not left:
                continue
            rel = np.array([h.score for h in left], np.float32)
            if diversity > 0 and (len(picked) or seen):
                red = kinds_of(left)
                if len(picked):
                    red += (np.stack([vectors[h.id] for h in left]) @ picked.T).max(axis=1)
                best = int(np.argmax((1 - diversity) * rel - diversity * red))
            else:
                best = 0  # nearest first (lists are sorted by similarity)
            h = left[best]
            chosen.append(Hit(h.id, h.score, h.path, h.metadata, source=names[i]))
            taken.add(h.id)
            if kind_column and h.metadata.get(kind_column):
                seen[h.metadata[kind_column]] += 1
            picked = np.vstack([picked, vectors[h.id][None]])
            progressed = True
        if not progressed:
            break
    return chosen


def prepare_basket(items: Sequence[Any], mode: str, diversity: float,
                   vector_of: Callable[[Any], tuple[np.ndarray, str | None]]
                   ) -> tuple[np.ndarray, list[str], set[str], list[np.ndarray]]:
    """Checked arguments -> (basket vectors, a name per item, catalogue ids to leave out,
    vectors of basket photos that are not catalogue items). ``vector_of(item)`` -> (vector,
    its catalogue id or None)."""
    if len(items) == 0:
        raise ValueError("the basket is empty")
    if mode not in ("cover", "centroid"):
        raise ValueError(f"mode must be 'cover' or 'centroid', not {mode!r}")
    if not 0.0 <= float(diversity) <= 1.0:
        raise ValueError(f"diversity must be between 0 and 1, not {diversity}")
    vectors, own = zip(*(vector_of(it) for it in items))
    names = [o if o else describe(it) for it, o in zip(items, own)]
    photos = [v for v, o in zip(vectors, own) if not o]
    return np.stack(vectors), names, {o for o in own if o}, photos
