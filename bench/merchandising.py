"""python -m bench.merchandising: fai tag / audit / duplicates measured on Myntra val.

The tools run the very code the CLI runs (``fai_infer.merch.labels``, ``fai_infer.merch.duplicates``) over
a neighbour table; the raw-pixel rows use the same code over raw-pixel neighbours
(``train.metrics.pixel_baseline``: 32x32 padded squares, mean removed).

* **tag**: val's labels hidden a fifth at a time (5 folds; the other folds' labels vote):
  accuracy for every item, beside the majority class and raw-pixel neighbours; then the lowest
  confidence at which 90% of suggestions are right and how many items get a label there.
* **audit**: 5% of val's articleType labels flipped at random (to another type, drawn by the
  types' frequency); share of the flipped items found in the top 100 / top 5% of the list, and
  the share of those lists that are flipped items.
* **duplicates**: 200 val photos copied with one alteration each (JPEG quality 35, half size,
  5% crop, 8% crop + re-encode, brighter, the same file under a new id); recall and precision
  of the item pairs grouped, per threshold, beside a score threshold alone (no nearest/margin
  rule) and a 64-bit perceptual hash (DCT, Hamming distance <= 10, the imagededup default).

    python -m bench.merchandising --data ../shared/data/myntra --cache /tmp/fai-merch

The val catalogue and the copies are built once under --cache and reused. Nothing is written
to the repository.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from fai_infer import Catalog, Encoder
from fai_infer.image.decode import load_rgb
from fai_infer.merch.duplicates import THRESHOLD, groups
from fai_infer.merch.labels import VOTES, column_labels, disputes, majority, predict
from fai_infer.merch.neighbours import Neighbours
from fai_infer.image.preprocess import load_square
from fai_infer.catalog.sources import read_metadata
from train.metrics import pixel_baseline

FOLDS = 5
TAG_COLUMNS = ("articleType", "baseColour")
AUDIT_COLUMN = "articleType"
FLIP_SHARE = 0.05
COPIES = 200
THRESHOLDS = (0.90, 0.93, 0.95, 0.97)
ALTERATIONS = ("jpeg q35", "half size", "crop 5%", "crop 8% + jpeg q60", "brighter 15%",
               "same file, new id")


# -- the data ----------------------------------------------------------------------------------
def val_catalogue(data: Path, cache: Path, encoder: Encoder) -> Catalog:
    """Myntra val (split == val) indexed once with the encoder, cached under ``cache``."""
    where = cache / f"val-{encoder.model_sha256[:12]}.catalog"
    if where.is_dir():
        return Catalog.open(where, encoder)
    meta = read_metadata(data / "styles.csv", "id")
    paths = [data / "images" / f"{i}.jpg" for i, r in meta.items() if r.get("split") == "val"]
    cat = Catalog(encoder)
    cat.add([p for p in paths if p.is_file()], {i: meta[i] for i in meta}, "id", progress=True)
    cat.save(where)
    return cat


def pixel_neighbours(nb: Neighbours, paths: dict[str, str], spec, cache: Path,
                     k: int) -> Neighbours:
    """The same items' raw-pixel neighbours (features cached per item list)."""
    where = cache / f"pixels-{len(nb.ids)}.npy"
    if where.is_file():
        vectors = np.load(where)
    else:
        squares = np.stack([load_square(paths[i], spec) for i in nb.ids])
        vectors = pixel_baseline(squares)
        np.save(where, vectors)
    return Neighbours.from_vectors(nb.ids, vectors, nb.rows, k)


# -- tag ---------------------------------------------------------------------------------------
def tag_rows(nb: Neighbours, column: str) -> dict:
    """Every item's label predicted with its fold hidden; accuracy and the 90%-right point."""
    truth = column_labels(nb, column)
    fold = np.arange(len(nb.ids)) % FOLDS
    right, conf, base = np.zeros(len(truth), bool), np.zeros(len(truth)), np.zeros(len(truth))
    for f in range(FOLDS):
        hidden = [truth[p] if fold[p] != f else None for p in range(len(truth))]
        targets = [p for p in range(len(truth)) if fold[p] == f and truth[p] is not None]
        common = majority(hidden)
        for p in targets:
            base[p] = truth[p] == common
        got = {s.id: s for s in predict(nb, hidden, targets, column, VOTES)}
        for p in targets:
            s = got.get(nb.ids[p])
            right[p] = s is not None and s.value == truth[p]
            conf[p] = s.confidence if s is not None else 0.0
    labelled = np.array([t is not None for t in truth])
    right, conf, base = right[labelled], conf[labelled], base[labelled]
    order = np.argsort(-conf, kind="stable")
    precision = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(precision >= 0.9)
    # The largest prefix (most confident first) that is still 90% right, cut at a confidence
    # boundary so every item at that confidence is in.
    last = int(ok[-1]) if len(ok) else -1
    while last >= 0 and last + 1 < len(order) and conf[order[last + 1]] == conf[order[last]]:
        last -= 1
    at = float(conf[order[last]]) if last >= 0 else float("nan")
    return {"items": int(labelled.sum()), "accuracy": float(right.mean()),
            "majority": float(base.mean()), "confidence_90": round(at, 4),
            "labelled_at_90": float((last + 1) / len(order)) if last >= 0 else 0.0}


# -- audit -------------------------------------------------------------------------------------
def flipped_labels(nb: Neighbours, column: str, seed: int = 0
                   ) -> tuple[list[str | None], set[int]]:
    """5% of the labelled items given another label, drawn by the labels' frequency."""
    labels = column_labels(nb, column)
    rng = np.random.default_rng(seed)
    have = [p for p, lab in enumerate(labels) if lab is not None]
    kinds, counts = np.unique([labels[p] for p in have], return_counts=True)
    flip = set(int(p) for p in rng.choice(have, int(round(FLIP_SHARE * len(have))),
                                          replace=False))
    out = list(labels)
    for p in sorted(flip):
        others = kinds != labels[p]
        out[p] = str(rng.choice(kinds[others], p=counts[others] / counts[others].sum()))
    return out, flip


def audit_rows(nb: Neighbours, labels: list[str | None], flipped: set[int], column: str
               ) -> dict:
    found = disputes(nb, labels, range(len(nb.ids)), column, VOTES)
    position = {item: p for p, item in enumerate(nb.ids)}
    ranked = [position[f.id] in flipped for f in found]
    top5 = max(1, int(round(FLIP_SHARE * len(nb.ids))))
    out = {"flipped": len(flipped), "listed": len(found)}
    for name, n in (("top100", 100), ("top5%", top5)):
        hits = sum(ranked[:n])
        out[f"{name}_found"] = hits / len(flipped)  # share of the flipped items in the list
        out[f"{name}_precision"] = hits / max(1, min(n, len(ranked)))
    return out


# -- duplicates --------------------------------------------------------------------------------
def altered(rgb: np.ndarray, how: str) -> np.ndarray:
    h, w = rgb.shape[:2]
    if how == "half size":
        return cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    if how.startswith("crop"):
        f = 0.05 if how == "crop 5%" else 0.08
        return rgb[int(f * h): h - int(f * h), int(f * w): w - int(f * w)]
    if how == "brighter 15%":
        return np.clip(rgb.astype(np.float32) * 1.15, 0, 255).astype(np.uint8)
    return rgb


def make_copies(cat: Catalog, cache: Path, seed: int = 1) -> dict[str, str]:
    """COPIES altered copies of val photos under ``cache``; copy id -> original id."""
    folder = cache / "copies"
    pairs_file = cache / "copies.json"
    if pairs_file.is_file():
        return json.loads(pairs_file.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    ids = cat.ids
    rng = np.random.default_rng(seed)
    pairs = {}
    for n, p in enumerate(sorted(rng.choice(len(ids), COPIES, replace=False))):
        original = cat.get(ids[p])
        how = ALTERATIONS[n % len(ALTERATIONS)]
        copy_id = f"copy{n:03d}"
        out = folder / f"{copy_id}.jpg"
        if how == "same file, new id":
            shutil.copyfile(original.path, out)
        else:
            quality = 35 if how == "jpeg q35" else 60 if "q60" in how else 92
            bgr = altered(load_rgb(original.path), how)[..., ::-1]
            cv2.imwrite(str(out), bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        pairs[copy_id] = original.id
    pairs_file.write_text(json.dumps(pairs))
    return pairs


def with_copies(cat: Catalog, cache: Path, pairs: dict[str, str]) -> Catalog:
    where = cache / f"val+copies-{cat.encoder.model_sha256[:12]}.catalog"
    if where.is_dir():
        return Catalog.open(where, cat.encoder)
    cat.save(where)
    both = Catalog.open(where, cat.encoder)
    both.add([cache / "copies" / f"{c}.jpg" for c in pairs], progress=True)
    return both


def pair_set(members: list[list[str]]) -> set[frozenset[str]]:
    return {frozenset((a, b)) for g in members for i, a in enumerate(g) for b in g[i + 1:]}


def scored(predicted: set[frozenset[str]], truth: set[frozenset[str]]) -> dict:
    right = len(predicted & truth)
    return {"recall": right / len(truth), "precision": right / max(1, len(predicted)),
            "pairs": len(predicted)}


def phash(path: str) -> int:
    """64-bit perceptual hash: the 8x8 lowest DCT frequencies of a 32x32 grey image against
    their median (as imagededup's PHash)."""
    grey = cv2.cvtColor(load_rgb(path), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].reshape(-1)
    bits = low > np.median(low)
    return int("".join("1" if b else "0" for b in bits), 2)


def phash_pairs(ids: list[str], paths: list[str], max_distance: int = 10
                ) -> set[frozenset[str]]:
    hashes = np.array([phash(p) for p in paths], dtype=np.uint64)
    out = set()
    for i in range(len(ids)):
        x = hashes[i] ^ hashes[i + 1:]
        dist = np.array([bin(int(v)).count("1") for v in x])
        out |= {frozenset((ids[i], ids[i + 1 + j])) for j in np.flatnonzero(dist <= max_distance)}
    return out


# -- the report --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.merchandising", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/myntra")
    p.add_argument("--cache", default="/tmp/fai-merch")
    p.add_argument("--model", default=None, help="ONNX model (default: the shipped model)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--save", metavar="JSON", help="also write the figures to this file")
    a = p.parse_args(argv)
    data, cache = Path(a.data), Path(a.cache)
    cache.mkdir(parents=True, exist_ok=True)
    encoder = Encoder(a.model)
    cat = val_catalogue(data, cache, encoder)
    nb = Neighbours.of_catalogue(cat, 30, progress=True)
    paths = dict(zip(cat.ids, cat.paths))
    px = pixel_neighbours(nb, paths, encoder.spec, cache, 30)
    report: dict = {"items": len(nb.ids), "model": encoder.info.name, "tag": {}, "audit": {}}
    for column in TAG_COLUMNS:
        report["tag"][column] = {"fai": tag_rows(nb, column), "pixels": tag_rows(px, column)}
    labels, flipped = flipped_labels(nb, AUDIT_COLUMN)
    report["audit"] = {"fai": audit_rows(nb, labels, flipped, AUDIT_COLUMN),
                       "pixels": audit_rows(px, labels, flipped, AUDIT_COLUMN)}
    pairs = make_copies(cat, cache)
    both = with_copies(cat, cache, pairs)
    truth = {frozenset(p) for p in pairs.items()}
    nb2 = Neighbours.of_catalogue(both, 10, progress=True)
    report["duplicates"] = {f"fai >= {t:.2f}": scored(pair_set([g.ids for g in groups(nb2, t)]),
                                                      truth) for t in THRESHOLDS}
    for t in (0.95, 0.97):
        report["duplicates"][f"score >= {t:.2f} alone"] = scored({
            frozenset((nb2.ids[i], nb2.ids[j])) for i in range(len(nb2.ids))
            for j, s in zip(nb2.index[i], nb2.scores[i]) if j >= 0 and s >= t}, truth)
    report["duplicates"]["phash <= 10 bits"] = scored(
        phash_pairs(both.ids, both.paths), truth)
    report["default_threshold"] = THRESHOLD
    if a.save:
        Path(a.save).write_text(json.dumps(report, indent=2) + "\n")
    if a.json:
        print(json.dumps(report, indent=2))
    else:
        print(table(report))
    return 0


def at_90(row: dict) -> str:
    """'0.79, 22.0%', or 'never 90% right' where no confidence reaches it."""
    if not row["labelled_at_90"]:
        return "never 90% right"
    return f"{row['confidence_90']:.2f}, {row['labelled_at_90']:.1%}"


def table(r: dict) -> str:
    out = [f"Myntra val, {r['items']} items, model {r['model']}", "",
           "| tag: column | items | FAI accuracy | raw-pixel accuracy | majority class | "
           "FAI confidence for 90% right | labelled there | raw pixels: confidence, labelled |",
           "|---|---|---|---|---|---|---|---|"]
    for column, rows in r["tag"].items():
        f, x = rows["fai"], rows["pixels"]
        out.append(f"| {column} | {f['items']} | {f['accuracy']:.3f} | {x['accuracy']:.3f} | "
                   f"{f['majority']:.3f} | {f['confidence_90']:.2f} | {f['labelled_at_90']:.1%} "
                   f"| {at_90(x)} |")
    out += ["", "| audit (5% of articleType flipped) | flipped | found in top 100 | top-100 "
            "precision | found in top 5% | top-5% precision |", "|---|---|---|---|---|---|"]
    for name, a in r["audit"].items():
        out.append(f"| {name} | {a['flipped']} | {a['top100_found']:.3f} | "
                   f"{a['top100_precision']:.3f} | {a['top5%_found']:.3f} | "
                   f"{a['top5%_precision']:.3f} |")
    out += ["", f"| duplicates ({COPIES} altered copies) | recall | precision | pairs grouped |",
            "|---|---|---|---|"]
    for name, d in r["duplicates"].items():
        mark = " (default)" if name == f"fai >= {r['default_threshold']:.2f}" else ""
        out.append(f"| {name}{mark} | {d['recall']:.3f} | {d['precision']:.3f} | "
                   f"{d['pairs']} |")
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
