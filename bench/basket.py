"""python -m bench.basket CATALOG: does a basket's top 10 cover every item in it?

Baskets of 2 and 3 held-out (``split == val``) items of different article types; an item is
*represented* when at least one of the top-k results shares its article type. Compares the old
mean-embedding ranking (``mode="centroid"``) with the per-item round-robin (``mode="cover"``).
Also reports *on-topic*: the share of results whose type is one of the basket's types.

    fai index ../shared/data/myntra/images --metadata ../shared/data/myntra/styles.csv \\
        --out /tmp/myntra.catalog
    python -m bench.basket /tmp/myntra.catalog
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np

from fai_infer import Catalog


def sample_baskets(cat: Catalog, size: int, n: int, column: str, min_type: int,
                   seed: int) -> list[list[str]]:
    counts = Counter(r.get(column, "") for r in cat.rows)
    pool = [i for i, r in zip(cat.ids, cat.rows) if r.get("split") == "val"
            and r.get(column) and counts[r[column]] >= min_type]
    if not pool:
        raise SystemExit(f"no val items with a {column!r} shared by {min_type}+ items")
    rng = np.random.default_rng(seed)
    kind = {i: cat.get(i).metadata[column] for i in pool}
    baskets: list[list[str]] = []
    while len(baskets) < n:
        basket: list[str] = []
        for j in rng.permutation(len(pool)):
            if kind[pool[j]] not in {kind[b] for b in basket}:
                basket.append(pool[j])
            if len(basket) == size:
                break
        baskets.append(basket)
    return baskets


def measure(cat: Catalog, baskets: list[list[str]], k: int, column: str, **kw) -> dict:
    represented, full, on_topic = [], [], []
    for basket in baskets:
        hits = cat.similar_to_basket(basket, k=k, **kw)
        types = [cat.get(i).metadata[column] for i in basket]
        got = {h.metadata.get(column) for h in hits}
        share = sum(t in got for t in types) / len(types)
        represented.append(share)
        full.append(share == 1.0)
        on_topic.append(np.mean([h.metadata.get(column) in types for h in hits]))
    return {"represented": round(float(np.mean(represented)), 3),
            "all_represented": round(float(np.mean(full)), 3),
            "on_topic": round(float(np.mean(on_topic)), 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.basket", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("catalog", help="a catalogue made with 'fai index' (with a split column)")
    p.add_argument("--baskets", type=int, default=500, help="baskets per size")
    p.add_argument("--sizes", default="2,3")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--column", default="articleType")
    p.add_argument("--min-type", type=int, default=20,
                   help="only types with at least this many catalogue items")
    p.add_argument("--diversity", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON")
    a = p.parse_args(argv)
    cat = Catalog.open(a.catalog)
    results = []
    for size in [int(s) for s in a.sizes.split(",")]:
        baskets = sample_baskets(cat, size, a.baskets, a.column, a.min_type, a.seed + size)
        results.append({"basket_size": size, "baskets": len(baskets), "k": a.k,
                        "centroid": measure(cat, baskets, a.k, a.column, mode="centroid"),
                        "cover": measure(cat, baskets, a.k, a.column, mode="cover",
                                         diversity=a.diversity)})
    if a.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{len(cat)} items; baskets of val items with different {a.column}; top {a.k}")
    print("| basket | mode | items represented | baskets fully covered | results on-topic |")
    print("|---|---|---|---|---|")
    for r in results:
        for mode in ("centroid", "cover"):
            m = r[mode]
            print(f"| {r['basket_size']} items ({r['baskets']}) | {mode} | {m['represented']:.3f}"
                  f" | {m['all_represented']:.3f} | {m['on_topic']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
