"""Crash-safe catalogue directories: whole generations swapped in by one atomic rename.

Layout: ``CATALOG/CURRENT`` names a complete generation folder ``CATALOG/gen-<n>/`` holding the
data files and a ``manifest.json`` with each file's size and sha256. A save writes a new
generation in a temporary folder, fsyncs it, renames it into place and only then replaces
``CURRENT`` (write + fsync + os.replace). A process killed at any moment leaves ``CURRENT``
pointing at either the old or the new generation, both complete; leftovers are cleaned on the
next save. ``open`` verifies every checksum before anything parses a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

from fai_infer import safe_json
from fai_infer.errors import CatalogError
from fai_infer.safe_files import open_regular, read_bounded

MANIFEST = "manifest.json"
CURRENT = "CURRENT"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _leftover(path: Path) -> bool:
    """What an interrupted save leaves behind and the next save may delete."""
    return path.name.startswith(".tmp-") or path.name in (f"{CURRENT}.tmp", "LOCK")


def check_writable(root: Path) -> None:
    """Fail early, with one line, if a catalogue cannot be written at ``root`` (read-only
    storage, a file in the way, a non-catalogue folder), before minutes of encoding."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise CatalogError(f"{root}: exists and is not a catalogue directory")
    if root.is_dir() and not (root / CURRENT).exists() and any(
            not _leftover(p) for p in root.iterdir()):
        raise CatalogError(f"{root}: directory is not empty and is not a catalogue; "
                           f"choose a new --out path")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".tmp-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CatalogError(f"{root}: cannot write a catalogue here "
                           f"({exc.strerror or exc})") from None


def write_generation(root: Path, writers: dict[str, Callable[[Path], None]],
                     manifest: dict) -> Path:
    """Write files (name -> writer(path)) and a checksummed manifest as a new generation, then
    make it current atomically. Returns the generation folder. Read-only or full storage is
    one CatalogError line, and the partial generation is removed."""
    root = Path(root)
    check_writable(root)
    tmp = root / f".tmp-{uuid.uuid4().hex}"
    try:
        return _write(root, tmp, writers, manifest)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        (root / f"{CURRENT}.tmp").unlink(missing_ok=True)
        raise CatalogError(f"{root}: could not save the catalogue ({exc.strerror or exc}); "
                           f"the previous version is unchanged") from None


def _write(root: Path, tmp: Path, writers: dict[str, Callable[[Path], None]],
           manifest: dict) -> Path:
    tmp.mkdir()
    files = {}
    for name, write in writers.items():
        path = tmp / name
        write(path)
        fsync_path(path)
        files[name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    manifest = dict(manifest, files=files)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    fsync_path(tmp / MANIFEST)
    fsync_path(tmp)
    previous = current_generation_name(root)
    number = int(previous.split("-")[1]) + 1 if previous else 1
    gen = root / f"gen-{number:06d}"
    if gen.exists():  # a leftover of a crash after the rename, never made current
        shutil.rmtree(gen)
    os.rename(tmp, gen)
    fsync_path(root)
    pointer = root / f"{CURRENT}.tmp"
    pointer.unlink(missing_ok=True)  # a link planted here is removed, never written through
    with os.fdopen(open_regular(pointer, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "w") as fh:
        fh.write(gen.name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(pointer, root / CURRENT)
    fsync_path(root)
    collect_generations(root, keep={gen.name, previous})
    return gen


def collect_generations(root: Path, keep: set[str | None]) -> None:
    """Delete generations other than ``keep`` and leftovers of interrupted saves. The previous
    generation is kept because a reader may be opening it right now; the one before it goes."""
    for stale in root.iterdir():
        if stale.name not in keep and stale.name.startswith(("gen-", ".tmp-")):
            shutil.rmtree(stale, ignore_errors=True)


def current_generation_name(root: Path) -> str | None:
    try:
        name = read_bounded(Path(root) / CURRENT, 4096).decode("ascii").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError) as exc:  # a folder, FIFO, device or link; not text
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not text"
        raise CatalogError(f"{root}: {CURRENT} cannot be read ({reason})") from None
    if not name.startswith("gen-") or "/" in name or ".." in name:
        raise CatalogError(f"{root}: {CURRENT} is corrupt ({name[:40]!r})")
    return name


def peek_manifest(root: Path, name: str | None = None) -> dict:
    """A generation's manifest (default: the current one) read without verifying anything, for
    a hint that ``read_generation`` checks later or that is safe to be wrong about; {} when
    it cannot be read."""
    name = name or current_generation_name(root)
    try:
        manifest = safe_json.loads(read_bounded(Path(root) / str(name) / MANIFEST))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def read_generation(root: Path) -> tuple[Path, dict]:
    """-> (generation folder, manifest), every file's size and sha256 verified first."""
    root = Path(root)
    if not root.is_dir():
        raise CatalogError(f"{root}: no catalogue here (not a directory); "
                           f"build one with: fai index PHOTOS_DIR --out {root}")
    name = current_generation_name(root)
    if name is None:
        raise CatalogError(f"{root}: not a catalogue ({CURRENT} is missing); "
                           f"build one with: fai index PHOTOS_DIR --out {root}")
    gen = root / name
    try:
        manifest = safe_json.loads(read_bounded(gen / MANIFEST))
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise CatalogError(f"{root}: manifest of {name} is missing or corrupt "
                           f"({reason})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) or any(
            not isinstance(e, dict) or not isinstance(e.get("bytes"), int)
            or not isinstance(e.get("sha256"), str) or "/" in f or f.startswith(".")
            for f, e in manifest["files"].items()):
        raise CatalogError(f"{root}: manifest of {name} is not a catalogue manifest (it must "
                           f"be an object listing each file's size and sha256)")
    for fname, expect in manifest["files"].items():
        path = gen / fname
        if not path.is_file():
            raise CatalogError(f"{root}: {name}/{fname} is missing")
        if path.stat().st_size != expect["bytes"]:
            raise CatalogError(f"{root}: {name}/{fname} is truncated or altered "
                               f"({path.stat().st_size} bytes, manifest says {expect['bytes']})")
        if sha256_file(path) != expect["sha256"]:
            raise CatalogError(f"{root}: {name}/{fname} is corrupt (sha256 does not match the "
                               f"manifest); restore a backup or re-index")
    return gen, manifest
