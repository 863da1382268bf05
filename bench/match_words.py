"""python -m bench.match_words: do the match words tell a shopper the truth?

A hit's confidence (``fai_infer/catalog/confidence.py``) is the share of the catalogue's items whose own
nearest neighbour scores at most the hit's score; the page turns it into words. This measures the
words on a labelled catalogue (Myntra by default):

- *kind present*: val photos searched against the rest of the catalogue (the query left out):
  which words their best hit gets, and how often that hit is of the query's kind;
- *kind absent*: for a spread of ``--absent-column`` values (Myntra's subCategory: Headwear,
  Watches, ...), the catalogue without them, searched with their photos (a hat in a shop
  without headwear): which words the best hit gets. "no close match" is right.

Each catalogue's scale is fitted exactly as the runtime fits it (same sample, same rule), over
exact search, at the model's default colour weight and at colour 0.

    python -m bench.match_words --model models/fai-default.onnx
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from fai_infer.catalog.confidence import LABELS, NEIGHBOUR_RANK, NO_MATCH, fit_scale, label, sample_rows
from fai_infer.model.encoder import Encoder
from fai_infer.catalog.sources import list_images

WORDS = [w for _, w in LABELS] + [NO_MATCH]


def load_labels(data: Path, column: str, group_column: str
                ) -> tuple[list[Path], list[str], list[str], list[str]]:
    """Photos with a value in ``column``: (paths, kinds, their groups, splits)."""
    with open(data / "styles.csv", newline="", encoding="utf-8") as fh:
        rows = {r["id"]: r for r in csv.DictReader(fh)}
    paths, kinds, groups, splits = [], [], [], []
    for p in list_images(data / "images"):
        r = rows.get(p.stem)
        if r and r.get(column):
            paths.append(p)
            kinds.append(r[column])
            groups.append(r.get(group_column) or r[column])
            splits.append(r.get("split", "train"))
    return paths, kinds, groups, splits


def embed_all(encoder: Encoder, paths: list[Path]) -> np.ndarray:
    from tqdm import tqdm

    out = np.zeros((len(paths), encoder.dim), np.float32)
    ok = np.zeros(len(paths), bool)
    bar = tqdm(total=len(paths), desc="embed", leave=False)
    for positions, emb, skipped in encoder.embed_stream(paths, 64):
        out[positions] = emb
        ok[positions] = True
        bar.update(len(positions) + len(skipped))
    bar.close()
    return out, ok


def scale_of(gallery: np.ndarray, rank: int = NEIGHBOUR_RANK):
    """The runtime's rule over exact search: the ``rank``-th nearest *other* item of a
    deterministic sample."""
    rows = sample_rows(len(gallery))

    def nearest_other(q: np.ndarray, r: np.ndarray) -> np.ndarray:
        sims = q @ gallery.T
        sims[np.arange(len(r)), r] = -np.inf
        return -np.partition(-sims, rank - 1, axis=1)[:, rank - 1]

    return fit_scale(gallery[rows], rows, nearest_other)


def words_table(counts: dict[str, Counter], right: dict[str, Counter]) -> str:
    lines = ["| queries | " + " | ".join(WORDS) + " |", "|" + "---|" * (len(WORDS) + 1)]
    for name, c in counts.items():
        n = sum(c.values())
        cells = []
        for w in WORDS:
            share = c[w] / n if n else 0.0
            cell = f"{share:.2f}"
            if name in right and c[w]:
                cell += f" (P@1 {right[name][w] / c[w]:.2f})"
            cells.append(cell)
        lines.append(f"| {name} ({n}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.match_words", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="ONNX model (default: the shipped one)")
    p.add_argument("--data", default="../shared/data/myntra", help="folder with images/ + "
                   "styles.csv (id, split and --column)")
    p.add_argument("--column", default="articleType", help="the kind of item")
    p.add_argument("--absent-column", default="subCategory",
                   help="what is taken out of the catalogue in turn: whole values of this "
                   "column (a shop without headwear), so no near-synonym kind stays behind")
    p.add_argument("--absent-kinds", type=int, default=12,
                   help="how many of its values to take out in turn")
    p.add_argument("--per-kind", type=int, default=40, help="queries per absent kind")
    p.add_argument("--rank", type=int, default=NEIGHBOUR_RANK,
                   help="the scale's neighbour rank (the runtime's is NEIGHBOUR_RANK)")
    p.add_argument("--json", default=None, help="also write the figures here")
    a = p.parse_args(argv)
    data = Path(a.data)
    if not (data / "styles.csv").is_file():
        raise SystemExit(f"--data {data}: no styles.csv there")
    encoder = Encoder(a.model)
    paths, kinds, groups, splits = load_labels(data, a.column, a.absent_column)
    vectors, ok = embed_all(encoder, paths)
    keep = np.flatnonzero(ok)
    vectors = vectors[keep]
    kinds = [kinds[i] for i in keep]
    groups_arr = np.array([groups[i] for i in keep])
    splits = [splits[i] for i in keep]
    kinds_arr = np.array(kinds)
    parts = encoder.info.parts
    weights = {"default": None}
    if parts is not None and parts.has_colour:
        weights["colour 0"] = 0.0
    big = [k for k, n in Counter(groups_arr.tolist()).items() if n >= a.per_kind]
    absent = sorted(big)[:: max(1, len(big) // a.absent_kinds)][: a.absent_kinds]
    result: dict = {"model": str(encoder.path), "absent_kinds": absent}
    for wname, w in weights.items():
        gallery = parts.stored_as(vectors, w) if w is not None else vectors
        counts: dict[str, Counter] = defaultdict(Counter)
        right: dict[str, Counter] = defaultdict(Counter)
        scale = scale_of(gallery, a.rank)
        queries = np.flatnonzero(np.array(splits) == "val")
        sims = gallery[queries] @ gallery.T
        sims[np.arange(len(queries)), queries] = -np.inf
        best = sims.argmax(axis=1)
        words = [label(c) for c in scale.confidence(sims[np.arange(len(queries)), best])]
        for q, b, word in zip(queries, best, words):
            counts["kind present"][word] += 1
            right["kind present"][word] += int(kinds_arr[q] == kinds_arr[b])
        for kind in absent:
            inside = np.flatnonzero(groups_arr != kind)
            outside = np.flatnonzero(groups_arr == kind)
            outside = outside[:: max(1, len(outside) // a.per_kind)][: a.per_kind]
            sub_scale = scale_of(gallery[inside], a.rank)
            top = (gallery[outside] @ gallery[inside].T).max(axis=1)
            for c in sub_scale.confidence(top):
                counts["kind absent"][label(c)] += 1
        print(f"\ncolour weight {wname}: scale {json.dumps(scale.to_dict())}")
        print(words_table(counts, right))
        result[wname] = {k: {w_: v[w_] for w_ in WORDS} for k, v in counts.items()}
        result[wname]["present_P@1"] = {w_: (right["kind present"][w_] /
                                             counts["kind present"][w_])
                                        if counts["kind present"][w_] else None for w_ in WORDS}
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
