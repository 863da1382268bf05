"""python -m bench.basket_widen CATALOG: does "goes with your basket" widen, or bring more of
the same?

Random 2-item baskets (two designs); per basket the top k suggestions. Two figures: the share
of suggestions that are another colourway of a basket design (same ``--design-column`` value as
a basket item), and the number of distinct kinds (``--kind-column``) in the top k; beside them
the mean similarity of a suggestion to its basket item (what widening costs). Rows: the
earlier behaviour (colourways allowed, no kind spread), widening by the design column, by
embedding alone (no design column named), and the diversity knob.

    fai index ../shared/data/hm-dev/images --metadata ../shared/data/hm-dev/articles.csv \\
        --id-column article_id --out /tmp/hm.catalog
    python -m bench.basket_widen /tmp/hm.catalog
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from fai_infer import Catalog


def sample_baskets(cat: Catalog, n: int, design_column: str, seed: int,
                   same_kind: str | None = None) -> list[list[str]]:
    """n baskets of two items of different designs, drawn uniformly; with ``same_kind`` (a
    column) both of one kind, as two hoodies are."""
    ids = [i for ids, _, _, _ in cat.iter_batches() for i in ids]
    rows = {i: cat.get(i).metadata for i in ids}
    rng = np.random.default_rng(seed)
    baskets: list[list[str]] = []
    while len(baskets) < n:
        a, b = (ids[j] for j in rng.choice(len(ids), 2, replace=False))
        if same_kind and rows[a].get(same_kind) != rows[b].get(same_kind):
            continue
        if rows[a].get(design_column) != rows[b].get(design_column):
            baskets.append([a, b])
    return baskets


def measure(cat: Catalog, baskets: list[list[str]], k: int, design: str, kind: str,
            **kw) -> dict:
    colourways, kinds, scores = [], [], []
    for basket in baskets:
        designs = {cat.get(i).metadata.get(design) for i in basket}
        hits = cat.similar_to_basket(basket, k=k, **kw)
        colourways += [h.metadata.get(design) in designs for h in hits]
        kinds.append(len({h.metadata.get(kind) for h in hits}))
        scores += [h.score for h in hits]
    return {"colourway_share": round(float(np.mean(colourways)), 3),
            "distinct_kinds": round(float(np.mean(kinds)), 2),
            "mean_similarity": round(float(np.mean(scores)), 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.basket_widen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("catalog", help="a catalogue made with 'fai index'")
    p.add_argument("--baskets", type=int, default=200)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--design-column", default="product_code")
    p.add_argument("--kind-column", default="product_type_name")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON")
    a = p.parse_args(argv)
    cat = Catalog.open(a.catalog)
    baskets = sample_baskets(cat, a.baskets, a.design_column, a.seed)
    design, kind = a.design_column, a.kind_column
    runs = [("before: colourways allowed, no kind spread", dict(same_design=True)),
            ("design by embedding only (no column named)", dict()),
            ("design column", dict(design_column=design)),
            ("kind spread, design by embedding (what the page does)",
             dict(kind_column=kind)),
            ("design column + kind spread (default diversity 0.3)",
             dict(design_column=design, kind_column=kind)),
            ("design column + kind spread, diversity 0.6",
             dict(design_column=design, kind_column=kind, diversity=0.6)),
            ("design column + kind spread, diversity 0", dict(design_column=design,
                                                               kind_column=kind, diversity=0.0))]
    same = sample_baskets(cat, a.baskets, design, a.seed + 1, same_kind=kind)
    results = [{"baskets": label, "run": name, **measure(cat, b, a.k, design, kind, **kw)}
               for label, b in (("any two designs", baskets), ("two of one kind", same))
               for name, kw in runs]
    if a.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{len(cat)} items; {a.baskets} random 2-item baskets of two designs (any kinds, "
          f"then both of one kind); top {a.k}; design = {design}, kind = {kind}")
    print("| baskets | run | another colourway of a basket design | distinct kinds in top "
          f"{a.k} | mean similarity to its basket item |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['baskets']} | {r['run']} | {r['colourway_share']:.3f} | "
              f"{r['distinct_kinds']:.2f} | {r['mean_similarity']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
