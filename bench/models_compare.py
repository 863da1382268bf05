"""python -m bench.models_compare: two or more shipped models' speed, same run, same photos.

A new default must not make a kiosk's query or a shop's indexing slower for nothing; this
times each model's encoder (onnxruntime, the runtime's own ``Encoder``) on the same decoded
squares, the models taking turns within every repeat so load falls on all alike:

- ``query ms``: one photo at batch 1 (a shopper's query, decoding excluded);
- ``index photos/s``: batches of 32 (what ``fai index`` feeds the encoder).

Medians over ``--repeats``; the CPU (AVX2 or VNNI) is printed and stored with the JSON.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.timing import cpu_name, save_json, table
from export.synthetic import generated_squares
from fai_infer.model.cpu import int8_path
from fai_infer.model.encoder import Encoder


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.models_compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="models/fai-lite0-v3.onnx,models/fai-default.onnx")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--out", default=None, help="also write the report as JSON here")
    a = p.parse_args(argv)
    paths = [m.strip() for m in a.models.split(",") if m.strip()]
    encoders = {m: Encoder(m) for m in paths}
    sizes = {e.spec.size for e in encoders.values()}
    squares = {s: generated_squares(s, a.batch, seed=1) for s in sizes}
    query = {m: [] for m in paths}
    index = {m: [] for m in paths}
    for _ in range(2):  # warm-up
        for m, e in encoders.items():
            e.embed_squares(squares[e.spec.size][:1])
            e.embed_squares(squares[e.spec.size])
    for _ in range(a.repeats):
        for m, e in encoders.items():
            sq = squares[e.spec.size]
            t0 = time.perf_counter()
            e.embed_squares(sq[:1])
            t1 = time.perf_counter()
            e.embed_squares(sq)
            t2 = time.perf_counter()
            query[m].append(1000 * (t1 - t0))
            index[m].append(a.batch / (t2 - t1))
    rows = [{"model": m, "dim": encoders[m].dim, "query ms": float(np.median(query[m])),
             "index photos/s": float(np.median(index[m]))} for m in paths]
    base = rows[0]
    for r in rows:
        r["query vs first"] = r["query ms"] / base["query ms"]
        r["index vs first"] = r["index photos/s"] / base["index photos/s"]
    print(f"CPU: {cpu_name()} (int8 kernels: {int8_path()}); medians of {a.repeats}")
    print(table(rows, ["model", "dim", "query ms", "index photos/s", "query vs first",
                       "index vs first"]))
    report = {"rows": rows, "repeats": a.repeats, "batch": a.batch}
    save_json(report, a.out, tuple(paths))
    return report


if __name__ == "__main__":
    main()
