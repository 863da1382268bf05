"""python -m train.look_eval: street photos' garments against a packshot catalogue, whole photo
versus the parsed garment view, through the runtime's own code.

Queries: CCP photos the parser never trained on (``train.parser_data.split_of`` == "test",
with the fractions recorded in the parser file), masked or tag-only alike. Each garment a photo's
tags name that has a clear Myntra counterpart (``CCP_TO_MYNTRA``, written once below) is one
query unit: its relevant catalogue items are those of the mapped articleTypes. P@10 counts the
top 10 of that kind, Hit@10 whether any is. Rows, on the same units (paired bootstrap margins
against the whole photo, ``train.metrics.paired_margin``):

- whole photo: what ``similar(photo)`` embedded before the parser (the same vector for every
  garment of a photo);
- chosen group: the unit's own group (``similar(photo, region=group)``, ``look``: the caller
  names the garment) as the runtime embeds it (``view_of``), painted for every group, and the
  box unpainted; the whole photo where the parser did not find that group;
- auto rules, one query per photo when it shows a person: the region whose best catalogue
  match scores highest (with or without the whole photo as a candidate), the largest region,
  and the largest region or the whole photo, whichever matches better: what
  ``region="auto"`` does (``fai_infer/catalog/garments.py`` says why).

Packshots: Myntra val photos against all 10,650 (themselves left out), type and type+colour
P@10 at the model's default colour weight, whole versus what ``region="auto"`` embeds (a
packshot is meant to stay whole; on-model photos may be parsed): nothing may regress.

Embeddings are cached under ``--cache`` (keyed by the model files' sha256): the machine is slow.
Writes docs/eval-look.json with the provenance of every model file.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from fai_infer.catalog.garments import PERSON_SHARE, PHOTOGRAPHED_GROUPS
from fai_infer.model.encoder import Encoder
from fai_infer.index.whitening import fit
from fai_infer.model.identity import file_sha256_or_none
from fai_infer.model.parser import GarmentParser, garment_view
from fai_infer.model.provenance import provenance
from train.metrics import paired_margin
from train.parser_data import LABEL_GROUP, split_of

# CCP tag -> the Myntra articleTypes a shopper would call the same kind. Only garments with a
# clear counterpart: boots, clogs, capes, suits, vests, socks, glasses and "accessories" have
# none in this catalogue (Myntra files no boots, coats or blazers of their own: coats and
# blazers are its Jackets, cardigans its Sweaters).
CCP_TO_MYNTRA: dict[str, tuple[str, ...]] = {
    "blouse": ("Tops",), "top": ("Tops",), "shirt": ("Shirts",), "t-shirt": ("Tshirts",),
    "sweater": ("Sweaters",), "jumper": ("Sweaters",), "cardigan": ("Sweaters",),
    "sweatshirt": ("Sweatshirts",), "hoodie": ("Sweatshirts",), "bra": ("Bra",),
    "jeans": ("Jeans",), "pants": ("Trousers", "Track Pants"), "shorts": ("Shorts",),
    "skirt": ("Skirts",), "leggings": ("Leggings", "Jeggings"), "stockings": ("Stockings",),
    "tights": ("Tights", "Stockings"),
    "dress": ("Dresses",), "romper": ("Jumpsuit", "Rompers"),
    "jacket": ("Jackets",), "blazer": ("Jackets",), "coat": ("Jackets",),
    "heels": ("Heels",), "pumps": ("Heels",), "wedges": ("Heels",), "flats": ("Flats",),
    "sandals": ("Sandals", "Sports Sandals"), "sneakers": ("Sports Shoes", "Casual Shoes"),
    "loafers": ("Casual Shoes", "Formal Shoes"),
    "shoes": ("Casual Shoes", "Formal Shoes", "Sports Shoes"),
    "bag": ("Handbags", "Backpacks", "Clutches", "Messenger Bag", "Duffel Bag", "Laptop Bag"),
    "purse": ("Handbags", "Clutches"), "wallet": ("Wallets",),
    "belt": ("Belts",), "sunglasses": ("Sunglasses",), "watch": ("Watches",),
    "hat": ("Caps", "Hat"), "tie": ("Ties",), "scarf": ("Scarves", "Mufflers", "Stoles"),
    "earrings": ("Earrings",), "necklace": ("Necklace and Chains", "Pendant"),
    "bracelet": ("Bracelet", "Bangle"), "ring": ("Ring",), "gloves": ("Gloves",),
}
K = 10
VIEW_ROWS = {"runtime view, chosen group": "regions", "painted view, chosen group": "painted",
             "unpainted box, chosen group": "crop"}
AUTO_RULES = {"score": "auto (best region score)", "score+whole": "auto (best of regions+whole)",
              "largest": "auto (largest region)",
              "largest+whole": "auto (largest or whole) = runtime"}


def read_myntra(data: Path) -> list[dict[str, str]]:
    with open(data / "styles.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if (data / "images" / f"{r['id']}.jpg").is_file()]
    return rows


def ccp_units(data: Path, held: float, val: float, split: str = "test"
              ) -> list[tuple[str, str, frozenset[str]]]:
    """(photo, garment group, relevant Myntra articleTypes) for every photo of ``split``
    (``test``: held apart; ``val``: training's own check photos, for choosing a rule)."""
    units = []
    with open(data / "tags.csv", newline="") as f:
        for r in csv.DictReader(f):
            photo = r["photo"].strip()
            if split_of(photo, held, val) != split:
                continue
            kinds: dict[str, set[str]] = {}
            for tag in {t.strip() for t in r["labels"].split("|") if t.strip()}:
                if tag in CCP_TO_MYNTRA:
                    kinds.setdefault(LABEL_GROUP[tag], set()).update(CCP_TO_MYNTRA[tag])
            units += [(photo, g, frozenset(k)) for g, k in sorted(kinds.items())]
    return units


def embed_gallery(encoder: Encoder, paths: list[Path], cache: Path) -> np.ndarray:
    if cache.is_file():
        return np.load(cache)
    out = np.zeros((len(paths), encoder.dim), np.float32)
    done = 0
    for positions, emb, bad in encoder.embed_stream(paths, 64, 2):
        if bad:
            raise SystemExit(f"catalogue photo failed: {paths[bad[0][0]]}: {bad[0][1]}")
        out[positions] = emb
        done += len(positions)
        print(f"\rgallery {done}/{len(paths)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    np.save(cache, out)
    return out


def parse_and_embed(encoder: Encoder, parser: GarmentParser, paths: list[Path],
                    cache: Path) -> dict[str, np.ndarray]:
    """Per photo: the whole-photo vector, every region's vectors (``painted``: the packshot-like
    view; ``crop``: the box as photographed; ``regions``: the runtime's choice per group,
    ``fai_infer.catalog.garments.view_of``), group, share and the person share, flattened into
    arrays (``owner`` says which photo a region belongs to)."""
    if cache.is_file():
        data = dict(np.load(cache))
    else:
        whole, painted, crop, owner, groups, shares, person = [], [], [], [], [], [], []
        for n, path in enumerate(paths):
            whole.append(encoder.embed([path])[0])
            parse = parser.parse(path)
            person.append(parse.person_share)
            if parse.regions:
                painted.append(encoder.embed([garment_view(parse.photo, r)
                                              for r in parse.regions]))
                crop.append(encoder.embed([garment_view(parse.photo, r, paint=False)
                                           for r in parse.regions]))
                owner += [n] * len(parse.regions)
                groups += [r.group for r in parse.regions]
                shares += [r.share for r in parse.regions]
            if n % 50 == 0:
                print(f"\rparsed {n}/{len(paths)}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        empty = np.zeros((0, encoder.dim), np.float32)
        data = {"whole": np.stack(whole), "person": np.array(person, np.float32),
                "painted": np.concatenate(painted) if painted else empty,
                "crop": np.concatenate(crop) if crop else empty,
                "owner": np.array(owner, np.int64), "group": np.array(groups, dtype="U16"),
                "share": np.array(shares, np.float32)}
        np.savez(cache, **data)
    as_photographed = np.isin(data["group"], list(PHOTOGRAPHED_GROUPS))[:, None]
    data["regions"] = np.where(as_photographed, data["crop"], data["painted"])
    return data


def as_stored(parsed: dict[str, np.ndarray], stored) -> dict[str, np.ndarray]:
    """Every vector of a parse as the catalogue stores and searches it."""
    return {k: (stored(v) if k in ("whole", "painted", "crop", "regions") and len(v) else v)
            for k, v in parsed.items()}


def top_k(gallery: np.ndarray, queries: np.ndarray, k: int,
          exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indices, scores) of each query's k best gallery items; ``exclude[i]``: left out."""
    sims = queries @ gallery.T
    if exclude is not None:
        sims[np.arange(len(queries)), exclude] = -np.inf
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, idx, 1), axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, 1)
    return idx, np.take_along_axis(sims, idx, 1)


def auto_vectors(parsed: dict[str, np.ndarray], gallery: np.ndarray, rule: str,
                 person_share: float, exclude: np.ndarray | None = None
                 ) -> tuple[np.ndarray, list[str]]:
    """What ``region="auto"`` embeds per photo, and the region it names. ``score``: the region
    whose best match scores highest; ``score+whole``: the same with the whole photo as one more
    candidate; ``largest``: the largest region; ``largest+whole``: the largest region unless
    the whole photo's best match scores higher."""
    vecs = parsed["whole"].copy()
    chosen = ["whole photo"] * len(vecs)
    if len(parsed["regions"]):
        _, scores = top_k(gallery, parsed["regions"], 1,
                          None if exclude is None else exclude[parsed["owner"]])
    _, whole_scores = top_k(gallery, parsed["whole"], 1, exclude)
    for n in range(len(vecs)):
        if parsed["person"][n] < person_share:
            continue
        mine = np.flatnonzero(parsed["owner"] == n)
        if not len(mine):
            continue
        pick = mine[np.argmax(scores[mine, 0] if rule.startswith("score")
                              else parsed["share"][mine])]
        if rule.endswith("+whole") and whole_scores[n, 0] >= scores[pick, 0]:
            continue
        vecs[n], chosen[n] = parsed["regions"][pick], str(parsed["group"][pick])
    return vecs, chosen


def kind_scores(idx: np.ndarray, types: np.ndarray, relevant: list[frozenset[str]]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per query: P@k and Hit@k of its relevant kinds."""
    same = np.array([[types[j] in rel for j in row] for row, rel in zip(idx, relevant)])
    return same.mean(axis=1), same.any(axis=1).astype(np.float64)


def scored_rows(per: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """Mean P@10 and Hit@10 per row, and each row's paired margins against the whole photo."""
    base = per["whole photo"]
    return {name: {"P@10": round(float(p.mean()), 4), "Hit@10": round(float(h.mean()), 4),
                   **({} if name == "whole photo" else
                      {"P@10 vs whole": margin(p, base[0]), "Hit@10 vs whole": margin(h, base[1])})}
            for name, (p, h) in per.items()}


def margin(a: np.ndarray, b: np.ndarray) -> dict:
    d, lo, hi = paired_margin(a, b)
    return {"delta": round(d, 4), "ci95": [round(lo, 4), round(hi, 4)]}


def evaluate(ns: argparse.Namespace) -> dict:
    cache = Path(ns.cache)
    cache.mkdir(parents=True, exist_ok=True)
    encoder = Encoder(ns.model)
    parser = GarmentParser(ns.parser)
    tc = parser.meta.raw.get("train_config", {})
    held, val = float(tc.get("held_apart", 0.2)), float(tc.get("val_fraction", 0.1))
    enc_key = (file_sha256_or_none(encoder.path) or "x")[:12]
    key = f"{enc_key}-{(file_sha256_or_none(parser.path) or 'x')[:12]}"

    myntra = Path(ns.myntra)
    rows = read_myntra(myntra)
    types = np.array([r["articleType"] for r in rows])
    colours = np.array([r["baseColour"] for r in rows])
    gallery = embed_gallery(encoder, [myntra / "images" / f"{r['id']}.jpg" for r in rows],
                            cache / f"myntra-{enc_key}.npy")
    # As a built catalogue stores and searches (fai_infer/index/whitening.py): fitted on the
    # catalogue's own garment parts, applied to items and queries alike, for a model that asks
    # for it (fai.catalogue_whitening).
    whitening = fit(gallery, encoder.info.parts.garment) if ns.whiten and encoder.info.parts \
        and encoder.info.catalogue_whitening else None
    stored = (lambda v: v) if whitening is None else whitening.apply
    gallery = stored(gallery)

    ccp = Path(ns.ccp)
    units = ccp_units(ccp, held, val, ns.split)
    if ns.limit:
        units = units[: ns.limit]
    photos = sorted({u[0] for u in units})
    at = {p: i for i, p in enumerate(photos)}
    parsed = as_stored(parse_and_embed(encoder, parser,
                                       [ccp / "images" / f"{p}.jpg" for p in photos],
                                       cache / f"ccp-{ns.split}-{key}-{len(photos)}.npz"), stored)
    relevant = [u[2] for u in units]
    owner = np.array([at[u[0]] for u in units])
    queries: dict[str, np.ndarray] = {"whole photo": parsed["whole"][owner]}
    found = 0
    for name, kind in VIEW_ROWS.items():
        vecs = parsed["whole"][owner].copy()  # where the parser missed the garment: as today
        for i, (photo, group, _) in enumerate(units):
            mine = np.flatnonzero((parsed["owner"] == at[photo]) & (parsed["group"] == group))
            if len(mine):
                vecs[i] = parsed[kind][mine[0]]
                found += kind == "regions"
        queries[name] = vecs
    chosen_by: dict[str, list[str]] = {}
    for rule, label in AUTO_RULES.items():
        vecs, chosen = auto_vectors(parsed, gallery, rule, ns.person_share)
        queries[label] = vecs[owner]
        chosen_by[rule] = chosen
    per = {name: kind_scores(top_k(gallery, q, K)[0], types, relevant)
           for name, q in queries.items()}
    ccp_table = scored_rows(per)
    unit_groups = np.array([u[1] for u in units])
    by_group = {g: {name: {"P@10": round(float(per[name][0][unit_groups == g].mean()), 4),
                           "Hit@10": round(float(per[name][1][unit_groups == g].mean()), 4)}
                    for name in ("whole photo", *VIEW_ROWS)}
                for g in sorted(set(unit_groups))}
    for g in by_group:
        by_group[g]["units"] = int((unit_groups == g).sum())
    # Per photo: what one photo query (whole or auto) finds of any garment the photo shows.
    photo_kinds = [frozenset().union(*(u[2] for u in units if u[0] == p)) for p in photos]
    per_photo = {"whole photo": kind_scores(top_k(gallery, parsed["whole"], K)[0], types,
                                            photo_kinds)}
    for rule, label in AUTO_RULES.items():
        vecs, _ = auto_vectors(parsed, gallery, rule, ns.person_share)
        per_photo[label] = kind_scores(top_k(gallery, vecs, K)[0], types, photo_kinds)
    photo_table = scored_rows(per_photo)

    # Packshots: Myntra val queries, whole versus what region="auto" embeds.
    val_idx = np.flatnonzero(np.array([r["split"] == "val" for r in rows]))
    if ns.limit:
        val_idx = val_idx[: ns.limit]
    vparsed = as_stored(parse_and_embed(encoder, parser,
                                        [myntra / "images" / f"{rows[i]['id']}.jpg"
                                         for i in val_idx],
                                        cache / f"myntra-val2-{key}-{len(val_idx)}.npz"), stored)
    packshot: dict = {}
    tc_per = {}
    named = {"whole photo": vparsed["whole"]}
    parsed_count = {}
    for rule, label in AUTO_RULES.items():
        named[label], chosen = auto_vectors(vparsed, gallery, rule, ns.person_share,
                                            exclude=val_idx)
        parsed_count[label] = int(sum(c != "whole photo" for c in chosen))
    for name, q in named.items():
        idx, _ = top_k(gallery, q, K, exclude=val_idx)
        same_type = (types[idx] == types[val_idx][:, None]).mean(axis=1)
        same_tc = ((types[idx] == types[val_idx][:, None])
                   & (colours[idx] == colours[val_idx][:, None])).mean(axis=1)
        tc_per[name] = (same_type, same_tc)
        packshot[name] = {"type P@10": round(float(same_type.mean()), 4),
                          "type+colour P@10": round(float(same_tc.mean()), 4)}
        if name != "whole photo":
            packshot[name]["type P@10 vs whole"] = margin(same_type, tc_per["whole photo"][0])
            packshot[name]["type+colour P@10 vs whole"] = margin(same_tc,
                                                                 tc_per["whole photo"][1])
            packshot[name]["parsed (not whole)"] = parsed_count[name]

    ccp_person = parsed["person"]
    return {
        "ccp_split": "held-apart" if ns.split == "test" else "val (choice)",
        "ccp_to_myntra": ccp_table,
        "ccp_to_myntra_by_group": by_group,
        "ccp_photos_any_garment": photo_table,
        "ccp_units": {"units": len(units), "photos": len(photos),
                      "group found by the parser": found,
                      "photos with a person (auto parses them)":
                          int((ccp_person >= ns.person_share).sum()),
                      "auto chose": {AUTO_RULES[rule]: {g: c.count(g) for g in sorted(set(c))}
                                     for rule, c in chosen_by.items()},
                      "split": f"split_of(photo, {held}, {val}) == {ns.split!r} "
                               f"(train/parser_data.py; 'test' is held apart), masked and "
                               f"tag-only photos"},
        "myntra_val_packshots": {**packshot, "queries": int(len(val_idx)),
                                 "colour weight": "model default"},
        "person_share_threshold": ns.person_share,
        "catalogue whitening": (whitening.describe() if whitening is not None else None),
        "mapping": {t: list(v) for t, v in CCP_TO_MYNTRA.items()},
        "provenance": provenance([encoder.path, parser.path]),
    }


def print_rows(table: dict) -> None:
    print(f"  {'query':<36}{'P@10':>8}{'Hit@10':>8}   margins vs whole photo (95% CI)")
    for name, row in table.items():
        extra = ""
        if "P@10 vs whole" in row:
            p, h = row["P@10 vs whole"], row["Hit@10 vs whole"]
            extra = (f"   P {p['delta']:+.3f} [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}]"
                     f"  Hit {h['delta']:+.3f} [{h['ci95'][0]:+.3f}, {h['ci95'][1]:+.3f}]")
        print(f"  {name:<36}{row['P@10']:>8.3f}{row['Hit@10']:>8.3f}{extra}")


def print_table(result: dict) -> None:
    units = result["ccp_units"]["units"]
    print(f"CCP {result['ccp_split']} garments -> Myntra ({units} garments in "
          f"{result['ccp_units']['photos']} photos), same kind as the garment:")
    print_rows(result["ccp_to_myntra"])
    print("  by group, P@10 / Hit@10 of: whole photo, " + ", ".join(VIEW_ROWS))
    for g, row in result["ccp_to_myntra_by_group"].items():
        print(f"    {g:<10} {row['units']:>4}" + "".join(
            f"   {row[name]['P@10']:.3f} / {row[name]['Hit@10']:.3f}"
            for name in ("whole photo", *VIEW_ROWS)))
    print(f"CCP photos -> Myntra ({result['ccp_units']['photos']} photos, one query "
          f"each), same kind as any garment the photo's tags name:")
    print_rows(result["ccp_photos_any_garment"])
    m = result["myntra_val_packshots"]
    print(f"Myntra val packshots ({m['queries']} queries, default colour weight):")
    for name in ("whole photo", *AUTO_RULES.values()):
        parsed = m[name].get("parsed (not whole)")
        print(f"  {name:<36}type {m[name]['type P@10']:.3f}  "
              f"type+colour {m[name]['type+colour P@10']:.3f}"
              + ("" if parsed is None else f"  ({parsed} parsed, not whole)"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="encoder (default: the shipped model)")
    ap.add_argument("--parser", default=None, help="parser (default: models/fai-parser.onnx)")
    ap.add_argument("--ccp", default="../shared/data/ccp")
    ap.add_argument("--myntra", default="../shared/data/myntra")
    ap.add_argument("--cache", default="/tmp/fai-look-eval")
    ap.add_argument("--person-share", type=float, default=PERSON_SHARE)
    ap.add_argument("--no-whiten", dest="whiten", action="store_false",
                    help="search the model's own vectors (default: whitened like a built "
                         "catalogue)")
    ap.add_argument("--split", choices=["test", "val"], default="test",
                    help="CCP photos: test = held apart (report), val = for choosing rules")
    ap.add_argument("--limit", type=int, default=0, help="first N units and val photos (smoke)")
    ap.add_argument("--out", default="docs/eval-look.json", help="'' = print only")
    ns = ap.parse_args(argv)
    for what, path, need in (("--ccp", ns.ccp, "tags.csv"), ("--myntra", ns.myntra, "styles.csv")):
        if not (Path(path) / need).is_file():
            print(f"error: {what} {path}: no {need} there", file=sys.stderr)
            return 2
    result = evaluate(ns)
    print_table(result)
    if ns.out:
        Path(ns.out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
