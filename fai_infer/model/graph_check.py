"""Refuse a hostile ONNX graph before onnxruntime loads it, without the ``onnx`` package.

onnxruntime runs whatever a graph says: a ``Loop`` whose condition never ends kept ``fai
index --model`` busy for good, and a ``ConstantOfShape`` of a 32 GB constant shape ended in an
allocation traceback (issue 33). An embedding network needs neither control flow nor a shape
made from a huge constant, so both are refused at load in one line.

Why a protobuf walk here: the runtime depends on onnxruntime, numpy, OpenCV and hnswlib only
(the ``onnx`` package is in the train extra), and onnxruntime's Python API exposes a session's
inputs and outputs, not its nodes. A model file is a protobuf ``ModelProto``; the walk reads
only node op types, their inputs, sub-graph attributes and small int64 constants, and skips
every other field (the weights) by its length, so a 100 MB model costs a few milliseconds.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fai_infer.safe_files import open_regular

CONTROL_FLOW = frozenset({"Loop", "If", "Scan", "SequenceMap"})
SHAPE_MAKERS = frozenset({"ConstantOfShape", "Expand", "Tile", "Range"})
MAX_MADE_ELEMENTS = 1 << 26  # elements one shape-making node may produce from constants
SMALL_CONSTANT = 64  # int constants kept (shapes, repeats, range bounds): a handful of values

# ONNX field numbers (onnx/onnx.proto)
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE, _GRAPH_INITIALIZER = 1, 5
_FUNCTION_NODE = 7
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP_TYPE, _NODE_ATTRIBUTE = 1, 2, 4, 5
_ATTR_T, _ATTR_G, _ATTR_GRAPHS = 5, 6, 11
_TENSOR_DIMS, _TENSOR_TYPE, _TENSOR_INT32, _TENSOR_INT64, _TENSOR_NAME, _TENSOR_RAW = \
    1, 2, 5, 7, 8, 9
_INT_TYPES = {6: np.int32, 7: np.int64}  # TensorProto.INT32, INT64


class GraphRefused(ValueError):
    """A model graph this runtime will not run; the message is one line."""


@dataclass
class _Node:
    op_type: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    subgraph: bool = False
    value: np.ndarray | None = None  # a Constant node's small int tensor


def _fields(buf: memoryview, start: int = 0, end: int | None = None):
    """(field number, wire type, value) of each field of one message; a length-delimited
    value is (offset, length) into ``buf``, never copied."""
    pos, end = start, len(buf) if end is None else end
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value = (pos, length)
            pos += length
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise GraphRefused("not an ONNX model (bad protobuf wire type)")
        if pos > end:
            raise GraphRefused("not an ONNX model (truncated protobuf)")
        yield number, wire, value


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise GraphRefused("not an ONNX model (truncated protobuf)")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _text(buf: memoryview, value) -> str:
    start, length = value
    return bytes(buf[start:start + length]).decode("utf-8", "replace")


def _small_int_tensor(buf: memoryview, start: int, length: int) -> tuple[str, np.ndarray | None]:
    """(name, values) of a TensorProto; values only for int32/int64 tensors of at most
    SMALL_CONSTANT elements (weights are skipped unread)."""
    name, dims, dtype, raw, packed = "", [], 0, None, []
    for number, wire, value in _fields(buf, start, start + length):
        if number == _TENSOR_NAME and wire == 2:
            name = _text(buf, value)
        elif number == _TENSOR_DIMS:
            if wire == 0:
                dims.append(value)
            elif wire == 2:
                dims += _packed(buf, value)
        elif number == _TENSOR_TYPE and wire == 0:
            dtype = value
        elif number == _TENSOR_RAW and wire == 2:
            raw = value
        elif number in (_TENSOR_INT32, _TENSOR_INT64):
            if wire == 0:
                packed.append(value)
            elif wire == 2 and value[1] <= 10 * SMALL_CONSTANT:
                packed += _packed(buf, value)
    count = int(np.prod(dims)) if dims else 1
    if dtype not in _INT_TYPES or count > SMALL_CONSTANT:
        return name, None
    if raw is not None:
        kind = np.dtype(_INT_TYPES[dtype]).newbyteorder("<")
        data = bytes(buf[raw[0]:raw[0] + raw[1]])
        if len(data) != count * kind.itemsize:
            return name, None
        return name, np.frombuffer(data, kind).astype(np.int64)
    signed = [v - (1 << 64) if v >= 1 << 63 else v for v in packed]
    return name, np.array(signed, np.int64) if len(signed) == count else None


def _packed(buf: memoryview, value) -> list[int]:
    out, pos, end = [], value[0], value[0] + value[1]
    while pos < end:
        v, pos = _varint(buf, pos)
        out.append(v)
    return out


def _node(buf: memoryview, start: int, length: int) -> _Node:
    node = _Node()
    for number, wire, value in _fields(buf, start, start + length):
        if wire != 2:
            continue
        if number == _NODE_OP_TYPE:
            node.op_type = _text(buf, value)
        elif number == _NODE_INPUT:
            node.inputs.append(_text(buf, value))
        elif number == _NODE_OUTPUT:
            node.outputs.append(_text(buf, value))
        elif number == _NODE_ATTRIBUTE:
            for a_number, a_wire, a_value in _fields(buf, value[0], value[0] + value[1]):
                if a_number in (_ATTR_G, _ATTR_GRAPHS) and a_wire == 2:
                    node.subgraph = True
                elif a_number == _ATTR_T and a_wire == 2:
                    node.value = _small_int_tensor(buf, *a_value)[1]
    return node


def _graph_nodes(buf: memoryview, start: int, length: int, node_field: int,
                 constants: dict[str, np.ndarray]) -> list[_Node]:
    nodes = []
    for number, wire, value in _fields(buf, start, start + length):
        if wire != 2:
            continue
        if number == node_field:
            nodes.append(_node(buf, *value))
        elif node_field == _GRAPH_NODE and number == _GRAPH_INITIALIZER:
            name, values = _small_int_tensor(buf, *value)
            if values is not None:
                constants[name] = values
    return nodes


def _made_elements(node: _Node, constants: dict[str, np.ndarray]) -> int | None:
    """Elements a shape-making node produces, where its shape inputs are constants (a
    lower bound for Expand and Tile, whose data input may be larger); None if unknown."""
    known = [constants.get(name) for name in node.inputs]
    if node.op_type in ("ConstantOfShape", "Expand"):
        shape = known[0] if node.op_type == "ConstantOfShape" else (
            known[1] if len(known) > 1 else None)
        return None if shape is None else int(np.prod(np.maximum(shape, 0), dtype=object))
    if node.op_type == "Tile":
        repeats = known[1] if len(known) > 1 else None
        return None if repeats is None else int(np.prod(np.maximum(repeats, 0), dtype=object))
    if node.op_type == "Range" and len(known) == 3 and all(k is not None and k.size == 1
                                                          for k in known):
        start, limit, delta = (int(k.ravel()[0]) for k in known)
        return 0 if delta == 0 else max(0, -(-(limit - start) // delta))
    return None


def check_graph(path: str | os.PathLike) -> None:
    """Raise GraphRefused (one line, without the path) unless the model at ``path`` is free of
    control flow and of shape-making nodes whose constant shapes exceed MAX_MADE_ELEMENTS."""
    fd = open_regular(Path(path), follow_symlinks=True)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise GraphRefused("not an ONNX model (empty file)")
        with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mapped:
            buf = memoryview(mapped)
            try:
                _check(buf)
            finally:
                buf.release()
    finally:
        os.close(fd)


def _check(buf: memoryview) -> None:
    constants: dict[str, np.ndarray] = {}
    nodes: list[_Node] = []
    for number, wire, value in _fields(buf):
        if number == _MODEL_GRAPH and wire == 2:
            nodes += _graph_nodes(buf, *value, _GRAPH_NODE, constants)
        elif number == _MODEL_FUNCTIONS and wire == 2:
            nodes += _graph_nodes(buf, *value, _FUNCTION_NODE, constants)
    for node in nodes:
        if node.op_type == "Constant" and node.value is not None and node.outputs:
            constants[node.outputs[0]] = node.value
    for node in nodes:
        if node.op_type in CONTROL_FLOW or node.subgraph:
            raise GraphRefused(f"its graph has control flow ({node.op_type or 'a sub-graph'}"
                               f"), which neither the encoder nor the garment parser ever needs")
        if node.op_type in SHAPE_MAKERS:
            made = _made_elements(node, constants)
            if made is not None and made > MAX_MADE_ELEMENTS:
                raise GraphRefused(f"its {node.op_type} node makes {made:,} elements from "
                                   f"constants, over the {MAX_MADE_ELEMENTS:,} limit")
