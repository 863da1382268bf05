"""The ``fai`` command line's scale options: ``index --ray``, ``push`` and ``--milvus``.

Kept apart from fai_infer/cli/main.py (which only defines the hooks), and importing neither Ray nor
pymilvus until an option asks for them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fai_infer.catalog.local import Catalog
from fai_infer.model.encoder import Encoder


def add_index_arguments(s: argparse.ArgumentParser) -> None:
    g = s.add_argument_group("distributed indexing (pip install -e '.[scale]')")
    g.add_argument("--ray", action="store_true",
                   help="decode and embed as a Ray Data job (a private local Ray unless "
                        "--ray-address names a cluster)")
    g.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="join this Ray cluster (e.g. ray://head:10001 or head:6379)")
    g.add_argument("--ray-workers", type=int, default=None, metavar="N",
                   help="embedding actors, one onnxruntime session each, spread over the "
                        "nodes (default: one per CPU of the cluster, per GPU with --gpu)")
    g.add_argument("--gpu", action="store_true",
                   help="one GPU per actor (needs onnxruntime-gpu on the workers)")
    g.add_argument("--shards", metavar="DIR_OR_URI", default=None,
                   help="keep the Parquet shards (id, embedding, path, metadata) here; on a "
                        "cluster a shared folder or s3://... every worker can write")


def add_milvus_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--milvus", metavar="URI", default=None,
                   help="search a Milvus collection instead of a local catalogue: a server "
                        "(http://host:19530) or a Milvus Lite file (*.db)")
    s.add_argument("--collection", default="fai", help="Milvus collection (default fai)")


def add_push_parser(sub, common: argparse.ArgumentParser, func) -> None:
    s = sub.add_parser("push", parents=[common],
                       help="load a catalogue into Milvus (a server, a cluster or a .db file)")
    s.add_argument("catalog", help="a catalogue made with 'fai index'")
    add_milvus_arguments(s)
    s.set_defaults(func=func)


def build_with_ray(a: argparse.Namespace, encoder: Encoder) -> Catalog:
    """``fai index --ray``: the same catalogue as the local indexer, embedded on Ray. What ran
    where is left in ``a.ray_report`` for the command's report (``ray_lines``)."""
    from fai_infer.scale.ray_index import index_with_ray_report

    if a.ray_workers is not None and a.ray_workers < 1:
        raise ValueError(f"--ray-workers {a.ray_workers}: at least 1")
    split = (lambda t: None if t is None else [c.strip() for c in t.split(",") if c.strip()])
    cat, a.ray_report = index_with_ray_report(
        a.folder, a.metadata, a.id_column, encoder, address=a.ray_address,
        workers=a.ray_workers, batch_size=a.batch_size, gpu=a.gpu, shards=a.shards,
        progress=not a.json and sys.stderr.isatty(), filters=split(a.filters),
        caption=split(a.caption), id_normalise=getattr(a, "id_normalise", False))
    return cat


def ray_lines(report: dict) -> list[str]:
    """The per-node lines ``fai index --ray`` prints: which node embedded how many photos."""
    nodes = report.get("nodes", [])
    out = [f"ray: {report.get('workers')} workers on {len(nodes)} node(s), embedded in "
           f"{report.get('embed_seconds', 0):.1f}s"]
    for n in nodes:
        own = ",".join(sorted(n["resources"])) or "-"
        rate = n["photos_per_busy_s"]
        out.append(f"  node {n['node_id'][:12]} {n['address'] or '?'} ({own}): {n['photos']} "
                   f"photos, {rate if rate is not None else '-'} photos/s busy")
    return out


def open_milvus(a: argparse.Namespace, encoder: Encoder):
    """``--milvus URI``: the collection, checked against the loaded model."""
    from fai_infer.scale.milvus_catalog import MilvusCatalog

    return MilvusCatalog(a.milvus, a.collection, encoder)


def cmd_push(a: argparse.Namespace, encoder: Encoder) -> int:
    from fai_infer.scale.milvus_catalog import push

    if not a.milvus:
        raise ValueError("push needs --milvus URI (a server such as http://host:19530, or a "
                         "Milvus Lite file such as shop.db)")
    if not Path(a.catalog).exists():
        raise FileNotFoundError(f"{a.catalog}: no such catalogue (make one with 'fai index "
                                f"PHOTOS_DIR --out {a.catalog}')")
    cat = Catalog.open(a.catalog, encoder)
    report = push(cat, a.milvus, a.collection, progress=not a.json and sys.stderr.isatty())
    if a.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"pushed {report['count']} items to {a.milvus} collection {a.collection} "
              f"in {report['seconds']}s")
    return 0
