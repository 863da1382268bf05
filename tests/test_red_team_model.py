"""Issue 23, section 5: the model a catalogue loads. Its identity includes the file's bytes (a
network whose metadata copies the shipped fai.* keys was accepted), the manifest's unchecked
model_path no longer picks the file, and an absurd preprocessing size is refused at load (40000
px tried 3.6 GB per photo and ``fai index`` said "indexed 0" and exited 0)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from fai_infer import Catalog, CatalogError, Encoder
from fai_infer.store.generations import CURRENT
from tests.helpers import ROOT, SHIPPED, write_products

onnx = pytest.importorskip("onnx", reason="needs onnx (the train extra) to forge models")


def forged(tmp_path, name: str, size: int | None = None, nudge: bool = False):
    """The shipped model with its fai.* metadata kept, but other weights (``nudge``) or another
    preprocessing size with dynamic spatial axes (``size``)."""
    model = onnx.load(str(SHIPPED))
    if nudge:
        init = max(model.graph.initializer, key=lambda t: len(t.raw_data))
        arr = onnx.numpy_helper.to_array(init).copy()
        arr.flat[: arr.size // 2] *= -1.0
        init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    if size is not None:
        for prop in model.metadata_props:
            if prop.key == "fai.preprocess":
                spec = json.loads(prop.value)
                spec["size"] = size
                prop.value = json.dumps(spec)
            if prop.key == "fai.input_size":
                prop.value = str(size)
        dims = model.graph.input[0].type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = "h", "w"
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("model-id")
    write_products(base / "shop", 6)
    model = base / "model.onnx"
    shutil.copy(SHIPPED, model)
    cat = Catalog.build(base / "shop" / "images", encoder=Encoder(model))
    cat.save(base / "cat")
    return base


def test_a_model_that_copies_the_metadata_but_not_the_weights_is_refused(built, tmp_path):
    fake = forged(tmp_path, "fake.onnx", nudge=True)
    enc = Encoder(fake)
    assert enc.model_sha256 == Encoder(SHIPPED).model_sha256  # the metadata-only identity
    with pytest.raises(CatalogError) as err:
        Catalog.open(built / "cat", enc)
    assert "\n" not in str(err.value) and "bytes do not" in str(err.value)
    assert len(Catalog.open(built / "cat", Encoder(SHIPPED))) == 6  # same bytes: accepted


def test_the_manifest_model_path_does_not_pick_a_file_by_itself(built, tmp_path):
    root = tmp_path / "cat"
    shutil.copytree(built / "cat", root)
    gen = root / (root / CURRENT).read_text().strip()
    manifest = json.loads((gen / "manifest.json").read_text())
    planted = tmp_path / "planted.onnx"
    planted.write_bytes(b"not a model, and never to be parsed as one")
    manifest["model_path"] = str(planted)  # the manifest holds the checksums, not its own
    (gen / "manifest.json").write_text(json.dumps(manifest))
    cat = Catalog.open(root)  # before: Encoder(planted) -> "not a loadable ONNX model"
    assert str(cat.encoder.path) != str(planted) and len(cat) == 6
    remembered = Catalog.open(built / "cat")
    assert str(remembered.encoder.path) == str(built / "model.onnx")


def test_an_absurd_preprocessing_size_is_refused_at_load(tmp_path):
    big = forged(tmp_path, "big.onnx", size=40_000)
    with pytest.raises(ValueError, match="size 40000 is outside"):
        Encoder(big)
    write_products(tmp_path / "shop", 3)
    res = subprocess.run([sys.executable, "-m", "fai_infer", "index", str(tmp_path / "shop"),
                          "--model", str(big), "--out", str(tmp_path / "out")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "size 40000" in res.stderr, res.stderr[-1500:]
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    ok = forged(tmp_path, "ok.onnx", size=224)
    assert Encoder(ok).embed([np.zeros((30, 30, 3), np.uint8)]).shape == (1, Encoder(ok).dim)
