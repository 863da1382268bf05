"""Helpers shared by the tests (not fixtures: those are in conftest.py): paths, generated
product photos and CSVs, an in-memory catalogue of given vectors. Tests import from here, never
from one another."""

from __future__ import annotations

import asyncio
import csv
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterable
from urllib.parse import unquote

import cv2
import numpy as np
import pytest

from export.synthetic import generated_squares
from fai_infer.store.generations import CURRENT

ROOT = Path(__file__).resolve().parent.parent
MYNTRA = Path(os.environ.get("FAI_MYNTRA", ROOT.parent / "shared" / "data" / "myntra"))
SHIPPED = ROOT / "models" / "fai-default.onnx"
OTHER_MODEL = ROOT / "models" / "fai-small-64-v2.int8.onnx"  # another model: catalogues refuse it

needs_myntra = pytest.mark.skipif(
    not (MYNTRA / "styles.csv").is_file(),
    reason=f"shared Myntra photos not found at {MYNTRA} (set FAI_MYNTRA to run this test)")


def write_products(folder: Path, n: int, size: int = 48, seed: int = 0,
                   csv_name: str | None = "metadata.csv") -> list[Path]:
    """n generated product JPEGs (portrait 3:4) + a CSV with split and a colour label."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    squares = generated_squares(size, n, seed)
    paths, rows = [], []
    for i, sq in enumerate(squares):
        portrait = np.full((size * 4 // 3, size, 3), 255, np.uint8)
        portrait[size // 6 : size // 6 + size] = sq
        path = folder / "images" / f"p{i:03d}.jpg"
        cv2.imwrite(str(path), portrait[..., ::-1])
        paths.append(path)
        blob = sq.reshape(-1, 3)[sq.reshape(-1, 3).min(1) < 200]
        colour = ["red", "green", "blue"][int(np.argmax(blob.mean(0)))] if len(blob) else "none"
        rows.append({"id": path.stem, "split": "val" if i % 6 == 0 else "train",
                     "colour": colour, "gender": ["Women", "Men"][i % 2]})
    if csv_name:
        write_csv(folder / csv_name, rows)
    return paths


def write_csv(path: Path, rows: list[dict]) -> Path:
    """A CSV with the first row's keys as its columns."""
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def catalog_of(encoder, ids, paths, rows, vectors, exact_below: int | None = None):
    """An in-memory catalogue of vectors made elsewhere (through the public add_embeddings)."""
    from fai_infer import Catalog
    from fai_infer.index.search import EXACT_BELOW

    cat = Catalog(encoder, exact_below=EXACT_BELOW if exact_below is None else exact_below)
    cat.add_embeddings(ids, vectors, paths, rows)
    return cat


TYPES = ["Vest top", "Bra", "Trousers", "Dress", "Sweater", "Sneakers", "Bag"]


def hm_rows(n: int = 120) -> list[dict[str, str]]:
    """The shape of H&M's articles.csv: ids in article_id, codes before names, a description."""
    return [{"article_id": f"0{108775015 + i}", "product_code": str(108775 + i // 3),
             "prod_name": f"Strap top {i}", "product_type_no": str(253 + i % 7),
             "product_type_name": TYPES[i % 7], "graphical_appearance_no": str(1010016 + i % 5),
             "graphical_appearance_name": ["Solid", "Stripe", "Denim"][i % 3],
             "colour_group_code": str(9 + i % 9), "colour_group_name": f"Colour {i % 9}",
             "perceived_colour_value_id": str(i % 4), "index_code": "ABCDEF"[i % 6],
             "index_name": ["Ladieswear", "Menswear", "Divided"][i % 3],
             "section_name": f"Section {i % 11}", "garment_group_name": f"Group {i % 4}",
             "department_name": f"Dept {i % 20}", "season": ["SS", "AW"][i % 2],
             "detail_desc": f"Jersey top with narrow shoulder straps, style {i}"}
            for i in range(n)]


# -- a tiny garment + colour model (train/colour.py) and its export ------------------------------
def garment_colour_spec():
    """The 64 px preprocessing the tiny garment + colour model is exported with."""
    from fai_infer.image.preprocess import PreprocessSpec
    from train.efficientnet_lite import INPUT_MEAN, INPUT_STD

    return PreprocessSpec(size=64, mean=INPUT_MEAN, std=INPUT_STD)


def garment_colour_model(colour_weight: float = 0.25):
    """An untrained AutoEncoder with a grey-input garment part and a colour histogram part."""
    import torch
    from train.model import AutoEncoder, ModelConfig

    torch.manual_seed(0)
    model = AutoEncoder(ModelConfig(arch="efficientnet-lite0", image_size=64, pooling="avg",
                                    embed_dim=48, general_dim=32, general_weight=0.5,
                                    grey=True, colour=True, colour_weight=colour_weight))
    model.head.set_general_basis(torch.randn(200, model.encoder.out_channels))
    return model.eval()


def export_garment_colour(folder: Path, colour_weight: float = 0.3) -> Path:
    """The tiny garment + colour model exported to ONNX (as ``python -m export.onnx`` does)."""
    from export.onnx import export
    from train.checkpoint import save_atomic

    model = garment_colour_model(colour_weight)
    ckpt = {"model": model.state_dict(), "model_config": model.cfg.to_dict(),
            "preprocess": garment_colour_spec().to_dict(),
            "train_config": {"arch": "efficientnet-lite0"}, "epoch": 0}
    folder.mkdir(parents=True, exist_ok=True)
    save_atomic(ckpt, folder / "m.pt")
    export(folder / "m.pt", folder / "m.onnx", log=lambda *a: None)
    return folder / "m.onnx"


def product(colour: tuple[int, int, int], size: int = 64, shape: str = "shirt") -> np.ndarray:
    """A white square with a coloured garment-like shape in the middle."""
    img = np.full((size, size, 3), 255, np.uint8)
    if shape == "shirt":
        img[size // 4 : 3 * size // 4, size // 3 : 2 * size // 3] = colour
        img[size // 4 : size // 3, size // 6 : 5 * size // 6] = colour
    else:  # trousers: two legs
        img[size // 5 : 4 * size // 5, size // 3 : 5 * size // 12] = colour
        img[size // 5 : 4 * size // 5, 7 * size // 12 : 2 * size // 3] = colour
    return img


def equal_luma(colour: tuple[int, int, int], blue: int = 120) -> tuple[int, int, int]:
    """A teal-ish colour with the same BT.601 luma as ``colour``: a grey backbone sees them
    as one."""
    y = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    return (0, int(round((y - 0.114 * blue) / 0.587)), blue)


# -- ASGI without a server (the guard and the HTTP API) -----------------------------------------
class Inner:
    """Stands in for Gradio: answers 200 and remembers the body it was given."""

    def __init__(self):
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send):
        body = b""
        if scope.get("method") == "POST":
            message = await receive()
            body = message.get("body", b"")
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"inner"})


def call(app, path: str, method: str = "GET", host: str = "127.0.0.1:7860",
         body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    raw = [(b"host", host.encode())] + [(k.encode(), v.encode())
                                         for k, v in (headers or {}).items()]
    # As uvicorn does: ``path`` percent-decoded, ``raw_path`` as sent.
    scope = {"type": "http", "method": method, "path": unquote(path), "headers": raw,
             "raw_path": path.encode(), "query_string": b""}
    chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)] or [b""]
    out: dict = {"body": b""}

    async def receive():
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
        else:
            out["body"] += message.get("body", b"")

    asyncio.run(app(scope, receive, send))
    return out["status"], out["headers"], out["body"]


# -- network namespaces (the offline tests) -----------------------------------------------------
TOOLS = ("unshare", "ip", "strace")


@functools.lru_cache(maxsize=None)
def namespace_problem() -> str | None:
    """Why the network-namespace tests cannot run here (None when they can); asked once."""
    if os.geteuid() != 0:
        return "needs root to create a network namespace (unshare -n)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"needs {', '.join(missing)} on PATH"
    res = subprocess.run(["unshare", "-n", "-m", "true"], capture_output=True, text=True)
    if res.returncode != 0:
        return f"unshare -n -m does not work here: {res.stderr.strip()[:200]}"
    return None


OFF_LOOPBACK = re.compile(
    r"(?:connect|sendto|sendmsg|sendmmsg)\(.*sa_family=AF_INET6?,.*"
    r"(?:inet_addr\(\"(?!127\.)[^\"]*\"\)|inet_pton\(AF_INET6, \"(?!::1\"|::ffff:127\.)[^\"]*\")")


def off_loopback_calls(strace_log: str) -> list[str]:
    """Socket calls in an strace log that address anything but 127.0.0.0/8 or ::1."""
    return [line for line in strace_log.splitlines() if OFF_LOOPBACK.search(line)]


# -- a fresh process's peak memory embedding one file --------------------------------------------
RSS_PROBE = """
import json, resource, sys
import numpy as np
from fai_infer import Encoder, ImageError


def peak_mb():
    # VmHWM belongs to this process image; ru_maxrss would carry the parent's peak over fork.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


enc = Encoder()
enc.embed([np.zeros((8, 8, 3), np.uint8)])  # the encoder's own memory counts as baseline
before = peak_mb()
try:
    enc.embed([sys.argv[1]])
    outcome = "embedded"
except ImageError as exc:
    outcome = exc.reason
print(json.dumps({"before_mb": before, "peak_mb": peak_mb(), "outcome": outcome}))
"""


# -- stored catalogues edited on disk ------------------------------------------------------------
def current_gen(root: Path) -> Path:
    """The folder of a stored catalogue's current generation."""
    return root / (root / CURRENT).read_text().strip()


def reseal(gen: Path, manifest: dict | list | None = None) -> None:
    """Rewrite the manifest with correct sizes and checksums of what the folder now holds."""
    if manifest is None:
        manifest = json.loads((gen / "manifest.json").read_text())
    if isinstance(manifest, dict):
        for name in manifest.get("files", {}):
            data = (gen / name).read_bytes()
            manifest["files"][name] = {"bytes": len(data),
                                       "sha256": hashlib.sha256(data).hexdigest()}
    (gen / "manifest.json").write_text(json.dumps(manifest))


# -- listening sockets (Milvus and Ray tests: what a server left listening, and where) --
def listeners(pids: set[int] | None = None) -> set[tuple[str, int]]:
    """(local address as /proc/net writes it, port) of every TCP socket listening in this
    network namespace; only those the processes ``pids`` hold when given (other engineers'
    servers come and go on a shared machine)."""
    inodes = None if pids is None else socket_inodes(pids)
    found = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and (inodes is None or fields[9] in inodes):  # LISTEN
                address, port = fields[1].split(":")
                found.add((address, int(port, 16)))
    return found


def socket_inodes(pids: set[int]) -> set[str]:
    out = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    out.add(link[8:-1])
        except OSError:
            continue  # gone, or not ours to read
    return out


def read_until(proc: subprocess.Popen, needle: str, timeout: float = 120.0) -> str:
    """Lines of ``proc``'s stdout (a text pipe) up to the first holding ``needle``; fails the
    test if the process exits or stays silent first. Event-driven: it waits on the pipe, never
    on a guessed delay (a server says when it is ready)."""
    import queue
    import threading

    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no {needle!r} within {timeout:.0f} s:\n" + "".join(seen)[-3000:])
        if line is None:
            pytest.fail(f"exited before {needle!r}:\n" + "".join(seen)[-3000:])
        seen.append(line)
        if needle in line:
            return "".join(seen)


def wait_gone(pids: Iterable[int], timeout: float = 60.0) -> set[int]:
    """Wait until every pid has exited (a pidfd per process: woken by the exit itself, no
    polling); returns those still alive after ``timeout``."""
    import select

    alive = set()
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            if not select.select([fd], [], [], timeout)[0]:
                alive.add(pid)
        finally:
            os.close(fd)
    return alive
