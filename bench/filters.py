"""python -m bench.filters: filtered search at every selectivity, and build speed (issue 26).

Per catalogue size N (in memory; vectors are the shipped model's embeddings of real photos
padded to N with jittered copies, ``export.synthetic.scale_embeddings``, as ``bench.store``):

- build: ``Catalog.add_embeddings`` in large batches; items/s per size in one table, and the
  ratio to the smallest size that has a graph (a linear build keeps it near 1);
- filters: columns whose values keep 0.1%, 1%, 2.5%, 10% and 50% of the items (values drawn at
  random, independent of the photos), and ``kind`` (40 values derived from the photos
  themselves, so a filter is related to what the query looks like, as a colour or a type is).
  Each query asks for another value. Timed through the catalogue (the plan it picks, filter
  evaluation included) and through each plan forced (``gather``: the rows scored at full
  width; ``scan``: a narrow copy in posting order, re-ranked; ``graph``: HNSW filtered after),
  each with recall@10 against exact search among the filter's rows.

Medians and p95 of single queries, one at a time. Say which CPU gave the figures: the header
prints its SIMD flags.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.markdown_merge import merge
from bench.timing import save_json, table
from export.synthetic import scale_embeddings
from fai_infer import Catalog, Encoder
from fai_infer.model.cpu import cpu_flags
from fai_infer.index.filters import parse_where
from fai_infer.index.search import exact_top_k

MYNTRA = Path("../shared/data/myntra/images")
K = 10
COLUMNS = {"s1000": 1000, "s100": 100, "s40": 40, "s10": 10, "s2": 2}  # values per column
KINDS = 40
PLANS = ("gather", "scan", "graph")


def embeddings(encoder: Encoder, folder: Path, n: int) -> np.ndarray:
    photos = sorted(folder.glob("*.jpg"))[:n] if folder.is_dir() else []
    if not photos:
        rng = np.random.default_rng(0)  # no photos: clustered stand-ins of the model's size
        centres = rng.normal(size=(60, encoder.dim))
        v = centres[rng.integers(0, 60, n)] + 0.5 * rng.normal(size=(n, encoder.dim))
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    return encoder.embed(photos, batch_size=64)


def metadata(emb: np.ndarray, real: np.ndarray, start: int, stop: int) -> list[dict[str, str]]:
    rng = np.random.default_rng(start)
    cols = {c: rng.integers(0, v, stop - start) for c, v in COLUMNS.items()}
    kinds = np.argmax(emb[start:stop] @ real[:KINDS].T, axis=1)  # related to the photo
    return [{c: str(cols[c][i]) for c in COLUMNS} | {"kind": str(kinds[i])}
            for i in range(stop - start)]


def jittered(emb: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    v = emb[rng.integers(0, len(emb), n)] + rng.normal(0, 0.03, (n, emb.shape[1]))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def forced(index, plan: str):
    """Thresholds that make ``filter_plan`` pick ``plan`` (restored by the caller)."""
    import fai_infer.index.vector_index as vi

    saved = (index.exact_filter_below, index.scan_below, vi.SCAN_FROM)
    index.exact_filter_below = 10**12 if plan == "gather" else 0
    index.scan_below = 10**12 if plan == "scan" else 0
    vi.SCAN_FROM = 0
    return saved


def restore(index, saved) -> None:
    import fai_infer.index.vector_index as vi

    index.exact_filter_below, index.scan_below, vi.SCAN_FROM = saved


def ms(samples: list[float]) -> tuple[float, float]:
    a = 1000 * np.asarray(samples)
    return float(np.median(a)), float(np.percentile(a, 95))


def bench_filters(cat: Catalog, queries: np.ndarray, column: str, rng: np.random.Generator
                  ) -> dict:
    st = cat.state
    index, tableau = st.index, st.table
    # a value some item has (a random item's), another each query
    wheres = [f"{column}={tableau.row(int(rng.integers(index.rows)))[column]}" for _ in queries]
    chosen = [tableau.select(parse_where(w), index.alive) for w in wheres]
    truths = [set(exact_top_k(index.vectors, q, K, c.as_rows())[0].tolist())
              for q, c in zip(queries, chosen)]
    row = {"column": column, "share": float(np.mean([c.count for c in chosen])) / index.live,
           "rows": int(np.mean([c.count for c in chosen]))}

    def recall(found: list[set]) -> float:
        return float(np.mean([len(f & t) / min(K, max(len(t), 1)) for f, t in
                              zip(found, truths)]))

    times, found, plans = [], [], set()
    cat._filters.clear()  # another value each query: nothing cached
    for q, w in zip(queries, wheres):
        t0 = time.perf_counter()
        hits = cat.similar_to_vector(q, K, where=w)
        times.append(time.perf_counter() - t0)
        found.append({st.row_of[h.id] for h in hits})
    for c in chosen:
        plans.add(index.filter_plan(c))
    row["plan"] = "/".join(sorted(plans))
    row["p50_ms"], row["p95_ms"] = ms(times)
    row["recall"] = recall(found)
    for plan in PLANS:
        saved = forced(index, plan)
        try:
            times, found = [], []
            for q, c in zip(queries, chosen):
                if plan == "scan" and c.run is None:
                    break
                t0 = time.perf_counter()
                rows, _ = index.search(q, K, c)
                times.append(time.perf_counter() - t0)
                found.append(set(rows.tolist()))
        finally:
            restore(index, saved)
        if len(times) == len(queries):
            row[f"{plan}_ms"] = ms(times)[0]
            row[f"{plan}_recall"] = recall(found)
    return row


def bench_size(n: int, real: np.ndarray, encoder: Encoder, a) -> tuple[dict, list[dict]]:
    emb = scale_embeddings(real, n)
    cat = Catalog(encoder)
    build = 0.0
    for start in tqdm(range(0, n, a.batch), desc=f"build {n:,}", unit="batch", leave=False):
        stop = min(n, start + a.batch)
        rows = metadata(emb, real, start, stop)
        ids = [f"i{j}" for j in range(start, stop)]
        t0 = time.perf_counter()
        cat.add_embeddings(ids, emb[start:stop], metadata=rows)
        build += time.perf_counter() - t0
    built = {"n": n, "engine": cat.engine, "build_s": build, "items_s": n / build}
    rng = np.random.default_rng(n)
    queries = jittered(emb, a.queries, rng)
    del emb
    unfiltered, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        hits = cat.similar_to_vector(q, K)
        unfiltered.append(time.perf_counter() - t0)
        truth = set(exact_top_k(cat.state.index.vectors, q, K)[0].tolist())
        found.append(len(truth & {cat.state.row_of[h.id] for h in hits}) / K)
    built["query_p50_ms"], built["query_p95_ms"] = ms(unfiltered)
    built["query_recall"] = float(np.mean(found))
    out = []
    for column in tqdm([*COLUMNS, "kind"], desc=f"filters {n:,}", leave=False):
        out.append({"n": n} | bench_filters(cat, queries, column, rng))
    return built, out


BUILD_COLUMNS = ["n", "engine", "build_s", "items_s", "vs_smallest_graph", "query_p50_ms",
                 "query_p95_ms", "query_recall"]
FILTER_COLUMNS = ["n", "column", "share", "rows", "plan", "p50_ms", "p95_ms", "recall",
                  "gather_ms", "gather_recall", "scan_ms", "scan_recall", "graph_ms",
                  "graph_recall"]


def write_markdown(report: dict, path: Path, argv: list[str] | None) -> None:
    """Two sections of docs/performance.md, replaced where they stand (``bench.markdown_merge``)."""
    import sys

    args = " ".join(sys.argv[1:] if argv is None else argv)
    where = (f"Measured {report['date']} on {report['cores']} cores ({report['machine']}; SIMD "
             f"{report['simd']}) by `python -m bench.filters {args}` (also run by `python -m "
             f"bench`), {report['model']} "
             f"vectors ({report['dim']}-d): real embeddings padded with jittered copies.")
    text = "\n".join([
        "## Filters at every selectivity",
        "",
        where + " Top-10, one query at a time, another filter value each query (nothing "
        "cached); `plan` is what the catalogue chose, then each plan forced. Recall@10 is "
        "against exact search among the filter's rows. `kind` is derived from the photos "
        "(like a colour or a type), so its rows near a query are not a fair sample.",
        "",
        table(report["filters"], FILTER_COLUMNS),
        "",
        "## Building a catalogue by add_embeddings",
        "",
        where + " `vs_smallest_graph`: items/s against the smallest size that has an HNSW "
        "graph (1.0 would be linear). Unfiltered queries on the same catalogue.",
        "",
        table(report["builds"], BUILD_COLUMNS),
        "",
    ])
    if path.exists():
        text = merge(path.read_text(), text)
    path.write_text(text)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.filters", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--quick", action="store_true", help="toy sizes, about a minute")
    p.add_argument("--batch", type=int, default=100_000, help="add_embeddings batch")
    p.add_argument("--queries", type=int, default=100, help="queries per filter column")
    p.add_argument("--photos", default=str(MYNTRA), help="real photos to embed")
    p.add_argument("--out", default="bench/results/filters.json")
    p.add_argument("--markdown", default=None,
                   help="also write its sections into this file (e.g. docs/performance.md), "
                        "keeping every other section")
    a = p.parse_args(argv)
    sizes = [2_000, 60_000] if a.quick else [int(s) for s in a.sizes.split(",")]
    if a.quick:
        a.queries = min(a.queries, 30)
    t_all = time.perf_counter()
    encoder = Encoder()
    real = embeddings(encoder, Path(a.photos), 300 if a.quick else 3000)
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count(),
                    "machine": platform.processor() or platform.machine(),
                    "simd": " ".join(cpu_flags()), "dim": encoder.dim, "model": encoder.info.name}
    print(f"{report['model']} ({encoder.dim}-d), {len(real)} real embeddings padded with "
          f"jittered copies; CPU SIMD: {report['simd']}")
    builds, filters = [], []
    for n in tqdm(sizes, desc="sizes"):
        built, rows = bench_size(n, real, encoder, a)
        builds.append(built)
        filters += rows
    graphs = [b for b in builds if b["engine"] == "hnsw"]
    for b in builds:
        b["vs_smallest_graph"] = (b["items_s"] / graphs[0]["items_s"]
                                  if graphs and b["engine"] == "hnsw" else None)
    report |= {"builds": builds, "filters": filters, "wall_s": time.perf_counter() - t_all}
    print("\n## Build by add_embeddings, and unfiltered queries")
    print(table(builds, BUILD_COLUMNS))
    print("\n## Filtered queries, top-10, another value each query (ms; recall@10 vs exact)")
    print(table(filters, FILTER_COLUMNS))
    if a.markdown:
        write_markdown(report, Path(a.markdown), argv)
    save_json(report, a.out)
    return report


if __name__ == "__main__":
    main()
