"""python -m bench.hnsw_build: how fast the installed hnswlib builds and searches, to compare
compile flags (the Makefile builds it for x86-64-v3 where the CPU has AVX2 and FMA).

Run it once per build of hnswlib, in one sitting, e.g. with a generic build beside it:

    HNSWLIB_NO_NATIVE=1 pip install --no-cache-dir --no-deps --target /tmp/hnsw-sse hnswlib==0.8.0
    PYTHONPATH=/tmp/hnsw-sse python -m bench.hnsw_build
    python -m bench.hnsw_build                      # the project's own build

Vectors: the shipped model's embeddings of real photos padded with jittered copies (as
``bench.store``); M=32, ef_construction=200 as the catalogue uses; both cores for the build,
one thread for queries (as a kiosk).
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

import hnswlib
import numpy as np

from bench.filters import MYNTRA, embeddings
from bench.timing import table
from export.synthetic import scale_embeddings
from fai_infer import Encoder


def uses_avx(module_file: str) -> str:
    """Whether the compiled module holds 256-bit vector instructions (objdump's view)."""
    try:
        out = subprocess.run(["objdump", "-d", module_file], capture_output=True, text=True,
                             timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return "AVX (ymm)" if "ymm" in out else "SSE only"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.hnsw_build", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--photos", default=str(MYNTRA))
    a = p.parse_args(argv)
    real = embeddings(Encoder(), Path(a.photos), 3000)
    emb = scale_embeddings(real, a.n)
    index = hnswlib.Index(space="ip", dim=emb.shape[1])
    index.init_index(max_elements=a.n, M=32, ef_construction=200)
    index.set_num_threads(2)
    t0 = time.perf_counter()
    index.add_items(emb, np.arange(a.n))
    build = time.perf_counter() - t0
    index.set_num_threads(1)
    index.set_ef(64)
    rng = np.random.default_rng(0)
    queries = emb[rng.integers(0, a.n, a.queries)]
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.knn_query(q[None], k=10)
        times.append(time.perf_counter() - t0)
    row = {"hnswlib": hnswlib.__file__, "simd": uses_avx(hnswlib.__file__), "n": a.n,
           "dim": emb.shape[1], "build_items_s": a.n / build,
           "query_p50_ms": 1000 * float(np.median(times))}
    print(table([row], list(row)))
    return row


if __name__ == "__main__":
    main()
