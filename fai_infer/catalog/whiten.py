"""When and how a local catalogue refits its whitening (``fai_infer/index/whitening.py``).

Why apart: the facade (``local.py``) calls two functions; the policy (refit when the items
changed by a share since the fit) and the rebuild (model vectors back, refit, re-whiten, a
fresh index) live here.
"""

from __future__ import annotations

import numpy as np

from fai_infer.index.vector_index import VectorIndex
from fai_infer.index.whitening import fit
from fai_infer.model.parts import EmbeddingParts
from fai_infer.store.state import CatalogState

REFIT_CHANGE = 0.25
"""A compaction refits the whitening once the item count moved this share from the fit's."""


def whitening_due(state: CatalogState) -> bool:
    """Whether a compaction should refit: the catalogue is whitened (``Catalog.build`` or
    ``rewhiten`` chose that) and its count moved REFIT_CHANGE from the fit's. One that never
    was stays as the model made its vectors: its scores keep their meaning for its callers."""
    w = state.whitening
    return w is not None and abs(len(state) - w.fitted_on) > REFIT_CHANGE * w.fitted_on


def rewhitened(state: CatalogState, parts: EmbeddingParts) -> CatalogState:
    """A compacted copy of ``state`` whose vectors are whitened by a fit on its own live items
    (the old whitening undone first); fewer than whitening.MIN_ITEMS items: stored as the model made
    them. ``state`` itself is left as it was (searches on it go on meanwhile)."""
    new = state.compacted()
    vectors = new.index.vectors
    if new.whitening is not None:
        vectors = new.whitening.undo(vectors).astype(np.float32)
    whitening = fit(vectors, parts.garment)
    if whitening is not None:
        vectors = whitening.apply(vectors)
    index = VectorIndex(new.dim, new.index.exact_below, np.ascontiguousarray(vectors),
                        new.index.labels.copy(), new.index.next_label)
    out = CatalogState(new.dim, index=index, table=new.table, ids=new.ids, paths=new.paths)
    out.adopt_settings(new)
    out.whitening = whitening
    out.version = new.version + 1
    return out
