"""Issue 33, point 5: devices and FIFOs given as photos, CSVs or models.

Before, the size check trusted ``st_size`` (0 for a device): a ``.jpg`` linked to /dev/zero
took ``fai index`` to 3.9 GB in 2 s, ``fai query CAT /dev/zero`` and a ``--metadata`` of
/dev/zero ended in MemoryError tracebacks, and a FIFO hung ``fai index``, ``fai query`` and
training's CSV reader for good. Only regular files are read, by bytes actually read. Each
case runs in a child with an address-space limit and a timeout, so a regression is a failed
test, never a hung or swapping test run."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from fai_infer.safe_files import NotARegularFile, read_bounded
from tests.helpers import ROOT, write_products

pytestmark = pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")


def limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def run(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout, preexec_fn=limited,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    except subprocess.TimeoutExpired:
        pytest.fail(f"{args} did not finish within {timeout:.0f} s (a FIFO or device read?)")


def one_line(res: subprocess.CompletedProcess, *words: str) -> str:
    lines = [line for line in res.stderr.strip().splitlines() if line]
    assert "Traceback" not in res.stderr and "MemoryError" not in res.stderr, res.stderr[-2000:]
    hits = [line for line in lines if all(w in line for w in words)]
    assert hits, res.stderr[-2000:]
    return hits[0]


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    from fai_infer import Catalog

    tmp = tmp_path_factory.mktemp("dev")
    write_products(tmp / "shop", 4)
    Catalog.build(tmp / "shop" / "images").save(tmp / "cat")
    return tmp


def test_fai_query_with_dev_zero_is_one_line(shop):
    res = run("-m", "fai_infer", "query", str(shop / "cat"), "/dev/zero")
    assert res.returncode == 1
    one_line(res, "/dev/zero", "device")


def test_photo_folder_with_a_device_link_and_a_fifo(shop, tmp_path):
    folder = tmp_path / "photos"
    write_products(folder, 3)
    os.symlink("/dev/zero", folder / "images" / "zero.jpg")
    os.mkfifo(folder / "images" / "pipe.jpg")
    res = run("-m", "fai_infer", "index", str(folder / "images"), "--out", str(tmp_path / "c"))
    one_line(res, "zero.jpg", "device")
    one_line(res, "pipe.jpg", "FIFO")
    assert res.returncode in (0, 1), res.stderr[-2000:]


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_metadata_csv_that_is_not_a_file(shop, tmp_path, kind):
    csv = tmp_path / "x.csv"
    if kind == "fifo":
        os.mkfifo(csv)
    else:
        os.symlink("/dev/zero", csv)
    res = run("-m", "fai_infer", "index", str(shop / "shop" / "images"), "--metadata", str(csv),
              "--out", str(tmp_path / "c"))
    assert res.returncode == 1
    one_line(res, "x.csv", "FIFO" if kind == "fifo" else "device")


def test_training_csv_and_photo_readers_refuse_a_fifo(tmp_path):
    """train.adapt and train.evaluate read CSVs with csv_dict_reader and photos with
    load_square (train/data.py): both must refuse a FIFO at once."""
    os.mkfifo(tmp_path / "x.csv")
    os.mkfifo(tmp_path / "x.jpg")
    code = ("import sys\n"
            "from fai_infer.catalog.sources import csv_dict_reader\n"
            "from fai_infer.image.preprocess import ImageError, PreprocessSpec, load_square\n"
            "try:\n    csv_dict_reader(sys.argv[1])\nexcept OSError as e:\n    print('csv:', e)\n"
            "try:\n    load_square(sys.argv[2], PreprocessSpec(size=32))\n"
            "except ImageError as e:\n    print('photo:', e)\n")
    res = run("-c", code, str(tmp_path / "x.csv"), str(tmp_path / "x.jpg"), timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "csv: x.csv is a FIFO" in res.stdout and "photo:" in res.stdout, res.stdout
    assert "FIFO" in res.stdout.split("photo:")[1]


def test_model_that_is_a_fifo_is_one_line(tmp_path):
    os.mkfifo(tmp_path / "m.onnx")
    code = ("import sys\nfrom fai_infer import Encoder\n"
            "try:\n    Encoder(sys.argv[1])\nexcept (OSError, ValueError) as e:\n"
            "    print('model:', e)\n")
    res = run("-c", code, str(tmp_path / "m.onnx"), timeout=60)
    assert res.returncode == 0 and "model:" in res.stdout and "FIFO" in res.stdout, \
        (res.stdout, res.stderr[-2000:])


def test_reads_are_bounded_by_bytes_read_not_st_size(tmp_path):
    """/proc files are regular files whose st_size is 0: the limit must count real bytes."""
    assert os.stat("/proc/self/maps").st_size == 0
    with pytest.raises(NotARegularFile, match="over the 10 byte limit"):
        read_bounded(Path("/proc/self/maps"), 10, follow_symlinks=True)
    (tmp_path / "small").write_bytes(b"abc")
    assert read_bounded(tmp_path / "small", 3) == b"abc"
