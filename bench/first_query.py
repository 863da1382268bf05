"""python -m bench.first_query: the first query of a fresh process against its later ones
(issue 34.8: a kiosk that runs ``fai query`` per search paid the match scale's fit every time).

A catalogue of ``--items`` random unit vectors (``add_embeddings``, the shipped model's width)
is saved to a temporary folder; each of ``--runs`` fresh Python processes opens it as
``fai query`` does (``Catalog.open``) and times ``--queries`` searches by id, one at a time.
Printed: the first query's milliseconds beside the median of the later ones, per process, the
cost of committing a one-item change to the stored catalogue (where the scale is now fitted),
and the CPU (wall and CPU time: on a shared machine a query's wall time includes waiting for a
core). Run it from another folder with ``PYTHONPATH`` pointing at another checkout to measure
that checkout's runtime (the child processes inherit ``PYTHONPATH``). On a shared machine,
``OPENBLAS_NUM_THREADS=1`` keeps OpenBLAS's thread wake-ups (tens of ms a query under load, the
same for every checkout) out of the comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.timing import cpu_name, table

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from fai_infer import Catalog
cat = Catalog.open(sys.argv[1])
opened = time.perf_counter() - t0
times, cpu = [], []
for item in cat.ids[:int(sys.argv[2])]:
    t0, c0 = time.perf_counter(), time.process_time()
    hits = cat.similar(item, k=10)
    times.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
print(json.dumps({"open_s": opened, "times_s": times, "cpu_s": cpu,
                  "confidence": hits[0].confidence}))
"""


def build(root: Path, items: int, seed: int = 0) -> None:
    from fai_infer import Catalog, Encoder

    cat = Catalog(Encoder())
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(items // 50, 1), cat.encoder.dim))
    vectors = centres[rng.integers(0, len(centres), items)] + 0.5 * rng.normal(
        size=(items, cat.encoder.dim))
    cat.add_embeddings([f"item{i:06d}" for i in range(items)], vectors,
                       metadata=[{"kind": f"k{i % 7}"} for i in range(items)])
    cat.save(root)


def commit_ms(root: Path, repeats: int = 3) -> float:
    """Median milliseconds of a one-item ``add_embeddings`` on the stored catalogue."""
    import time

    from fai_infer import Catalog

    cat = Catalog.open(root)
    rng = np.random.default_rng(1)
    times = []
    for n in range(repeats):
        vector = rng.normal(size=(1, cat.encoder.dim))
        t0 = time.perf_counter()
        cat.add_embeddings([f"added{n}"], vector)
        times.append(time.perf_counter() - t0)
    cat.remove([f"added{n}" for n in range(repeats)])
    return 1000 * float(np.median(times))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cat"
        build(root, a.items)
        for run in range(a.runs):
            out = subprocess.run([sys.executable, "-c", CHILD, str(root), str(a.queries)],
                                 capture_output=True, text=True, cwd=tmp, env=os.environ,
                                 check=True)
            got = json.loads(out.stdout.strip().splitlines()[-1])
            ms = [1000 * t for t in got["times_s"]]
            cpu = [1000 * t for t in got["cpu_s"]]
            rows.append({"process": run + 1, "open ms": 1000 * got["open_s"],
                         "first query ms": ms[0], "median later ms": float(np.median(ms[1:])),
                         "first CPU ms": cpu[0], "median later CPU ms": float(np.median(cpu[1:])),
                         "confidence given": got["confidence"] is not None})
        commit = commit_ms(root)
    import fai_infer

    print(f"# first query of a fresh process: {a.items} items, {a.queries} queries by id per "
          f"process, k=10")
    print(f"CPU: {cpu_name()}; runtime: {Path(fai_infer.__file__).parent}")
    print(table(rows, ["process", "open ms", "first query ms", "median later ms",
                       "first CPU ms", "median later CPU ms", "confidence given"]))
    print("(wall ms on a shared machine include waiting for a core; CPU ms are the process's "
          "own, all its threads)")
    print(f"\none-item add_embeddings on the stored catalogue: {commit:.0f} ms (median of 3)")


if __name__ == "__main__":
    main()
