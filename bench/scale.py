"""python -m bench.scale: Ray indexing against the local indexer; a Milvus server (and, with
--lite, Milvus Lite) against hnswlib.

Both comparisons run in the same run on the same inputs (this machine is shared and noisy: read
ratios, not absolute figures). The Milvus server is the 2.3 standalone of the scale extra,
started here on 127.0.0.1 by fai_infer.harness.milvus_server (or --milvus-uri names one). Needs the
scale extra (pip install -e '.[scale]'). ``--quick`` runs toy sizes in a few minutes. The JSON is
rewritten after every measured row, so a run stopped by a time limit keeps what it measured.
``--cluster`` adds the real-cluster rows (bench/ray_cluster.py): 1 and 2 ``ray start`` nodes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from bench.photos import MYNTRA, sample_photos
from bench.timing import cpu_name, table
from export.synthetic import scale_embeddings
from fai_infer import Catalog, Encoder
from fai_infer.index.search import HnswSearch, exact_top_k

RAY_COLUMNS = ["indexer", "workers", "photos", "seconds", "photos_per_s", "per_core_per_s"]
SEARCH_COLUMNS = ["engine", "n", "build_s", "insert_s", "index_s", "recall@10", "p50_ms",
                  "p99_ms", "filtered_p50_ms"]
SERVER_VERSION = "2.3.5"


def ray_rows(photos: list[Path], tmp: Path, encoder: Encoder, workers: list[int]) -> list[dict]:
    """Photos/s of the local indexer (both cores) and of --ray with 1 and 2 actors."""
    from fai_infer.scale.ray_index import index_with_ray, ray_session

    folder = tmp / "ray-photos"
    folder.mkdir()
    for p in photos:
        (folder / p.name).symlink_to(p.resolve())
    rows = []
    t0 = time.perf_counter()
    local = Catalog.build(folder, encoder=encoder)
    s = time.perf_counter() - t0
    rows.append({"indexer": "local (threads)", "workers": "-", "photos": len(photos),
                 "seconds": s, "photos_per_s": len(photos) / s,
                 "per_core_per_s": len(photos) / s / (os.cpu_count() or 1)})
    with ray_session(None, num_cpus=max(workers)):
        index_with_ray(folder, encoder=encoder, workers=1, batch_size=64)  # warm up Ray
        for n in workers:
            t0 = time.perf_counter()
            cat = index_with_ray(folder, encoder=encoder, workers=n, batch_size=64)
            s = time.perf_counter() - t0
            assert len(cat) == len(local)
            rows.append({"indexer": "ray", "workers": n, "photos": len(photos), "seconds": s,
                         "photos_per_s": len(photos) / s, "per_core_per_s": len(photos) / s / n})
            print(table(rows[-1:], RAY_COLUMNS), flush=True)
    return rows


def search_rows(real: np.ndarray, n: int, encoder: Encoder, tmp: Path, queries: int,
                server_uri: str | None = None, lite: bool = False,
                report: Callable[[dict], None] = lambda row: None) -> list[dict]:
    """hnswlib (the kiosk engine), a Milvus server and (optionally) Milvus Lite on the same n
    vectors and queries; ``report`` gets each row as soon as it is measured."""
    emb = scale_embeddings(real, n)
    rng = np.random.default_rng(1)
    qs = emb[rng.integers(0, n, queries)]
    truth = [set(exact_top_k(emb, q, 10)[0]) for q in qs]
    rows = [{"i": i % 4, "kind": ["top", "shoe", "bag", "dress"][i % 4]} for i in range(n)]

    def recall(found: list[set]) -> float:
        return sum(len(t & f) for t, f in zip(truth, found)) / (10 * len(qs))

    # Milvus first: at 1M on 2 cores a run may meet its time limit during hnswlib's build
    cat = Catalog(encoder, exact_below=n + 1)  # exact: no index built that nobody queries
    cat.add_embeddings([f"i{i}" for i in range(n)], emb, None, rows)
    targets = []
    if server_uri:
        targets.append((f"Milvus {SERVER_VERSION} server HNSW M=32 (gRPC, 127.0.0.1)",
                        server_uri))
    if lite:
        targets.append(("Milvus Lite HNSW M=32 (gRPC, local)", str(tmp / f"bench-{n}.db")))
    out = []
    for label, uri in targets:
        out.append(milvus_row(label, uri, cat, qs, recall, encoder))
        print(table(out[-1:], SEARCH_COLUMNS), flush=True)
        report(out[-1])
    del cat
    t0 = time.perf_counter()
    hnsw = HnswSearch(emb.shape[1], n)
    hnsw.add(np.arange(n), emb)
    build = time.perf_counter() - t0
    lat, found = [], []
    for q in qs:
        t = time.perf_counter()
        labels, _ = hnsw.query(q, 10)
        lat.append(time.perf_counter() - t)
        found.append(set(labels.tolist()))
    out.insert(0, {"engine": "hnswlib M=32 (in process)", "n": n, "build_s": build,
                   "recall@10": recall(found), "p50_ms": 1000 * np.median(lat),
                   "p99_ms": 1000 * np.percentile(lat, 99)})
    print(table(out[:1], SEARCH_COLUMNS), flush=True)
    report(out[0])
    del hnsw
    return out


def milvus_row(label: str, uri: str, cat: Catalog, qs: np.ndarray, recall, encoder: Encoder
               ) -> dict:
    """Push the catalogue (insert + flush + HNSW + load), then time single queries."""
    from fai_infer.scale.milvus_catalog import MilvusCatalog, push

    n = len(cat)
    pushed = push(cat, uri, f"bench_{n}", batch=5000, progress=True)
    mc = MilvusCatalog(uri, f"bench_{n}", encoder)
    for q in qs[:10]:
        mc.similar_to_vector(q, k=10)  # warm up: the first queries load caches
    lat, found = [], []
    for q in qs:
        t = time.perf_counter()
        hits = mc.similar_to_vector(q, k=10)
        lat.append(time.perf_counter() - t)
        found.append({int(h.id[1:]) for h in hits})
    flat = []
    for q in qs[: max(5, len(qs) // 4)]:
        t = time.perf_counter()
        mc.similar_to_vector(q, k=10, where={"kind": "shoe"})
        flat.append(time.perf_counter() - t)
    row = {"engine": label, "n": n, "build_s": pushed["seconds"],
           "insert_s": pushed["insert_s"], "index_s": pushed["index_s"],
           "inserts_per_s": n / max(pushed["insert_s"], 1e-9), "recall@10": recall(found),
           "p50_ms": 1000 * np.median(lat), "p99_ms": 1000 * np.percentile(lat, 99),
           "filtered_p50_ms": 1000 * np.median(flat)}
    mc.client.drop_alias(f"bench_{n}")
    mc.client.drop_collection(pushed["physical"])
    mc.close()
    if uri.endswith(".db"):
        shutil.rmtree(uri, ignore_errors=True)
    return row


@contextlib.contextmanager
def milvus_server(tmp: Path, uri: str | None) -> Iterator[str | None]:
    """The server to measure: ``uri`` if given, else one started here (loopback only) and
    stopped at the end; None when the milvus package is not installed."""
    if uri:
        yield uri
        return
    from fai_infer.harness.milvus_server import ServerError, free_port, package_bin, running_server

    try:
        package_bin()
    except ServerError as exc:
        print(f"skipping the Milvus server: {exc}", flush=True)
        yield None
        return
    with running_server(tmp / "milvus-data", free_port()) as started:
        yield started


def sizing(ray: list[dict], search: list[dict], dim: int) -> list[dict]:
    """Cores and memory at 10M and 100M items from the measured per-core rate and the bytes an
    item takes (vector + HNSW links, as in bench.search_speed.hnsw_memory_mb)."""
    per_core = max(r["per_core_per_s"] for r in ray if r["indexer"] == "ray")
    vector_bytes = 4 * dim
    graph_bytes = 2 * 32 * 4 + 12  # level-0 links at M=32, label
    item = vector_bytes + graph_bytes + 300  # + id, path and a few metadata fields
    out = []
    for n in (10_000_000, 100_000_000):
        out.append({"items": f"{n:,}", "photos_per_core_per_s": per_core,
                    "core_hours_to_embed": n / per_core / 3600,
                    "hours_on_64_cores": n / per_core / 64 / 3600,
                    "bytes_per_item": item, "index_memory_gb": n * item / 1e9})
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="toy sizes, about a minute")
    p.add_argument("--photos", default=str(MYNTRA), help="folder of real photos")
    p.add_argument("--n-photos", type=int, default=5000)
    p.add_argument("--sizes", default="100000,1000000", help="collection sizes (vectors)")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--skip-ray", action="store_true")
    p.add_argument("--skip-search", action="store_true", help="no Milvus/hnswlib rows")
    p.add_argument("--cluster", action="store_true",
                   help="also index on a real local Ray cluster of 1 and 2 nodes (1 CPU each)")
    p.add_argument("--no-server", action="store_true", help="do not measure a Milvus server")
    p.add_argument("--milvus-uri", default=None, metavar="URI",
                   help="measure this Milvus server instead of starting one on 127.0.0.1")
    p.add_argument("--lite", action="store_true", help="also measure Milvus Lite (slow past 100k)")
    p.add_argument("--name", "--json", dest="name", default="scale.json",
                   help="file name of the JSON under --out")
    p.add_argument("--out", default="bench/results")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="fai-bench-scale-"))
    encoder = Encoder()
    n_photos = 200 if a.quick else a.n_photos
    photos = sample_photos(Path(a.photos), n_photos, tmp / "photos")
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count(),
                    "cpu": cpu_name(), "command": "python -m bench.scale " + " ".join(
                        argv if argv is not None else sys.argv[1:]),
                    "model": encoder.info.name, "model_file": str(encoder.path),
                    "photos": len(photos)}
    path = out / a.name

    def save() -> None:
        path.write_text(json.dumps(report, indent=2))

    try:
        if not a.skip_ray:
            report["ray"] = ray_rows(photos, tmp, encoder, [1, 2])
            print(table(report["ray"], RAY_COLUMNS))
            save()
        if a.cluster:
            from bench.ray_cluster import COLUMNS, cluster_rows, projection

            folder = tmp / "cluster-photos"
            folder.mkdir()
            for p in photos:
                (folder / p.name).symlink_to(p.resolve())
            report["cluster"] = cluster_rows(folder, tmp, [1, 2])
            print(table(report["cluster"], COLUMNS))
            report["cluster_projection"] = projection(report["cluster"])
            print(table(report["cluster_projection"], list(report["cluster_projection"][0])))
            save()
        if not a.skip_search:
            real = encoder.embed(photos[:3000], batch_size=64)
            sizes = [2000] if a.quick else [int(s) for s in a.sizes.split(",")]
            report["search"] = []
            with milvus_server(tmp, None if a.no_server else a.milvus_uri) as uri:
                if a.no_server:
                    uri = None
                report["server"] = uri and {"version": SERVER_VERSION, "uri": uri}
                for n in sizes:
                    print(f"-- {n:,} vectors", flush=True)
                    search_rows(real, n, encoder, tmp, 20 if a.quick else a.queries, uri,
                                a.lite, lambda row: (report["search"].append(row), save()))
            print(table(report["search"], SEARCH_COLUMNS))
        if report.get("ray") and report.get("search"):
            report["sizing"] = sizing(report["ray"], report["search"], encoder.dim)
            print(table(report["sizing"], list(report["sizing"][0])))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        save()
    print(f"written {path}")
    return report


if __name__ == "__main__":
    main()
