"""Search engines, end-to-end query latency, indexing throughput and footprint."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.timing import median_ms, percentiles_ms
from fai_infer import Catalog, Encoder
from fai_infer.catalog.sources import list_images
from fai_infer.index.search import HnswSearch, exact_top_k


def hnsw_memory_mb(n: int, dim: int, m: int) -> float:
    """An HNSW graph's resident size as hnswlib lays it out: vectors + level-0 links (2M) +
    label, plus upper levels (faiss's HNSW stores about the same; an estimate for it)."""
    level0 = dim * 4 + 2 * m * 4 + 4 + 8
    upper = (m * 4 + 4) / max(1, m - 1)
    return n * (level0 + upper) / 2**20


def engines(data: np.ndarray, queries: np.ndarray, efs=(16, 64, 200)
            ) -> tuple[list[dict], HnswSearch]:
    """Recall@10 against exact search, query time, build time and memory of each engine.
    Returns the rows and the hnswlib graph (so a catalogue of the same size can reuse it)."""
    truth = [set(exact_top_k(data, q, 10)[0]) for q in queries]
    n, dim = data.shape

    def recall(found: list) -> float:
        return sum(len(t & set(f)) for t, f in zip(truth, found)) / (10 * len(queries))

    rows = [{"engine": "exact numpy", "n": n, "recall@10": 1.0, "build_s": 0.0,
             "query_ms": median_ms(lambda: [exact_top_k(data, q, 10) for q in queries[:50]],
                                   repeats=3, warmup=1) / 50,
             "memory_mb": data.nbytes / 2**20}]
    t0 = time.perf_counter()
    index = HnswSearch(dim, n)
    index.add(np.arange(n), data)  # all cores
    build = time.perf_counter() - t0
    m = index.m
    for ef in efs:
        found = [index.query(q, 10, ef=ef)[0] for q in queries]
        ms = median_ms(lambda: [index.query(q, 10, ef=ef) for q in queries[:200]],
                       repeats=3, warmup=1) / 200
        rows.append({"engine": f"hnswlib M={m} ef={ef}", "n": n, "recall@10": recall(found),
                     "build_s": build, "query_ms": ms, "memory_mb": hnsw_memory_mb(n, dim, m)})
    rows += faiss_engines(data, queries, recall, efs, m)
    return rows, index


def faiss_engines(data: np.ndarray, queries: np.ndarray, recall, efs, m: int) -> list[dict]:
    """faiss (``pip install .[faiss]``): exact inner product and its own HNSW, same M."""
    n, dim = data.shape
    try:
        import faiss
    except ImportError:
        return [{"engine": "faiss", "n": n, "recall@10": "not installed"}]
    threads = faiss.omp_get_max_threads()
    flat = faiss.IndexFlatIP(dim)
    flat.add(data)
    faiss.omp_set_num_threads(1)  # one query at a time on one thread, as for hnswlib
    ms = median_ms(lambda: [flat.search(q[None], 10) for q in queries[:50]], 3, 1) / 50
    rows = [{"engine": "faiss flat", "n": n, "recall@10": 1.0, "build_s": 0.0,
             "query_ms": ms, "memory_mb": data.nbytes / 2**20}]
    faiss.omp_set_num_threads(threads)
    t0 = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 200
    hnsw.add(data)
    build = time.perf_counter() - t0
    faiss.omp_set_num_threads(1)
    for ef in efs:
        hnsw.hnsw.efSearch = ef
        found = [hnsw.search(q[None], 10)[1][0] for q in queries]
        ms = median_ms(lambda: [hnsw.search(q[None], 10) for q in queries[:200]], 3, 1) / 200
        rows.append({"engine": f"faiss HNSW M={m} ef={ef}", "n": n,
                     "recall@10": recall(found), "build_s": build, "query_ms": ms,
                     "memory_mb": hnsw_memory_mb(n, dim, m)})
    faiss.omp_set_num_threads(threads)
    return rows


def query_latency(cat: Catalog, photos: list[Path], repeats: int = 100) -> dict:
    """decode + preprocess + embed + top-10, one photo at a time, as a kiosk does."""
    total, embed, search = [], [], []
    for i in range(repeats):
        p = photos[i % len(photos)]
        t0 = time.perf_counter()
        v = cat.encoder.embed([p])[0]
        t1 = time.perf_counter()
        cat.similar_to_vector(v, 10)
        t2 = time.perf_counter()
        total.append(t2 - t0)
        embed.append(t1 - t0)
        search.append(t2 - t1)
    out = {f"total_{k}": v for k, v in percentiles_ms(total).items()}
    out |= {f"embed_{k}": v for k, v in percentiles_ms(embed).items()}
    out |= {f"search_{k}": v for k, v in percentiles_ms(search).items()}
    return out


def indexing_throughput(folder: Path, encoder: Encoder) -> dict:
    paths = [p for p in list_images(folder) if p.is_file()]  # what Catalog.build reads
    t0 = time.perf_counter()
    cat = Catalog.build(folder, encoder=encoder)
    full = len(paths) / (time.perf_counter() - t0)
    squares = np.stack([encoder.prepare(p) for p in paths[:512]])
    t0 = time.perf_counter()
    for i in range(0, len(squares), 32):
        encoder.embed_squares(squares[i : i + 32])
    enc_only = len(squares) / (time.perf_counter() - t0)
    return {"photos": len(cat), "index_img_s": full, "encoder_only_img_s": enc_only,
            "ratio": full / enc_only}


COLD = """
import resource, sys, time
t0 = time.perf_counter()
from fai_infer import Catalog
cat = Catalog.open(sys.argv[1])
hits = cat.similar(sys.argv[2], k=10)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(time.perf_counter() - t0, int(hwm) / 1024)  # ru_maxrss would inherit the parent's
"""


def cold_start(catalog: Path, photo: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", COLD, str(catalog), str(photo)],
                         capture_output=True, text=True, check=True).stdout.split()
    return {"cold_first_result_s": float(out[0]), "rss_mb": float(out[1])}


# Each runtime dependency and the folder of shared libraries its wheel bundles beside it.
RUNTIME_PACKAGES = {"numpy": "numpy.libs", "onnxruntime": None,
                    "cv2": "opencv_python_headless.libs", "hnswlib": None, "fai_infer": None}


def _tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def tree_mb(path: Path) -> float:
    return _tree_bytes(path) / 2**20


def runtime_install_mb() -> float:
    """On-disk size of the runtime's own dependencies (what a kiosk installs)."""
    import importlib.util

    total = 0
    for mod, bundled in RUNTIME_PACKAGES.items():
        origin = Path(importlib.util.find_spec(mod).origin)
        root = origin.parent if origin.name == "__init__.py" else origin
        total += _tree_bytes(root)
        if bundled and (root.parent / bundled).is_dir():
            total += _tree_bytes(root.parent / bundled)
    return total / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
