"""``python -m bench.scale --cluster``: ``fai index --ray`` on a real Ray cluster of 1 and 2
nodes (``ray start``, one CPU each) against the local indexer on the same photos.

Why these rows: the per-node rate and the overhead per photo are what a 10M/100M projection
needs; the speed-up from 1 to 2 nodes shows whether adding a node adds its rate. Each job runs
``fai index`` as its own process joining the cluster, as an operator would; ``seconds`` is the
command's own (listing, Ray job, shards, catalogue; not Python's start nor the save). On one
machine the nodes share its cores (and the driver's): the figures say so.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from bench.timing import table
from fai_infer import Catalog, Encoder
from fai_infer.harness.local_cluster import LocalCluster

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["indexer", "nodes", "photos", "seconds", "photos_per_s", "per_node_per_s",
           "marginal_per_node_per_s", "fixed_s", "busy_per_node_per_s",
           "overhead_ms_per_photo", "speedup", "marginal_speedup"]


def local_row(folder: Path, encoder_threads: int, decode_threads: int, label: str) -> dict:
    """The local indexer (``Catalog.build``) on the folder, timed in process."""
    encoder = Encoder(threads=encoder_threads)
    t0 = time.perf_counter()
    cat = Catalog.build(folder, encoder=encoder, batch_size=64, decode_threads=decode_threads)
    s = time.perf_counter() - t0
    n = len(cat) + len(cat.skipped)
    return {"indexer": label, "nodes": "-", "photos": n, "seconds": s, "photos_per_s": n / s}


def cluster_job(cluster: LocalCluster, folder: Path, out: Path) -> dict:
    """``fai index FOLDER --ray --ray-address`` as its own process; its JSON report."""
    res = subprocess.run([sys.executable, "-m", "fai_infer", "index", str(folder), "--out",
                          str(out), "--ray", "--ray-address", cluster.address,
                          "--batch-size", "64", "--json"],
                         cwd=ROOT, env=cluster.env(), capture_output=True, text=True,
                         timeout=1800)
    if res.returncode != 0:
        raise RuntimeError(f"fai index --ray failed: {(res.stderr or res.stdout)[-2000:]}")
    return json.loads(res.stdout)


def subset(folder: Path, n: int) -> Path:
    """A folder of links to the first ``n`` photos of ``folder`` (the small job)."""
    small = folder.with_name(folder.name + f"-{n}")
    small.mkdir(exist_ok=True)
    for p in sorted(folder.iterdir())[:n]:
        if not (small / p.name).exists():
            (small / p.name).symlink_to(p.resolve())
    return small


def cluster_rows(folder: Path, tmp: Path, nodes: list[int]) -> list[dict]:
    """Local indexer rows (1 core, both cores) then one row per cluster size.

    On each cluster: a full job (it also starts the workers), a job on a third of the photos,
    the full job again. The two sizes split a job's time into a fixed part (connecting,
    starting the actors, the catalogue) and a marginal rate per photo, the rate that holds at
    10M photos; ``seconds`` is the best full job."""
    one = local_row(folder, 1, 1, "local, 1 ORT + 1 decode thread")
    both = local_row(folder, 0, 2, "local, all cores (default)")
    rows = [one, both]
    for r in rows:
        print(table([r], COLUMNS), flush=True)
    n_full = one["photos"]
    small = subset(folder, max(1, n_full // 3))
    for n in nodes:
        with LocalCluster(nodes=n, cpus=1) as cluster:
            first = cluster_job(cluster, folder, tmp / f"cat-{n}-a")
            little = cluster_job(cluster, small, tmp / f"cat-{n}-s")
            again = cluster_job(cluster, folder, tmp / f"cat-{n}-b")
        best = min((first, again), key=lambda j: j["seconds"])
        photos = best["indexed"] + len(best["skipped"])
        n_small = little["indexed"] + len(little["skipped"])
        s = best["seconds"]
        marginal = (photos - n_small) / max(s - little["seconds"], 1e-9)
        per_node = [node["photos_per_busy_s"] for node in best["ray"]["nodes"]]
        base = one if n == 1 else both
        base_rate = base["photos_per_s"]
        row = {"indexer": f"ray cluster ({n} x 1 CPU)", "nodes": n, "photos": photos,
               "seconds": s, "photos_per_s": photos / s, "per_node_per_s": photos / s / n,
               "marginal_photos_per_s": marginal, "marginal_per_node_per_s": marginal / n,
               "fixed_s": s - photos / marginal,
               "busy_per_node_per_s": sum(per_node) / len(per_node),
               "overhead_ms_per_photo": 1000 * (1 / marginal - 1 / base_rate),
               "small_job": {"photos": n_small, "seconds": little["seconds"]},
               "jobs_seconds": [first["seconds"], again["seconds"]], "ray": best["ray"]}
        rows.append(row)
        print(table([row], COLUMNS), flush=True)
    first_row = next((r for r in rows if r["nodes"] == 1), None)
    for r in rows:
        if first_row is not None and isinstance(r["nodes"], int):
            r["speedup"] = r["photos_per_s"] / first_row["photos_per_s"]
            r["marginal_speedup"] = (r["marginal_photos_per_s"]
                                     / first_row["marginal_photos_per_s"])
    return rows


def projection(rows: list[dict], sizes: tuple[int, ...] = (10_000_000, 100_000_000),
               fleets: tuple[int, ...] = (1, 16, 64)) -> list[dict]:
    """Hours to embed each size on fleets of 1-CPU nodes: the marginal rate of one node, each
    added node adding its rate times the measured scaling (marginal rate per node at 2 nodes
    over that at 1), plus the fixed part of a job; and, for nodes on cores of their own (not
    shared as here), linear. A node of k cores at ~k times the rate counts as k nodes."""
    one = next(r for r in rows if r["nodes"] == 1)
    two = next((r for r in rows if r["nodes"] == 2), None)
    rate = one["marginal_photos_per_s"]
    efficiency = two["marginal_per_node_per_s"] / rate if two else 1.0
    fixed = max(r["fixed_s"] for r in rows if isinstance(r["nodes"], int))
    out = []
    for size in sizes:
        for fleet in fleets:
            total = rate * (1 + efficiency * (fleet - 1))
            out.append({"photos": f"{size:,}", "nodes": fleet, "per_node_per_s": rate,
                        "scaling_per_added_node": efficiency, "photos_per_s": total,
                        "hours": (size / total + fixed) / 3600,
                        "hours_if_linear": (size / (rate * fleet) + fixed) / 3600})
    return out
