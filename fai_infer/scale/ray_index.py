"""``fai index PHOTOS --ray``: decode + embed on a Ray cluster, then build the catalogue.

Why: a marketplace re-embeds millions of photos after every retrain; one box does ~800 photos/s
with the 64 px model and far fewer with a bigger encoder. Ray Data spreads the work over an
actor pool (one onnxruntime session per actor, CPU or GPU), writes Parquet shards (pos, id,
embedding, path, metadata, error) and the driver builds the catalogue from them with
``add_embeddings``, never re-encoding. The embeddings are the local indexer's: the same Encoder
code runs inside each actor.

Without an address a private Ray starts on this machine, bound to 127.0.0.1, without dashboard
or usage reporting; with one (``ray://head:10001`` or ``head:6379``) the job joins that cluster.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from fai_infer.catalog.local import Catalog, Skipped
from fai_infer.model.encoder import Encoder
from fai_infer.image.preprocess import describe
from fai_infer.scale import require
from fai_infer.scale.ray_private import make_private_dir, private_environment, remove_private_dir
from fai_infer.catalog.sources import ids_for, join_metadata, list_images, read_metadata
from fai_infer.errors import CatalogError

LIST_SUFFIXES = {".csv", ".parquet", ".pq"}
PATH_COLUMNS = ("path", "uri", "url", "image", "file")
BLOCK_ROWS = 256  # rows per Ray block: enough blocks for every actor, small enough to retry


@contextmanager
def workers_import_this_copy() -> Iterator[None]:
    """PYTHONPATH names this copy of fai_infer (a checkout or a venv) while a local Ray starts,
    so its workers import what the driver does; restored after, so nothing this process starts
    later (a pip, a test's subprocess) inherits it."""
    root = str(Path(__file__).resolve().parents[2])
    before = os.environ.get("PYTHONPATH")
    if root not in (before or "").split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, before) if p)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Join ``address`` or start a private local Ray; shut down only what we started."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # never report usage
    local_only = address is None or on_loopback(address)
    if local_only:
        # Ray resolves 127.0.0.1 to the host's public address unless told it is local-only;
        # then every Ray server (GCS, raylet, workers, agents) binds loopback, and a driver
        # finds a cluster that listens on loopback only (local_cluster.LocalCluster).
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray = require("ray", "fai index --ray")
    require("ray.data", "fai index --ray")
    if address is not None and not ray.is_initialized():
        check_reachable(address)
    if local_only:
        # Ray reads that variable when it is first imported; a program (or a test) that
        # imported Ray before us would otherwise start servers on every interface.
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    started = not ray.is_initialized()
    private = make_private_dir() if started and address is None else None
    if started:
        common = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            if private is not None:  # no usage report, cloud probe, /tmp/ray or ~/.ray left
                with private_environment(private), workers_import_this_copy():
                    ray.init(num_cpus=num_cpus, _node_ip_address="127.0.0.1",
                             object_store_memory=512 * 1024**2,
                             _temp_dir=str(private / "s"), **common)
            else:
                ray.init(address=address, **common)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            if private is not None:
                remove_private_dir(private)
            raise CatalogError(f"--ray-address {address}: cannot join the Ray cluster "
                               f"({str(exc).splitlines()[0] if str(exc) else exc})") from None
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
        if private is not None:
            remove_private_dir(private)


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse in one line an address where nothing listens: Ray itself would retry for a
    minute, printing a warning every few seconds. A ``ray://`` or ``auto`` address is left
    to Ray."""
    if "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    host = "127.0.0.1" if on_loopback(address) else host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return
    except ValueError:
        raise CatalogError(f"--ray-address {address}: expected HOST:PORT (e.g. "
                           f"head:6379)") from None
    except OSError as exc:
        raise CatalogError(f"--ray-address {address}: no Ray cluster answers there "
                           f"({exc.strerror or exc}); start one with 'ray start --head "
                           f"--port {port}'") from None


def on_loopback(address: str) -> bool:
    """``address`` (``host:port`` or ``ray://host:port``) names this machine's loopback."""
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def photo_table(source: str | os.PathLike, metadata: Any = None, id_column: str = "id",
                id_normalise: bool = False, warnings: list[str] | None = None):
    """The photos to index as an Arrow table (pos, id, path, metadata as JSON).

    ``source`` is a folder (listed here, ids as the local indexer gives them) or a CSV/Parquet
    file with a path column (path, uri, url, image or file: local paths or URIs such as
    s3://bucket/a.jpg), an optional id column (else the file stem) and metadata columns."""
    pa = require("pyarrow", "fai index --ray")
    src = Path(source)
    meta = read_metadata(metadata, id_column)
    if src.is_dir():
        paths = list_images(src)
        ids = ids_for(paths, src)
        locations = [str(p) for p in paths]
        extra = [{} for _ in ids]
    elif src.suffix.lower() in LIST_SUFFIXES and src.is_file():
        ids, locations, extra = _read_list(src, id_column)
    else:
        raise CatalogError(f"{source}: not a directory of photos nor a .csv/.parquet list of "
                           f"photo paths")
    # The local indexer's join: same matches, same warning, same error for the wrong column.
    join = join_metadata(ids, meta, "metadata" if isinstance(metadata, Mapping)
                         else str(metadata), id_column, id_normalise)
    if join.warning and warnings is not None:
        warnings.append(join.warning)
    rows = [{**e, **join.rows.get(i, {})} for i, e in zip(ids, extra)]
    return pa.table({"pos": pa.array(range(len(ids)), pa.int64()), "id": ids,
                     "path": locations, "metadata": [json.dumps(r) for r in rows]})


def _read_list(src: Path, id_column: str
               ) -> tuple[list[str], list[str], list[dict[str, str]]]:
    """ids, paths or URIs, and metadata rows from a CSV/Parquet list of photos."""
    if src.suffix.lower() == ".csv":
        from pyarrow import csv as pacsv

        opts = pacsv.ConvertOptions(strings_can_be_null=False, column_types=None)
        try:
            table = pacsv.read_csv(src, convert_options=opts)
        except Exception as exc:  # pyarrow's own error types
            raise CatalogError(f"{src}: cannot read the CSV ({exc})") from None
    else:
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(src)
        except Exception as exc:
            raise CatalogError(f"{src}: cannot read the Parquet file ({exc})") from None
    names = table.column_names
    path_col = next((c for c in PATH_COLUMNS if c in names), None)
    if path_col is None:
        raise CatalogError(f"{src}: no column of photo paths (one of {', '.join(PATH_COLUMNS)}; "
                           f"columns: {', '.join(names)})")
    data = {c: ["" if v is None else str(v) for v in table.column(c).to_pylist()]
            for c in names}
    locations = [p if "://" in p else str(Path(p) if Path(p).is_absolute()
                                          else (src.parent / p).absolute())
                 for p in data[path_col]]
    ids = data[id_column] if id_column in names else [Path(p).stem for p in data[path_col]]
    extra = [c for c in names if c != path_col]
    rows = [{c: data[c][i] for c in extra} for i in range(len(ids))]
    return ids, locations, rows


def _read_input(location: str) -> str | bytes:
    """A local path as is (errors then read exactly as the local indexer's); a URI's bytes."""
    if "://" not in location or location.startswith("file://"):
        return location.removeprefix("file://")
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(location)
    with filesystem.open_input_file(path) as fh:
        return fh.read()


class EmbedActor:
    """One onnxruntime session per actor; ``__call__`` embeds one batch of the photo table and
    records the Ray node and the seconds it took (the per-node report of a cluster run).

    The model travels as bytes through Ray's object store, so cluster nodes need no copy of it.
    ``fault_marker`` is for the fault-tolerance test: the first actor to see the path missing
    creates it and dies at once, as a killed worker would."""

    def __init__(self, model: Any, threads: int = 1, decode_threads: int = 1,
                 gpu: bool = False, fault_marker: str | None = None):
        if not isinstance(model, bytes):  # an ObjectRef: fetched once per actor
            import ray

            model = ray.get(model)
        fd, path = tempfile.mkstemp(suffix=".onnx", prefix="fai-actor-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(model)
        self.encoder = Encoder(path, threads=threads)
        if gpu:
            from fai_infer.model.ort import ort

            so = ort.SessionOptions()
            so.log_severity_level = 3
            self.encoder.session = ort.InferenceSession(
                path, so, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        os.unlink(path)
        self.decode_threads = decode_threads
        self.fault_marker = fault_marker
        self.node = _node_id()

    def __call__(self, batch):
        import pyarrow as pa

        if self.fault_marker and not os.path.exists(self.fault_marker):
            Path(self.fault_marker).touch()
            os._exit(1)
        t0 = time.perf_counter()
        locations = [str(p) for p in batch.column("path").to_pylist()]
        n, dim = len(locations), self.encoder.dim
        inputs: list[Any] = []
        errors = [""] * n
        for i, loc in enumerate(locations):
            try:
                inputs.append(_read_input(loc))
            except OSError as exc:
                inputs.append(b"")
                errors[i] = f"{loc}: cannot read ({exc})"
        emb = np.zeros((n, dim), np.float32)
        for positions, vectors, bad in self.encoder.embed_stream(
                inputs, batch_size=64, decode_threads=self.decode_threads):
            emb[positions] = vectors
            for p, reason in bad:
                if not errors[p]:
                    errors[p] = (reason if isinstance(inputs[p], str)
                                 else reason.replace(describe(inputs[p]), locations[p], 1))
        flat = pa.array(emb.reshape(-1), pa.float32())
        share = (time.perf_counter() - t0) / max(n, 1)  # this batch's seconds, per photo
        return batch.append_column("embedding", pa.FixedSizeListArray.from_arrays(flat, dim)) \
                    .append_column("error", pa.array(errors, pa.string())) \
                    .append_column("node", pa.array([self.node] * n, pa.string())) \
                    .append_column("busy_s", pa.array([share] * n, pa.float64()))


def _node_id() -> str:
    """The Ray node this process runs on ("" outside Ray): which machine embedded a photo."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:  # noqa: BLE001 - a report field, never a reason to fail a batch
        return ""


def default_workers(ray: Any, gpu: bool = False) -> int:
    """One actor per CPU of the cluster (per GPU with ``gpu``): every node gets work."""
    total = ray.cluster_resources().get("GPU" if gpu else "CPU", 1)
    return max(1, int(total))


def embed_to_shards(table, shards: str, model: Path, workers: int = 2, batch_size: int = 64,
                    threads: int = 1, decode_threads: int = 1, gpu: bool = False,
                    progress: bool = False, fault_marker: str | None = None) -> None:
    """Run the Ray Data pipeline: photo table -> actor pool -> Parquet shards in ``shards``.
    Actors are spread over the nodes (SPREAD), not packed onto the first with room."""
    import ray
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    rows = max(1, min(BLOCK_ROWS, -(-table.num_rows // (4 * workers))))  # >= 4 blocks/actor
    # Ray Data joins blocks up to a batch: a batch larger than a block would hand a small job
    # to one actor (one node) whole.
    batch_size = min(batch_size, rows)
    blocks = [table.slice(i, rows) for i in range(0, table.num_rows, rows)]
    ds = ray.data.from_arrow(blocks or [table])
    model_ref = ray.put(model.read_bytes())
    ds = ds.map_batches(EmbedActor, batch_size=batch_size, batch_format="pyarrow",
                        compute=ray.data.ActorPoolStrategy(size=workers),
                        fn_constructor_kwargs={"model": model_ref, "threads": threads,
                                               "decode_threads": decode_threads, "gpu": gpu,
                                               "fault_marker": fault_marker},
                        num_cpus=0 if gpu else 1, num_gpus=1 if gpu else 0,
                        scheduling_strategy="SPREAD")
    ds.write_parquet(shards, mode="overwrite")


def read_shards(shards: str, expected: int, dim: int):
    """The shards' rows, one per photo (a retried task may have written a row twice), in the
    order the photos were listed; refuses a job that lost photos."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(shards)
    table = table.take(pc.sort_indices(table, [("pos", "ascending")]))
    pos = table.column("pos").to_numpy()
    first = np.ones(len(pos), bool)
    first[1:] = pos[1:] != pos[:-1]
    table = table.filter(first)
    if table.num_rows != expected:
        raise CatalogError(f"{shards}: the Ray job produced {table.num_rows} of {expected} "
                           f"photos")
    emb = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return table, emb.reshape(-1, dim).astype(np.float32)


def build_catalog(table, emb: np.ndarray, encoder: Encoder, id_column: str = "id",
                  filters: Sequence[str] | None = None,
                  caption: Sequence[str] | None = None, id_normalise: bool = False) -> Catalog:
    """The catalogue from shard rows through ``add_embeddings``; bad photos in ``.skipped``.
    ``id_normalise`` is remembered as the local indexer remembers it (later adds match so)."""
    errors = table.column("error").to_pylist()
    ok = np.array([not e for e in errors], bool)
    paths = table.column("path").to_pylist()
    ids = [i for i, good in zip(table.column("id").to_pylist(), ok) if good]
    rows = [json.loads(m) for m, good in zip(table.column("metadata").to_pylist(), ok) if good]
    cat = Catalog(encoder)
    cat.id_column, cat.id_normalise = id_column, id_normalise
    if filters is not None or caption is not None:
        known: list[str] = []
        for r in rows:
            known += [c for c in r if c not in known]
        cat.set_display(filters, caption, known=known)
    cat.add_embeddings(ids, emb[ok], [p for p, good in zip(paths, ok) if good], rows)
    if encoder.info.catalogue_whitening:
        cat.rewhiten()  # as Catalog.build does: the same photos give the same catalogue
    cat.skipped = [Skipped(p, e) for p, e in zip(paths, errors) if e]
    return cat


def index_with_ray(source: str | os.PathLike, metadata: Any = None, id_column: str = "id",
                   encoder: Encoder | None = None, address: str | None = None,
                   workers: int | None = None, batch_size: int = 64, gpu: bool = False,
                   shards: str | None = None, progress: bool = False,
                   filters: Sequence[str] | None = None, caption: Sequence[str] | None = None,
                   num_cpus: int | None = None, id_normalise: bool = False,
                   fault_marker: str | None = None) -> Catalog:
    """``Catalog.build`` on Ray: same ids, embeddings, metadata and skipped photos.

    ``shards`` (a folder or URI every worker can write and the driver can read; on a cluster a
    shared filesystem or object store) keeps the Parquet shards; by default a temporary folder.
    ``workers=None``: one actor per CPU (GPU) of the cluster."""
    return index_with_ray_report(source, metadata, id_column, encoder, address, workers,
                                 batch_size, gpu, shards, progress, filters, caption, num_cpus,
                                 id_normalise, fault_marker)[0]


def index_with_ray_report(source: str | os.PathLike, metadata: Any = None,
                          id_column: str = "id", encoder: Encoder | None = None,
                          address: str | None = None, workers: int | None = None,
                          batch_size: int = 64, gpu: bool = False, shards: str | None = None,
                          progress: bool = False, filters: Sequence[str] | None = None,
                          caption: Sequence[str] | None = None, num_cpus: int | None = None,
                          id_normalise: bool = False, fault_marker: str | None = None
                          ) -> tuple[Catalog, dict]:
    """``index_with_ray`` plus what ran where: the catalogue and a report of the workers, the
    embedding seconds and, per Ray node, its address, own resources, photos and busy seconds."""
    encoder = encoder or Encoder()
    warnings: list[str] = []
    table = photo_table(source, metadata, id_column, id_normalise, warnings)
    tmp = None
    if shards is None:
        tmp = tempfile.TemporaryDirectory(prefix="fai-shards-")
        shards = tmp.name
    try:
        with ray_session(address, num_cpus) as ray:
            n = workers if workers is not None else default_workers(ray, gpu)
            t0 = time.perf_counter()
            embed_to_shards(table, shards, encoder.path, n, batch_size, gpu=gpu,
                            progress=progress, fault_marker=fault_marker)
            seconds = time.perf_counter() - t0
            if progress:
                print(f"embedded {table.num_rows} photos on Ray in {seconds:.1f}s", flush=True)
            nodes = ray.nodes()
        rows, emb = read_shards(shards, table.num_rows, encoder.dim)
        cat = build_catalog(rows, emb, encoder, id_column, filters, caption, id_normalise)
        cat.warnings += warnings
        report = {"workers": n, "embed_seconds": round(seconds, 3),
                  "nodes": node_report(rows, nodes)}
        return cat, report
    finally:
        if tmp is not None:
            tmp.cleanup()


def node_report(rows, nodes: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Photos and busy seconds per Ray node that embedded any, busiest first, with the node's
    address and its own resources (``ray.nodes()`` entries; a node gone since is listed by id).
    Why: on a cluster, proof that every node worked and the rate each one gave."""
    from fai_infer.scale.ray_private import custom_resources

    info = {n.get("NodeID"): n for n in nodes}
    photos: dict[str, int] = {}
    busy: dict[str, float] = {}
    for node, share in zip(rows.column("node").to_pylist(), rows.column("busy_s").to_pylist()):
        photos[node] = photos.get(node, 0) + 1
        busy[node] = busy.get(node, 0.0) + float(share or 0.0)
    out = []
    for node in sorted(photos, key=lambda k: (-photos[k], k)):
        n = info.get(node, {})
        seconds = busy[node]
        out.append({"node_id": node, "address": n.get("NodeManagerAddress", ""),
                    "resources": custom_resources(n.get("Resources", {})),
                    "photos": photos[node], "busy_s": round(seconds, 3),
                    "photos_per_busy_s": round(photos[node] / seconds, 1) if seconds else None})
    return out
