"""python -m bench.audit_flips CATALOG: does the audit put the grossest label errors first?

A catalogue's own labels with N of them flipped to another label drawn uniformly (so most
flips are gross: a blazer called "Eyeglasses"); the audit's list is then read as a
merchandiser reads it, from the top. Figures per run, averaged over ``--repeats`` draws: how
many flipped items are in the top 100, their median rank, and the share of the catalogue the
audit flags. Rows: the vote alone (the earlier ranking, surest first, every dispute flagged)
and the label distance (``fai_infer.merch.labels.label_distances``: how far the stated label
is from what the neighbours say, near-synonyms near).

    fai index ../shared/data/hm-dev/images --metadata ../shared/data/hm-dev/articles.csv \\
        --id-column article_id --out /tmp/hm.catalog
    python -m bench.audit_flips /tmp/hm.catalog --column product_type_name
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from fai_infer import Catalog
from fai_infer.merch.labels import SEARCHED, VOTES, column_labels, disputes, label_distances
from fai_infer.merch.neighbours import Neighbours


def flip(labels: list[str | None], n: int, rng: np.random.Generator
         ) -> tuple[list[str | None], set[int]]:
    """n labelled items given another of the catalogue's labels, drawn uniformly."""
    kinds = sorted({lab for lab in labels if lab is not None})
    have = [p for p, lab in enumerate(labels) if lab is not None]
    chosen = {int(p) for p in rng.choice(have, n, replace=False)}
    out = list(labels)
    for p in chosen:
        out[p] = str(rng.choice([k for k in kinds if k != labels[p]]))
    return out, chosen


def measure(nb: Neighbours, labels: list[str | None], flipped: set[int], column: str,
            distances: dict | None) -> dict:
    found = disputes(nb, labels, range(len(nb.ids)), column, VOTES, distances)
    position = {item: p for p, item in enumerate(nb.ids)}
    ranks = [r for r, f in enumerate(found, 1) if position[f.id] in flipped]
    return {"top100": sum(r <= 100 for r in ranks),
            "median_rank": float(np.median(ranks + [len(nb.ids)] * (len(flipped) - len(ranks)))),
            "flagged": len(found) / len(nb.ids)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.audit_flips", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("catalog", help="a catalogue made with 'fai index'")
    p.add_argument("--column", default="product_type_name")
    p.add_argument("--flips", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON")
    a = p.parse_args(argv)
    cat = Catalog.open(a.catalog)
    ids, rows, vectors = [], [], []
    for batch_ids, batch_vectors, _, batch_rows in cat.iter_batches():
        ids += batch_ids
        rows += batch_rows
        vectors.append(batch_vectors)
    nb = Neighbours.from_vectors(ids, np.concatenate(vectors), rows, SEARCHED)
    truth = column_labels(nb, a.column)
    rng = np.random.default_rng(a.seed)
    runs: dict[str, list[dict]] = {"vote alone (before)": [], "label distance (after)": []}
    for _ in range(a.repeats):
        labels, flipped = flip(truth, a.flips, rng)
        runs["vote alone (before)"].append(measure(nb, labels, flipped, a.column, None))
        runs["label distance (after)"].append(
            measure(nb, labels, flipped, a.column, label_distances(nb.vectors, labels)))
    results = [{"ranking": name, "flips": a.flips, "repeats": a.repeats,
                **{key: round(float(np.mean([r[key] for r in rs])), 3) for key in rs[0]}}
               for name, rs in runs.items()]
    if a.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{len(ids)} items; {a.flips} of {a.column} flipped to another label at random, "
          f"{a.repeats} draws (means)")
    print("| ranking | flipped in the top 100 | median rank of a flipped item | items flagged |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['ranking']} | {r['top100']:.1f} of {a.flips} | {r['median_rank']:.0f} | "
              f"{100 * r['flagged']:.1f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
