"""Issue 23, section 5: a damaged or hostile catalogue never crashes or hangs a kiosk. Each
store below has valid checksums; ``fai query`` on it must end in one line and exit 1 within a
bounded time (before: SIGSEGV, MemoryError and RecursionError tracebacks, IsADirectoryError,
an endless read of /dev/zero, a reader blocked on a FIFO). Writers must not write through a
planted LOCK or CURRENT.tmp symlink."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fai_infer import Catalog, CatalogError
from fai_infer.store.generations import CURRENT
from tests.helpers import ROOT, current_gen, reseal

DEEP = "[" * 100_000 + "]" * 100_000


def patch_hnsw(gen: Path, offset_of, value: int, fmt: str = "<I") -> None:
    data = bytearray((gen / "index.hnsw").read_bytes())
    struct.pack_into(fmt, data, offset_of(data), value)
    (gen / "index.hnsw").write_bytes(bytes(data))
    reseal(gen)


def first_link(data: bytearray) -> int:
    """Offset of node 0's first level-0 neighbour (after the 96-byte header and its count)."""
    assert struct.unpack_from("<H", data, 96)[0] > 0
    return 96 + 4


def huge_npy(gen: Path, name: str, shape: tuple[int, ...]) -> None:
    arr = np.load(gen / name)
    with open(gen / name, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": arr.dtype.str,
                                                  "fortran_order": False, "shape": shape})
        fh.write(arr.tobytes())
    reseal(gen)


def deep_manifest(gen: Path) -> None:
    reseal(gen)
    text = (gen / "manifest.json").read_text()
    (gen / "manifest.json").write_text(text[:-1] + ', "extra": ' + DEEP + "}")


def replace_with(path: Path, make) -> None:
    path.unlink()
    make(path)


CASES = {
    "hnsw entry point past the last node": ("hnsw", lambda g: patch_hnsw(
        g, lambda d: 52, 1_000_000), "index.hnsw"),
    "hnsw link past the last node": ("hnsw", lambda g: patch_hnsw(
        g, first_link, 1_000_000), "index.hnsw"),
    "hnsw top level absurd": ("hnsw", lambda g: patch_hnsw(
        g, lambda d: 48, 10_000, "<i"), "index.hnsw"),
    "hnsw record size forged": ("hnsw", lambda g: patch_hnsw(
        g, lambda d: 24, 1 << 40, "<Q"), "index.hnsw"),
    "embeddings.npy claims 10^12 rows": ("exact", lambda g: huge_npy(
        g, "embeddings.npy", (10**12, 256)), "embeddings.npy"),
    "labels.npy claims 10^15 rows": ("exact", lambda g: huge_npy(
        g, "labels.npy", (10**15,)), "labels.npy"),
    "ids.json nested 100,000 deep": ("exact", lambda g: (
        (g / "ids.json").write_text(DEEP), reseal(g)), "nested"),
    "manifest nested 100,000 deep": ("exact", deep_manifest, "nested"),
    "CURRENT is a directory": ("exact", lambda g: replace_with(
        g.parent / CURRENT, lambda p: p.mkdir()), CURRENT),
    "CURRENT links to /dev/zero": ("exact", lambda g: replace_with(
        g.parent / CURRENT, lambda p: p.symlink_to("/dev/zero")), CURRENT),
    "CURRENT is a FIFO": ("exact", lambda g: replace_with(
        g.parent / CURRENT, os.mkfifo), CURRENT),
    "manifest links to /dev/zero": ("exact", lambda g: replace_with(
        g / "manifest.json", lambda p: p.symlink_to("/dev/zero")), "manifest"),
    "manifest is a FIFO": ("exact", lambda g: replace_with(g / "manifest.json", os.mkfifo),
                           "manifest"),
    "a delta is a directory": ("exact", lambda g: (g / "delta-000001").mkdir(), "delta-000001"),
    "a delta links to /dev/zero": ("exact", lambda g: (g / "delta-000001").symlink_to(
        "/dev/zero"), "delta-000001"),
    "a delta is a FIFO": ("exact", lambda g: os.mkfifo(g / "delta-000001"), "delta-000001"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_store_is_one_line_never_a_crash_or_hang(saved, tmp_path, case):
    kind, mutate, words = CASES[case]
    root = tmp_path / "cat"
    shutil.copytree(saved[kind], root)
    mutate(current_gen(root) if (root / CURRENT).is_file() else root / "gen-000001")
    res = subprocess.run([sys.executable, "-m", "fai_infer", "query", str(root), "--id", "p001"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert words in lines[0], lines[0]


def test_the_checks_accept_a_good_hnsw_store(saved, tmp_path):
    root = tmp_path / "cat"
    shutil.copytree(saved["hnsw"], root)
    cat = Catalog.open(root, saved["encoder"])
    assert cat.index.engine == "hnsw" and cat.similar("p001", k=3)[0].id != "p001"
    cat.remove(["p002"])
    cat.compact()
    assert len(Catalog.open(root, saved["encoder"])) == len(cat)


@pytest.mark.parametrize("name", ["LOCK", "CURRENT.tmp"])
def test_writers_never_write_through_a_planted_link(saved, tmp_path, name):
    """Before: a writer truncated the target of a LOCK link and wrote CURRENT.tmp's target."""
    root = tmp_path / "cat"
    shutil.copytree(saved["exact"], root)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (root / name).unlink(missing_ok=True)
    (root / name).symlink_to(victim)
    cat = Catalog.open(root, saved["encoder"])
    try:
        cat.remove(["p003"])
        cat.compact()
    except CatalogError as exc:
        assert "\n" not in str(exc) and "symbolic link" in str(exc), exc
        assert name == "LOCK"
    else:
        assert name == "CURRENT.tmp"  # the planted link is removed, never written through
        assert "p003" not in Catalog.open(root, saved["encoder"])
    assert victim.read_text() == "precious\n"
