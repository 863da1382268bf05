"""Issue 33, point 6: hostile model graphs are refused at load in one line.

Before: a graph whose output passed through an endless ``Loop`` loaded, and the first embedding
never returned (``fai index --model`` gave no answer in 60 s); a ``ConstantOfShape`` of a 32 GB
constant shape ended in an onnxruntime traceback. Each forged model here is the small shipped
network with one such node on its output path; each must be refused by ``Encoder`` in one line
naming the file, in a child process with a timeout (a regression hangs a child, not pytest)."""

from __future__ import annotations

import resource
import subprocess
import sys

import numpy as np
import pytest

from fai_infer.model.graph_check import GraphRefused, check_graph
from tests.helpers import ROOT

onnx = pytest.importorskip("onnx", reason="needs onnx (the train extra) to forge models")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

SMALL = ROOT / "models" / "fai-small-64-v2.onnx"


def with_tail(tmp_path, name: str, make_tail) -> str:
    """The small model with ``make_tail(graph, src, dst)`` between its last node (now writing
    ``src``) and the graph's output ``dst``."""
    model = onnx.load(str(SMALL))
    graph = model.graph
    out = graph.output[0].name
    for node in graph.node:
        node.output[:] = ["pre-tail" if o == out else o for o in node.output]
        node.input[:] = ["pre-tail" if i == out else i for i in node.input]
    make_tail(graph, "pre-tail", out)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return str(path)


def endless_loop(graph, src, dst):
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Identity", ["v_in"], ["v_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)])
    graph.initializer.append(numpy_helper.from_array(np.array(True), "tail-true"))
    graph.node.append(helper.make_node("Loop", ["", "tail-true", src], [dst], body=body))


def summed_into(graph, src: str, dst: str, made: str) -> None:
    """dst = src + sum(made): the made tensor is on the output path, shapes stay valid."""
    graph.node.append(helper.make_node("ReduceSum", [made], ["tail-sum"], keepdims=0))
    graph.node.append(helper.make_node("Add", [src, "tail-sum"], [dst]))


def huge_constant_of_shape(graph, src, dst):
    graph.initializer.append(numpy_helper.from_array(np.array([8, 1 << 30], np.int64),
                                                     "tail-shape"))
    graph.node.append(helper.make_node("ConstantOfShape", ["tail-shape"], ["tail-made"],
                                       value=numpy_helper.from_array(np.ones(1, np.float32))))
    summed_into(graph, src, dst, "tail-made")


def huge_tile(graph, src, dst):
    graph.initializer.append(numpy_helper.from_array(np.ones(1, np.float32), "tail-one"))
    graph.node.append(helper.make_node(
        "Constant", [], ["tail-reps"],
        value=numpy_helper.from_array(np.array([1 << 33], np.int64))))
    graph.node.append(helper.make_node("Tile", ["tail-one", "tail-reps"], ["tail-made"]))
    summed_into(graph, src, dst, "tail-made")


def huge_range(graph, src, dst):
    for name, v in (("tail-a", 0), ("tail-b", 1 << 40), ("tail-d", 1)):
        graph.initializer.append(numpy_helper.from_array(np.array(v, np.int64), name))
    graph.node.append(helper.make_node("Range", ["tail-a", "tail-b", "tail-d"], ["tail-r"]))
    graph.node.append(helper.make_node("Cast", ["tail-r"], ["tail-made"],
                                       to=TensorProto.FLOAT))
    summed_into(graph, src, dst, "tail-made")


CASES = {"Loop": endless_loop, "ConstantOfShape": huge_constant_of_shape, "Tile": huge_tile,
         "Range": huge_range}

CHILD = r"""
import sys
import numpy as np
from fai_infer import Encoder
try:
    enc = Encoder(sys.argv[1])
    enc.embed_squares(np.zeros((1, enc.spec.size, enc.spec.size, 3), np.uint8))
    print("LOADED AND RAN")
except (ValueError, OSError) as exc:
    print("REFUSED", exc)
"""


def limited() -> None:
    """A forged 32 GB allocation must fail in the child, not swap the machine."""
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


@pytest.mark.parametrize("op", sorted(CASES))
def test_hostile_graph_is_refused_at_load_in_one_line(tmp_path, op):
    path = with_tail(tmp_path, op, CASES[op])
    try:
        res = subprocess.run([sys.executable, "-c", CHILD, path], cwd=ROOT, capture_output=True,
                             text=True, timeout=60, preexec_fn=limited)
    except subprocess.TimeoutExpired:
        pytest.fail(f"a model with a hostile {op} loaded and ran for over 60 s")
    lines = res.stdout.strip().splitlines()
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("REFUSED"), (lines, res.stderr[-1000:])
    assert op in lines[0] and f"{op}.onnx" in lines[0], lines[0]


def test_the_shipped_models_pass_the_graph_check():
    models = sorted((ROOT / "models").glob("*.onnx"))
    assert models
    for path in models:
        check_graph(path)


def test_a_file_that_is_not_a_model_is_one_line(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"\xff" * 64)
    with pytest.raises(GraphRefused, match="not an ONNX model"):
        check_graph(tmp_path / "x.onnx")
