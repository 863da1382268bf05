"""The catalogue store: a writer lock shared by processes, and deltas appended to a generation.

A catalogue directory holds generations (``fai_infer/store/generations.py``: whole, checksummed folders
swapped in by one atomic rename) and, inside the current one, numbered deltas
``delta-000001``, ``delta-000002``, ... Each delta is one small file (removed ids, added ids,
paths, metadata and vectors, changed metadata) with its own sha256, written beside the
catalogue, fsynced and renamed into the generation: it either exists whole or not at all, and
its number is its place in the history. Readers take no lock: they read the base, then every
delta in order, and later only the deltas numbered past the last one they applied.

Writers serialise on ``LOCK`` (``fcntl.flock``, released by the kernel if a writer dies), and
re-read the newest state once they hold it, so no committed update is ever overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Iterator

import numpy as np

from fai_infer import safe_json
from fai_infer.store.delta import Delta, delta_name, is_delta_name  # noqa: F401
from fai_infer.safe_files import open_regular, read_bounded
from fai_infer.store.generations import CatalogError, fsync_path
from fai_infer.store.check import check_delta

LOCK = "LOCK"
DELTA_MAGIC = b"FAIDELTA1\n"
LOCK_TIMEOUT_S = 60.0


def lock_timeout() -> float:
    """Seconds a writer waits for the lock: $FAI_LOCK_TIMEOUT, else 60."""
    text = os.environ.get("FAI_LOCK_TIMEOUT", "").strip()
    if not text:
        return LOCK_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1e7:
        raise CatalogError(f"FAI_LOCK_TIMEOUT={text[:40]!r}: expected seconds to wait for a "
                           f"catalogue's writer lock (a number, 0 or more)")
    return value
_HEADER_LIMIT = 1 << 30
DELTA_LIMIT = 1 << 36  # bytes read from one delta file (vectors included)


@contextlib.contextmanager
def writer_lock(root: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold the catalogue's writer lock. A second writer waits up to ``timeout`` seconds, then
    fails with one line naming the holder's pid. The kernel drops the lock of a killed
    process, so a crash never leaves the catalogue locked."""
    timeout = lock_timeout() if timeout is None else timeout
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        fd = open_regular(root / LOCK, os.O_RDWR | os.O_CREAT)  # never through a link
    except OSError as exc:
        raise CatalogError(f"{root}: cannot open the catalogue's lock file "
                           f"({exc.strerror or exc})") from None
    try:
        deadline, pause = time.monotonic() + timeout, 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                raise CatalogError(f"{root}: another process is changing this catalogue (the "
                                   f"last writer to take its lock was pid {holder}); gave up "
                                   f"waiting after {timeout:g} s (FAI_LOCK_TIMEOUT)")
            time.sleep(pause)
            pause = min(pause * 2, 0.005)  # short: a long nap loses the race to others
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


def write_delta(root: Path, gen: Path, number: int, delta: Delta, dim: int) -> Path:
    """Commit ``delta`` as number ``number`` of generation ``gen`` (the caller holds the
    writer lock). Full or read-only storage is one CatalogError; nothing partial is left."""
    vectors = (np.zeros((0, dim), np.float32) if delta.vectors is None
               else np.ascontiguousarray(delta.vectors, dtype="<f4").reshape(-1, dim))
    body = json.dumps(delta.header(), ensure_ascii=True).encode("ascii")
    payload = len(body).to_bytes(8, "little") + body + vectors.tobytes()
    data = DELTA_MAGIC + hashlib.sha256(payload).hexdigest().encode("ascii") + payload
    target = gen / delta_name(number)
    tmp = root / f".tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if target.exists():
            raise CatalogError(f"{root}: {gen.name}/{target.name} already exists (two writers "
                               f"without the lock?)")
        os.rename(tmp, target)
        fsync_path(gen)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CatalogError(f"{root}: could not save the change ({exc.strerror or exc}); the "
                           f"catalogue is unchanged") from None
    return target


def read_delta(root: Path, path: Path, dim: int) -> Delta:
    """A committed delta, checksum verified before it is parsed."""
    try:
        data = read_bounded(path, DELTA_LIMIT)
    except FileNotFoundError:
        raise
    except OSError as exc:  # a folder, FIFO, device or link where a delta should be
        raise CatalogError(f"{root}: {path.parent.name}/{path.name} cannot be read "
                           f"({exc.strerror or exc})") from None
    head = len(DELTA_MAGIC) + 64
    if not data.startswith(DELTA_MAGIC) or len(data) < head + 8:
        raise CatalogError(f"{root}: {path.parent.name}/{path.name} is not a catalogue delta")
    payload = data[head:]
    if hashlib.sha256(payload).hexdigest().encode("ascii") != data[len(DELTA_MAGIC):head]:
        raise CatalogError(f"{root}: {path.parent.name}/{path.name} is corrupt (sha256 does "
                           f"not match); restore a backup or re-index")
    size = int.from_bytes(payload[:8], "little")
    if not 0 <= size <= min(len(payload) - 8, _HEADER_LIMIT):
        raise CatalogError(f"{root}: {path.parent.name}/{path.name} has a broken header")
    try:
        header = safe_json.loads(payload[8:8 + size].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise CatalogError(f"{root}: {path.parent.name}/{path.name} has a broken header") from None
    raw = payload[8 + size:]
    if len(raw) % (4 * dim):
        raise CatalogError(f"{root}: {path.parent.name}/{path.name} holds a partial vector")
    vectors = np.frombuffer(raw, dtype="<f4").reshape(-1, dim).astype(np.float32)
    return check_delta(root, path, header, vectors)
