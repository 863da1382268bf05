"""Garment parser speed: one photo at batch 1, the encoder alone against parser + encoder.

``python -m bench.look_speed [--parser PARSER.onnx] [--photos ../shared/data/ccp/images]``

Every row decodes the photo from its file, as a query does; the rows take turns within each
repeat (same run, same load), and the table reports medians. Rows:

- encoder alone: what a photo query cost before the parser and the centre crop;
- frame + centre crop: a photo searched whole (``similar(photo, region="whole")``, or a photo
  without a person): the frame and its centre crop at batch 2, without the parser;
- parser alone: decode, parse, masks and regions;
- parser + encoder, one garment: ``similar(photo, region=GROUP)`` without the search;
- auto: the whole photo and its largest garment embedded (``region="auto"`` on a photo of a
  person, without the two searches);
- look: every garment found embedded (``Catalog.look`` without the searches).

Indexing is untouched: catalogue photos are not parsed (``Catalog.add`` embeds them whole).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench.timing import cpu_name, save_json, table
from fai_infer.model.cpu import cpu_flags
from fai_infer.model.encoder import Encoder
from fai_infer.catalog.garments import QUERY_CENTRE_CROP, frame_vectors, view_of, views
from fai_infer.model.parser import GarmentParser

DEFAULT_PHOTOS = "../shared/data/ccp/images"


def synthetic_photo(path: Path) -> Path:
    """A 400 x 264 figure of rectangles on grey when no CCP photos are at hand."""
    import cv2

    img = np.full((400, 264, 3), 200, np.uint8)
    img[30:70, 110:150] = (224, 172, 140)
    img[70:200, 80:180] = (200, 30, 30)
    img[200:340, 90:170] = (30, 30, 200)
    img[340:380, 85:175] = (20, 20, 20)
    cv2.imwrite(str(path), img[..., ::-1])
    return path


def rows_for(encoder: Encoder, parser: GarmentParser, photo: Path, repeats: int
             ) -> dict[str, float]:
    found = parser.parse(photo)
    group = found.regions[0].group if found.regions else None

    def one_garment() -> None:
        parse = parser.parse(photo)
        region = parse.region(group) if group else None
        encoder.embed([view_of(parse, region)] if region else [photo])

    def auto() -> None:
        parse = parser.parse(photo)
        encoder.embed([photo] + ([view_of(parse, parse.regions[0])] if parse.regions else []))

    def look() -> None:
        parse = parser.parse(photo)
        if parse.regions:
            encoder.embed(views(parse, parse.regions))

    fns = {"encoder alone": lambda: encoder.embed([photo]),
           "frame + centre crop (searched whole)": lambda: frame_vectors(
               encoder, photo, QUERY_CENTRE_CROP),
           "parser alone": lambda: parser.parse(photo),
           "parser + encoder, one garment": one_garment,
           "parser + encoder, auto (whole + largest garment)": auto,
           "look (every garment)": look}
    for fn in fns.values():  # warm-up: first runs allocate
        fn(), fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():  # take turns: load drifts hit every row alike
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    out = {name: 1000 * float(np.median(t)) for name, t in times.items()}
    out["garments found"] = float(len(found.regions))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="encoder (default: the shipped model)")
    ap.add_argument("--parser", default=None, help="parser (default: models/fai-parser.onnx)")
    ap.add_argument("--photos", default=DEFAULT_PHOTOS, help="folder of street photos")
    ap.add_argument("--n-photos", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0 = all)")
    ap.add_argument("--json", default=None, help="also write the report here")
    ns = ap.parse_args(argv)
    encoder = Encoder(ns.model, threads=ns.threads)
    parser = GarmentParser(ns.parser, threads=ns.threads)
    folder = Path(ns.photos)
    photos = sorted(folder.glob("*.jpg"))[: ns.n_photos] if folder.is_dir() else []
    if not photos:
        print(f"no photos in {folder}: timing a synthetic figure", file=sys.stderr)
        photos = [synthetic_photo(Path("/tmp") / "fai-look-speed.png")]
    per = [rows_for(encoder, parser, p, ns.repeats) for p in photos]
    names = [n for n in per[0] if n != "garments found"]
    base = float(np.median([p["encoder alone"] for p in per]))
    rows = []
    for name in names:
        ms = float(np.median([p[name] for p in per]))
        rows.append({"row": name, "median ms": ms, "x encoder alone": ms / base})
    flags = cpu_flags()
    print(f"CPU: {cpu_name()}; avx512_vnni: {'yes' if 'avx512_vnni' in flags else 'no'}; "
          f"encoder {encoder.path.name} at {encoder.spec.size} px, parser {parser.path.name} "
          f"at {parser.spec.size} px; batch 1, {len(photos)} photo(s) "
          f"({', '.join(p.name for p in photos)}), median of {ns.repeats} turns each, "
          f"decode from file included; garments found: "
          f"{', '.join(str(int(p['garments found'])) for p in per)}")
    print(table(rows, ["row", "median ms", "x encoder alone"]))
    save_json({"rows": rows, "photos": [str(p) for p in photos], "repeats": ns.repeats,
               "cpu": cpu_name()}, ns.json, (encoder.path, parser.path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
