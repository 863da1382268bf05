"""python -m bench.store: the catalogue as a live shared store on disk (issue 14).

Per catalogue size N, on a catalogue stored in a temporary folder (removed afterwards), with
vectors like the real ones (embeddings of real photos by the shipped model, padded to N with
jittered copies, ``export.synthetic.scale_embeddings``) and two metadata columns (``brand``: 40
values, so ``brand=X`` keeps 2.5% of the items; ``price``: integers 0-999, so ``price<25``
keeps 2.5% too):

- build: ``add_embeddings`` in batches in memory (items/s shows how far from linear it is),
  then ``save`` (the first base), ``open`` (checksums + load), and at the end ``compact``
  (fold the deltas of the steps below into a new base);
- changes on the opened catalogue, each committed to disk as one delta (fsynced): add one
  item, remove one, update one item's metadata; and ``refresh()`` in a second opened instance
  picking up each added item's delta;
- queries (top-10) in that second instance: unfiltered, ``brand=X`` (2.5%), ``price<25``
  (2.5%, a range), with recall@10 of the filtered ones against exact search of the filter;
  the filtered query is also timed through each engine of the index, forced (exact gather,
  HNSW with the filter as a callback), with the HNSW recall;
- concurrency at one size: W writer processes x A single-item adds each while R reader
  processes (``live=True``) query, every process opening the catalogue itself; then lost
  updates (ids missing from a fresh open) and failed reads (exceptions or fewer than 10 hits).

Medians and p95 of single operations, one at a time (this machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import platform
import resource
import shutil
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.filters import PLANS, forced, restore
from bench.timing import save_json, table
from export.synthetic import generated_squares, scale_embeddings
from fai_infer import Catalog, Encoder
from fai_infer.index.filters import parse_where
from fai_infer.index.search import exact_top_k

MYNTRA = Path("../shared/data/myntra/images")
BRANDS = [f"brand{i:02d}" for i in range(40)]
FILTER = "brand=brand07"  # 1 of 40 values: 2.5%
RANGE = "price<25"  # prices 0..999: 2.5%
TARGETS = {"add_p50_ms": 20.0, "remove_p50_ms": 10.0, "filter_p50_ms": 2.0}
K = 10


# -- data ----------------------------------------------------------------------------------------
def real_embeddings(encoder: Encoder, folder: Path, n: int, tmp: Path) -> np.ndarray:
    """Embeddings of up to n real photos (generated 'product photos' when there are none)."""
    photos = sorted(folder.glob("*.jpg"))[:n] if folder.is_dir() else []
    if not photos:
        return encoder.embed(list(generated_squares(160, min(n, 300), seed=5)), batch_size=64)
    return encoder.embed(photos, batch_size=64)


def jittered(emb: np.ndarray, n: int, rng: np.random.Generator, sigma: float = 0.03
             ) -> np.ndarray:
    """n new unit vectors near random catalogue rows (a new product / a shopper's photo)."""
    v = emb[rng.integers(0, len(emb), n)] + rng.normal(0, sigma, (n, emb.shape[1]))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def meta_rows(start: int, stop: int, seed: int = 0) -> list[dict[str, str]]:
    rng = np.random.default_rng(seed + start)
    brands = rng.integers(0, len(BRANDS), stop - start)
    prices = rng.integers(0, 1000, stop - start)
    return [{"brand": BRANDS[b], "price": str(p)} for b, p in zip(brands, prices)]


# -- helpers -------------------------------------------------------------------------------------
def stats_ms(samples_s: list[float], prefix: str, with_max: bool = False) -> dict[str, float]:
    a = 1000 * np.asarray(samples_s, dtype=np.float64)
    out = {f"{prefix}_p50_ms": float(np.median(a)), f"{prefix}_p95_ms": float(np.percentile(a, 95))}
    if with_max:
        out[f"{prefix}_max_ms"] = float(a.max())
    return out


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def tree_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fsync_ms(folder: Path, repeats: int = 30) -> float:
    """What one durable small write costs on this disk (a delta commit does two fsyncs)."""
    times = []
    for i in range(repeats):
        path = folder / f".fsync-probe-{i}"
        t0 = time.perf_counter()
        with open(path, "wb") as fh:
            fh.write(b"x" * 1500)
            fh.flush()
            os.fsync(fh.fileno())
        times.append(time.perf_counter() - t0)
        path.unlink()
    return 1000 * float(np.median(times))


def filtered_recall(cat: Catalog, queries: np.ndarray, where: str) -> float:
    """recall@10 of the catalogue's filtered search against exact search among the matches."""
    mask = cat.table.mask(parse_where(where)) & cat.index.alive
    rows = np.flatnonzero(mask)
    found = 0
    for q in queries:
        truth = {cat._ids[r] for r in exact_top_k(cat.index.vectors, q, K, rows)[0]}
        found += len(truth & {h.id for h in cat.similar_to_vector(q, K, where=where)})
    return found / (K * len(queries))


def query_times(cat: Catalog, queries: np.ndarray, where=None) -> list[float]:
    times = []
    for i, q in enumerate(queries):
        w = where(i) if callable(where) else where
        t0 = time.perf_counter()
        hits = cat.similar_to_vector(q, K, where=w)
        times.append(time.perf_counter() - t0)
        assert len(hits) == K, (w, len(hits))
    return times


def forced_engines(cat: Catalog, queries: np.ndarray, where) -> dict[str, float]:
    """The filtered queries through each plan of the index, forced (``bench.filters``):
    gather, scan and graph, with their recall@10 against exact search of the filter."""
    idx, out = cat.index, {}
    chosen = [cat.table.select(parse_where(where(i)), idx.alive) for i in range(len(queries))]
    truth = [set(exact_top_k(idx.vectors, q, K, c.as_rows())[0].tolist())
             for q, c in zip(queries, chosen)]
    for plan in PLANS:
        saved = forced(idx, plan)
        try:
            times, found = [], 0
            for q, c, t in zip(queries, chosen, truth):
                t0 = time.perf_counter()
                rows = idx.search(q, K, c)[0]
                times.append(time.perf_counter() - t0)
                found += len(t & set(rows.tolist()))
        finally:
            restore(idx, saved)
        out |= stats_ms(times, f"filter_{plan}")
        out[f"filter_{plan}_recall"] = found / (K * len(queries))
    return out


# -- one size ------------------------------------------------------------------------------------
def bench_size(n: int, real: np.ndarray, encoder: Encoder, tmp: Path, a) -> tuple[dict, Path]:
    rng = np.random.default_rng(n)
    emb = scale_embeddings(real, n)
    ops, nq = (20, 40) if a.quick else (a.ops, a.queries)
    new_vecs = jittered(emb, ops, rng)
    queries = jittered(emb, nq, rng)
    row: dict = {"n": n}

    cat = Catalog(encoder)
    build = 0.0
    for start in tqdm(range(0, n, a.batch), desc=f"build {n:,}", unit="batch", leave=False):
        stop = min(n, start + a.batch)
        ids, rows = [f"i{j}" for j in range(start, stop)], meta_rows(start, stop)
        build += timed(lambda: cat.add_embeddings(ids, emb[start:stop], metadata=rows))
    row |= {"engine": cat.engine, "build_s": build, "build_items_s": n / build}
    del emb
    root = tmp / f"catalog-{n}"
    row["save_s"] = timed(lambda: cat.save(root))
    row["on_disk_mb"] = tree_mb(root)
    del cat
    gc.collect()

    t0 = time.perf_counter()
    writer = Catalog.open(root, encoder=encoder)
    row["open_s"] = time.perf_counter() - t0
    reader = Catalog.open(root, encoder=encoder)

    adds, refreshes, removes, updates = [], [], [], []
    base_ids = rng.choice(n, 2 * ops, replace=False)
    for i in tqdm(range(ops), desc=f"changes {n:,}", leave=False):
        row_meta = meta_rows(n + i, n + i + 1)
        adds.append(timed(lambda: writer.add_embeddings([f"new{i}"], new_vecs[i],
                                                        metadata=row_meta)))
        t0 = time.perf_counter()
        changed = reader.refresh()
        refreshes.append(time.perf_counter() - t0)
        assert changed and f"new{i}" in reader
        removes.append(timed(lambda: writer.remove([f"i{base_ids[i]}"])))
        item = f"i{base_ids[ops + i]}"
        updates.append(timed(lambda: writer.update_metadata(
            [item], [{"brand": BRANDS[i % len(BRANDS)]}])))
    reader.refresh()
    assert len(reader) == len(writer) == n
    row |= stats_ms(adds, "add", True) | stats_ms(removes, "remove") | stats_ms(updates, "update")
    row |= stats_ms(refreshes, "refresh", True)

    # Queries in the reader; the first filter on a column builds its posting list.
    brand = lambda i: f"brand=brand{i % len(BRANDS):02d}"  # noqa: E731
    query_times(reader, queries[:len(BRANDS)], brand)
    query_times(reader, queries[:5], RANGE)
    row |= stats_ms(query_times(reader, queries), "query")
    row |= stats_ms(query_times(reader, queries, brand), "filter")  # another value each time
    row |= stats_ms(query_times(reader, queries, FILTER), "filter_repeat")  # one, cached rows
    row |= stats_ms(query_times(reader, queries, RANGE), "range")
    reader.live = True
    row |= stats_ms(query_times(reader, queries), "live_query")
    reader.live = False
    if reader.engine == "hnsw":
        row |= forced_engines(reader, queries, brand)
    sample = queries[:min(len(queries), 50)]
    row["filter_recall"] = filtered_recall(reader, sample, FILTER)
    row["range_recall"] = filtered_recall(reader, sample, RANGE)

    row["compact_s"] = timed(writer.compact)
    row["refresh_after_compact_s"] = timed(reader.refresh)
    row |= stats_ms(query_times(reader, queries, brand), "filter_after_compact")
    row["rss_mb"] = rss_mb()
    del writer, reader
    gc.collect()
    return row, root


# -- concurrency ---------------------------------------------------------------------------------
def _writer(root: str, wid: int, adds: int, vec_file: str, ready, start, results) -> None:
    try:
        t0 = time.perf_counter()
        cat = Catalog.open(root)
        vecs = np.load(vec_file)[wid * adds:(wid + 1) * adds]
        ready.put(time.perf_counter() - t0)
        start.wait()
        times, errors, refused = [], [], []
        for i in range(adds):
            t0 = time.perf_counter()
            try:
                cat.add_embeddings([f"w{wid}-{i}"], vecs[i],
                                   metadata=[{"brand": BRANDS[i % len(BRANDS)], "price": "1"}])
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(exc).__name__}: {exc}")
                refused.append(f"w{wid}-{i}")
            times.append(time.perf_counter() - t0)
        results.put({"kind": "writer", "times": times, "errors": errors, "refused": refused,
                     "end": time.monotonic()})
    except Exception:  # noqa: BLE001
        ready.put(-1.0)
        results.put({"kind": "writer", "times": [], "errors": [traceback.format_exc()],
                     "refused": [f"w{wid}-{i}" for i in range(adds)], "end": time.monotonic()})


def _reader(root: str, rid: int, query_file: str, ready, start, stop, results) -> None:
    try:
        t0 = time.perf_counter()
        cat = Catalog.open(root, live=True)
        queries = np.load(query_file)
        ready.put(time.perf_counter() - t0)
        start.wait()
        times, errors, short, i = [], [], 0, 0
        while not stop.is_set():
            where = FILTER if i % 2 else None
            t0 = time.perf_counter()
            try:
                hits = cat.similar_to_vector(queries[(rid * 7919 + i) % len(queries)], K,
                                             where=where)
                short += len(hits) < K
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(exc).__name__}: {exc}")
            times.append(time.perf_counter() - t0)
            i += 1
        cat.refresh()
        results.put({"kind": "reader", "times": times, "errors": errors, "short": short,
                     "seen": len(cat)})
    except Exception:  # noqa: BLE001
        ready.put(-1.0)
        results.put({"kind": "reader", "times": [], "errors": [traceback.format_exc()],
                     "short": 0, "seen": -1})


def concurrency(root: Path, n: int, real: np.ndarray, writers: int, adds: int, readers: int,
                tmp: Path) -> dict:
    rng = np.random.default_rng(7)
    vec_file, query_file = tmp / "writer-vectors.npy", tmp / "reader-queries.npy"
    np.save(vec_file, jittered(real, writers * adds, rng))
    np.save(query_file, jittered(real, 1000, rng))
    before = Catalog.open(root)
    before_ids, gen_before = set(before.ids), before._gen
    del before
    ctx = mp.get_context("spawn")
    ready, results, start, stop = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Event()
    procs = [ctx.Process(target=_writer, args=(str(root), w, adds, str(vec_file), ready, start,
                                               results)) for w in range(writers)]
    procs += [ctx.Process(target=_reader, args=(str(root), r, str(query_file), ready, start,
                                                stop, results)) for r in range(readers)]
    for p in procs:
        p.start()
    opens = [ready.get(timeout=600) for _ in procs]
    t_start = time.monotonic()
    start.set()
    out = []
    bar = tqdm(total=writers, desc=f"{writers} writers x {adds} adds", leave=False)
    while sum(r["kind"] == "writer" for r in out) < writers:
        out.append(results.get(timeout=1800))
        bar.update(out[-1]["kind"] == "writer")
    bar.close()
    t_writers = max(r["end"] for r in out if r["kind"] == "writer")
    stop.set()
    t_stop = time.monotonic()
    while len(out) < len(procs):
        out.append(results.get(timeout=600))
    for p in procs:
        p.join(timeout=60)

    after = Catalog.open(root)
    expected = {f"w{w}-{i}" for w in range(writers) for i in range(adds)}
    refused = {i for r in out if r["kind"] == "writer" for i in r["refused"]}
    missing = expected - set(after.ids)
    lost = len(missing - refused)  # acknowledged adds that are gone: must be 0
    wrongly_kept = len(refused - missing)  # adds that raised yet landed: must be 0
    changed_base = len(before_ids - set(after.ids))
    wrote = [r for r in out if r["kind"] == "writer"]
    read = [r for r in out if r["kind"] == "reader"]
    add_times = [t for r in wrote for t in r["times"]]
    q_times = [t for r in read for t in r["times"]]
    errors = [e for r in out for e in r["errors"]]
    row = {"n": n, "writers": writers, "adds_each": adds, "readers": readers,
           "open_max_s": max(opens), "lost": lost, "base_items_lost": changed_base,
           "count_ok": len(after) == len(before_ids) + writers * adds - len(refused),
           "failed_writes": len(refused), "failed_but_kept": wrongly_kept,
           "failed_reads": sum(len(r["errors"]) + r["short"] for r in read),
           "readers_saw_all": all(r["seen"] == len(after) for r in read),
           "adds_s": writers * adds / (t_writers - t_start),
           "queries": len(q_times), "queries_s": len(q_times) / (t_stop - t_start),
           "wall_s": t_stop - t_start,
           "compactions": int(after._gen.split("-")[1]) - int(gen_before.split("-")[1]),
           **stats_ms(add_times or [0.0], "add", True), **stats_ms(q_times or [0.0], "query",
                                                               True)}
    if errors:
        row["first_error"] = errors[0][-300:]
    return row


def pick_concurrency_n(sizes: list[int], dim: int, processes: int, budget_gb: float) -> int:
    """The largest size whose catalogue fits ``processes`` times in ``budget_gb``: each process
    holds the vectors (plus a transient copy while opening), the HNSW graph and ids."""
    per_item = dim * 4 * 2 + dim * 4 + 2 * 32 * 4 + 200
    fits = [n for n in sizes if processes * (n * per_item + 250 * 2**20) <= budget_gb * 2**30]
    return max(fits) if fits else min(sizes)


# -- report --------------------------------------------------------------------------------------
BUILD_COLUMNS = ["n", "engine", "build_s", "build_items_s", "save_s", "open_s", "compact_s",
                 "refresh_after_compact_s", "on_disk_mb", "rss_mb"]
CHANGE_COLUMNS = ["n", "add_p50_ms", "add_p95_ms", "add_max_ms", "remove_p50_ms",
                  "remove_p95_ms", "update_p50_ms", "update_p95_ms", "refresh_p50_ms",
                  "refresh_p95_ms", "refresh_max_ms"]
QUERY_COLUMNS = ["n", "query_p50_ms", "query_p95_ms", "live_query_p50_ms", "filter_p50_ms",
                 "filter_p95_ms", "filter_repeat_p50_ms", "filter_repeat_p95_ms", "filter_recall",
                 "filter_gather_p50_ms", "filter_scan_p50_ms", "filter_scan_recall",
                 "filter_graph_p50_ms", "filter_graph_recall",
                 "filter_after_compact_p50_ms", "range_p50_ms", "range_p95_ms", "range_recall"]
CONCURRENCY_COLUMNS = ["n", "writers", "adds_each", "readers", "lost", "base_items_lost",
                       "count_ok", "failed_writes", "failed_but_kept", "failed_reads", "readers_saw_all", "adds_s",
                       "queries_s", "add_p50_ms", "add_p95_ms", "query_p50_ms", "query_p95_ms",
                       "query_max_ms", "compactions", "wall_s"]


def goals(rows: list[dict], conc: dict | None, encode_ms: float) -> list[dict]:
    r = max(rows, key=lambda x: x["n"])
    out = [("add one item (+ encoding)", "<= 20 ms", r["add_p50_ms"],
            f"{r['add_p50_ms']:.3g} ms p50, {r['add_p95_ms']:.3g} p95 (+ {encode_ms:.3g} ms "
            f"to encode a photo)", r["add_p50_ms"] <= 20),
           ("remove one item", "<= 10 ms", r["remove_p50_ms"],
            f"{r['remove_p50_ms']:.3g} ms p50, {r['remove_p95_ms']:.3g} p95",
            r["remove_p50_ms"] <= 10),
           ("2.5% filter query, another value each query", "<= 2 ms", r["filter_p50_ms"],
            f"{r['filter_p50_ms']:.3g} ms p50, {r['filter_p95_ms']:.3g} p95, recall@10 "
            f"{r['filter_recall']:.3g}", r["filter_p50_ms"] <= 2),
           ("2.5% filter query, the same filter again", "<= 2 ms", r["filter_repeat_p50_ms"],
            f"{r['filter_repeat_p50_ms']:.3g} ms p50, {r['filter_repeat_p95_ms']:.3g} p95",
            r["filter_repeat_p50_ms"] <= 2)]
    graph = [x for x in rows if x["engine"] == "hnsw"]  # below EXACT_BELOW there is no graph
    if len(graph) > 1:
        lo, hi = min(graph, key=lambda x: x["n"]), max(graph, key=lambda x: x["n"])
        ratio = hi["build_items_s"] / lo["build_items_s"]
        out.append(("build time linear in N", "items/s flat", ratio,
                    f"items/s at {hi['n']:,} = {ratio:.2f} x at {lo['n']:,} (HNSW sizes)",
                    ratio >= 0.8))
    if conc:
        out.append((f"{conc['writers']} writers x {conc['adds_each']} adds, {conc['readers']} "
                    f"readers", "0 lost, 0 failed", 0,
                    f"{conc['lost']} lost, {conc['failed_writes']} adds refused (lock "
                    f"timeout), {conc['failed_reads']} failed reads at "
                    f"{conc['n']:,}; {conc['adds_s']:.3g} adds/s, {conc['queries_s']:.3g} "
                    f"queries/s", conc["lost"] == 0 and conc["failed_reads"] == 0
                    and conc["failed_writes"] == 0))
    return [{"goal": g, "n": r["n"], "target": t, "measured": m, "met": "yes" if ok else "no"}
            for g, t, _, m, ok in out]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--dim", type=int, default=None,
                   help="vector size; must be the shipped model's (the default)")
    p.add_argument("--quick", action="store_true", help="toy sizes, well under a minute")
    p.add_argument("--batch", type=int, default=10_000, help="add_embeddings batch for builds")
    p.add_argument("--ops", type=int, default=100, help="single adds/removes/updates per size")
    p.add_argument("--queries", type=int, default=200, help="queries per kind")
    p.add_argument("--writers", type=int, default=8)
    p.add_argument("--adds", type=int, default=200, help="single-item adds per writer")
    p.add_argument("--readers", type=int, default=4)
    p.add_argument("--concurrency-n", type=int, default=None,
                   help="size for the concurrency run (default: the largest that fits "
                        "writers + readers times in --memory-gb)")
    p.add_argument("--memory-gb", type=float, default=10.0)
    p.add_argument("--photos", default=str(MYNTRA), help="real photos to embed")
    p.add_argument("--out", default="bench/results/store.json")
    a = p.parse_args(argv)
    t_all = time.perf_counter()
    sizes = [3_000, 25_000] if a.quick else [int(s) for s in a.sizes.split(",")]
    if a.quick:
        a.writers, a.adds, a.readers, a.batch = 3, 15, 2, 5_000
    tmp = Path(tempfile.mkdtemp(prefix="fai-store-bench-"))
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count(),
                    "machine": platform.processor() or platform.machine(), "quick": a.quick}
    try:
        encoder = Encoder()
        real = real_embeddings(encoder, Path(a.photos), 300 if a.quick else 3000, tmp)
        dim = encoder.dim
        if a.dim and a.dim != dim:
            raise SystemExit(f"--dim {a.dim}: a catalogue holds its model's vectors; the "
                             f"shipped model makes {dim}-d ones")
        report |= {"dim": dim, "model": encoder.info.name, "real_photos": len(real),
                   "fsync_ms": fsync_ms(tmp)}
        photo = next(iter(sorted(Path(a.photos).glob("*.jpg"))), None) if Path(
            a.photos).is_dir() else None
        sample = photo if photo is not None else generated_squares(160, 1, seed=3)[0]
        encoder.embed([sample])
        report["encode_one_ms"] = 1000 * float(np.median(
            [timed(lambda: encoder.embed([sample])) for _ in range(20)]))
        print(f"{report['model']} ({dim}-d), {len(real)} real embeddings padded with jittered "
              f"copies; fsync of a small file: {report['fsync_ms']:.2g} ms; encoding one "
              f"photo: {report['encode_one_ms']:.2g} ms")
        conc_n = a.concurrency_n or pick_concurrency_n(sizes, dim, a.writers + a.readers,
                                                       a.memory_gb)
        report["concurrency_n_reason"] = (
            "given" if a.concurrency_n else
            f"largest size whose catalogue fits {a.writers + a.readers} processes in "
            f"{a.memory_gb:g} GB")
        rows, conc = [], None
        for n in tqdm(sizes, desc="sizes"):
            t0 = time.perf_counter()
            row, root = bench_size(n, real, encoder, tmp, a)
            row["size_wall_s"] = time.perf_counter() - t0
            rows.append(row)
            print(f"\n{n:,}: done in {row['size_wall_s']:.0f} s", flush=True)
            if n == conc_n:
                conc = concurrency(root, n, real, a.writers, a.adds, a.readers, tmp)
            shutil.rmtree(root, ignore_errors=True)
        report |= {"sizes": rows, "concurrency": conc,
                   "goals": goals(rows, conc, report["encode_one_ms"]),
                   "wall_s": time.perf_counter() - t_all, "peak_rss_mb": rss_mb()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n## Build, save, open, compact (s)")
    print(table(rows, BUILD_COLUMNS))
    print("\n## Changes committed to disk, one item each (ms)")
    print(table(rows, CHANGE_COLUMNS))
    print("\n## Queries, top-10, one at a time (ms)")
    print(table(rows, QUERY_COLUMNS))
    if conc:
        print(f"\n## Concurrency ({report['concurrency_n_reason']}: {conc_n:,})")
        print(table([conc], CONCURRENCY_COLUMNS))
        if conc.get("first_error"):
            print(f"first error: {conc['first_error']}")
    print("\n## Goals (issue 14)")
    print(table(report["goals"], ["goal", "n", "target", "measured", "met"]))
    print(f"\nwall time {report['wall_s'] / 60:.1f} min, peak RSS of this process "
          f"{report['peak_rss_mb']:.0f} MB")
    save_json(report, a.out)
    return report


if __name__ == "__main__":
    main()
