"""A model whose metadata or graph contradicts itself is refused at load, in one line."""

import json

import onnx
import pytest

from fai_infer import Encoder
from tests.helpers import ROOT

# A small exported model (64 px): no training needed to have a real file to edit.
SMALL = ROOT / "models" / "fai-small-64-v2.onnx"
DIM = int(next(p.value for p in onnx.load(str(SMALL)).metadata_props
               if p.key == "fai.embedding_dim"))


def _meta(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _set(model: onnx.ModelProto, key: str, value: str) -> None:
    for p in model.metadata_props:
        if p.key == key:
            p.value = value
            return
    model.metadata_props.add(key=key, value=value)


def _spec(model: onnx.ModelProto, **changes) -> None:
    spec = json.loads(_meta(model)["fai.preprocess"])
    spec.update(changes)
    _set(model, "fai.preprocess", json.dumps(spec))


def _fix_batch(model: onnx.ModelProto) -> None:
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_value = 1


CASES = {
    "non-integer dim": (lambda m: _set(m, "fai.embedding_dim", "thirty-two"), "embedding_dim"),
    "fractional dim": (lambda m: _set(m, "fai.embedding_dim", "32.5"), "embedding_dim"),
    "zero dim": (lambda m: _set(m, "fai.embedding_dim", "0"), "embedding_dim"),
    "dim not the output's": (lambda m: _set(m, "fai.embedding_dim", str(DIM + 1)),
                             f"output has {DIM}"),
    "unparsable preprocessing": (lambda m: _set(m, "fai.preprocess", "{size: 32"),
                                 "preprocess"),
    "preprocessing not an object": (lambda m: _set(m, "fai.preprocess", "[1, 2]"),
                                    "preprocess"),
    "std of 0": (lambda m: _spec(m, std=[0.2, 0.0, 0.2]), "std"),
    "size 0": (lambda m: _spec(m, size=0), "size"),
    "negative size": (lambda m: _spec(m, size=-32), "size"),
    "size not a number": (lambda m: _spec(m, size="big"), "preprocess"),
    "two means": (lambda m: _spec(m, mean=[0.5, 0.5]), "preprocess"),
    "size not the graph's": (lambda m: (_spec(m, size=48), _set(m, "fai.input_size", "48")),
                             "size 48"),
    "fixed batch axis": (_fix_batch, "batch axis is fixed at 1"),
    "format version not a number": (lambda m: _set(m, "fai.format_version", "v2"),
                                     "format_version"),
}


def test_the_unedited_model_loads():
    assert Encoder(SMALL).dim == DIM


@pytest.mark.parametrize("case", list(CASES))
def test_bad_model_metadata_is_refused_at_load_naming_the_file(tmp_path, case):
    edit, expected = CASES[case]
    model = onnx.load(str(SMALL))
    edit(model)
    path = tmp_path / "edited-model.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ValueError) as err:
        Encoder(path)
    message = str(err.value)
    assert str(path) in message and expected in message, message
    assert "\n" not in message and "Traceback" not in message
