"""python -m bench.indexing: indexing a folder of photos against the encoder alone (issue 26).

``fai index`` decodes on a thread pool while the encoder runs (``Encoder.embed_stream``), and
big JPEGs decode at 1/2-1/8 scale. This times, in one run on the same photos:

- ``index``: ``Catalog.build`` of the folder (listing, decoding, preprocessing, encoding,
  adding), photos/s;
- ``encoder alone``: the same photos decoded beforehand (not timed), then only the encoder;
- ``decode alone``: decoding and squaring them on one thread, photos/s.

The ratio index / encoder alone is the share of the encoder's speed that indexing keeps (the
goal is >= 0.9). Say which CPU gave the figures (printed).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.timing import save_json, table
from fai_infer import Catalog, Encoder
from fai_infer.model.cpu import cpu_flags
from fai_infer.catalog.sources import list_images


def measure(folder: Path, limit: int, encoder: Encoder) -> dict:
    photos = [p for p in list_images(folder) if p.is_file()][:limit]
    with tempfile.TemporaryDirectory(prefix="fai-indexing-") as tmp:
        shop = Path(tmp)
        for p in photos:
            (shop / p.name).symlink_to(p)
        t0 = time.perf_counter()
        cat = Catalog.build(shop, encoder=encoder, progress=True)
        index_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    squares = np.stack([encoder.prepare(p) for p in photos])
    decode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(0, len(squares), 32):
        encoder.embed_squares(squares[i:i + 32])
    encode_s = time.perf_counter() - t0
    n = len(photos)
    return {"photos": n, "indexed": len(cat), "index_photos_s": n / index_s,
            "encoder_alone_photos_s": n / encode_s, "decode_alone_photos_s": n / decode_s,
            "index_vs_encoder": encode_s / index_s}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.indexing", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", default="../shared/data/hm-dev/images",
                   help="a folder of photos (default: the second shop's)")
    p.add_argument("--limit", type=int, default=2000, help="photos to use")
    p.add_argument("--out", default="bench/results/indexing.json")
    a = p.parse_args(argv)
    folder = Path(a.photos)
    if not folder.is_dir():
        raise SystemExit(f"--photos {folder}: not a folder of photos")
    encoder = Encoder()
    row = {"folder": str(folder), **measure(folder, a.limit, encoder),
           "cores": os.cpu_count(), "simd": " ".join(cpu_flags()), "model": encoder.info.name}
    print(table([row], ["folder", "photos", "index_photos_s", "encoder_alone_photos_s",
                        "decode_alone_photos_s", "index_vs_encoder"]))
    print(f"CPU SIMD: {row['simd']}; {row['cores']} cores; model {row['model']}")
    save_json(row, a.out)
    return row


if __name__ == "__main__":
    main()
