"""A second shop's figures: does a design's other colourway come back, and things of its type?

A shop's CSV names a *group* column (H&M's ``product_code``: one design in several colours) and a
*type* column (``product_type_name``). Every photo whose group has at least one other photo in
the gallery is a query, itself left out:

- ``same design Hit@10``: another photo of its group is among the 10 nearest;
- ``same design P@1``: the nearest is of its group;
- ``P@10 type`` / ``P@1 type``: how many of the 10 nearest (the nearest) share its type.

Per-query values are kept so two models on the same queries compare pairwise
(:func:`train.metrics.paired_margin`). :func:`held_apart_groups` splits a shop by group, the
way ``train.adapt`` keeps a shop's held-out designs apart.
"""

from __future__ import annotations

import numpy as np

from train.data import stable_fraction
from train.metrics import l2_normalise, label_codes, top_k_neighbours

FIGURES = ("same design Hit@10", "same design P@1", "P@10 type", "P@1 type")


def group_queries(groups: np.ndarray) -> np.ndarray:
    """Rows whose group has at least two photos: the only ones a design can be found for."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return np.flatnonzero(counts[inverse] >= 2)


def shop_per_query(emb: np.ndarray, groups: list[str], types: list[str]
                   ) -> dict[str, np.ndarray]:
    """Each query's four figures (see the module docstring), gallery = every row of ``emb``."""
    g, t = label_codes(groups), label_codes(types)
    queries = group_queries(g)
    if len(queries) == 0:
        raise ValueError("no group has two photos: nothing to find (is the group column right?)")
    nn = top_k_neighbours(l2_normalise(emb), queries, 10)
    same_group = g[nn] == g[queries][:, None]
    same_type = t[nn] == t[queries][:, None]
    return {"same design Hit@10": same_group.any(axis=1).astype(np.float64),
            "same design P@1": same_group[:, 0].astype(np.float64),
            "P@10 type": same_type.mean(axis=1),
            "P@1 type": same_type[:, 0].astype(np.float64)}


def held_apart_groups(groups: list[str], fraction: float, salt: str = "shop-holdout"
                      ) -> np.ndarray:
    """Boolean mask of rows whose group is held apart (a stable hash of the group, so every
    colour of a design falls on the same side and reruns agree)."""
    return np.array([stable_fraction(str(x), salt) < fraction for x in groups])


def design_split(groups: list[str], holdout: float = 0.4, choice: float = 0.15
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(held apart, choose) row masks of a second shop split by design: ``holdout`` of the
    groups held apart (reported only: :func:`held_apart_groups`), ``choice`` of the others
    for choices (``train.design_head``'s weights, ``train.compose``'s colour weight); the
    rest trains. One function, so every step reads the same split."""
    apart = held_apart_groups(groups, holdout)
    chosen = ~apart & np.array([stable_fraction(str(g), "design-choice") < choice
                                for g in groups])
    return apart, chosen
