"""A torch module -> an ONNX graph, and an onnxruntime session for one held in memory.

Why in ``train``: evaluation and the test-size choice run the encoder as it will be exported
(several times torch's CPU speed, the shipped numerics), and ``export/onnx.py`` builds the
shipped file with the same two functions; here neither package imports the other both ways.
Imports torch, onnx and onnxruntime only, never another ``train`` module.
"""

from __future__ import annotations

import io
import math
import warnings

import onnx
import torch

from fai_infer.model.ort import ort


def fold_pads_into_convs(proto: onnx.ModelProto) -> onnx.ModelProto:
    """TF-'SAME' padding exports as a Pad node (fed by a small shape subgraph) before each
    stride-2 convolution. onnxruntime cannot fuse those, and each one forces a layout change in
    and out of its blocked-channel convolutions (measured: 4.8 ms instead of about 2.5 ms per
    photo for EfficientNet-Lite0 at 160 px). With the input size fixed the amounts are known, so
    they move into the Conv's own ``pads`` attribute, which takes asymmetric padding, and the
    subgraph that computed them is dropped. Constant zero padding only; anything else stays.
    Shapes are known only up to the first unfolded Pad, so it folds in rounds."""
    while _fold_known_pads(proto):
        pass
    keep = list(proto.graph.node)
    needed = {o.name for o in proto.graph.output}
    live = []
    for node in reversed(keep):  # drop what no longer feeds an output
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(node.input)
    del proto.graph.node[:]
    proto.graph.node.extend(reversed(live))
    return proto


def _fold_known_pads(proto: onnx.ModelProto) -> int:
    """One round of :func:`fold_pads_into_convs`: the Pads whose input shape is known now."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.input]}
    consumers: dict[str, list] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    drop = set()
    for pad in [n for n in proto.graph.node if n.op_type == "Pad"]:
        users = consumers.get(pad.output[0], [])
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        shape = shapes.get(pad.input[0], [])
        if (len(users) != 1 or users[0].op_type != "Conv" or mode != b"constant"
                or len(shape) != 4 or not all(shape[2:]) or (len(pad.input) > 2 and pad.input[2])):
            continue
        conv = users[0]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}
        if any(attrs.get("pads", [0])) or attrs.get("auto_pad", b"NOTSET") != b"NOTSET":
            continue
        pads = []
        for size, k, s in zip(shape[2:], attrs["kernel_shape"], attrs.get("strides", [1, 1])):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        conv.input[0] = pad.input[0]
        kept = [a for a in conv.attribute if a.name != "pads"]
        del conv.attribute[:]
        conv.attribute.extend(kept)
        conv.attribute.append(onnx.helper.make_attribute(
            "pads", [pads[0][0], pads[1][0], pads[0][1], pads[1][1]]))
        drop.add(pad.name)
    keep = [n for n in proto.graph.node if n.name not in drop]
    del proto.graph.node[:]
    proto.graph.node.extend(keep)
    return len(drop)


def to_onnx_proto(model: torch.nn.Module, size: int, opset: int,
                  output: str = "embedding") -> onnx.ModelProto:
    """A network taking (batch, 3, size, size) ``image`` -> the checked ONNX graph with one
    output named ``output`` (the encoder's ``embedding``, the parser's ``logits``): the
    TorchScript exporter, fixed input size, dynamic batch, Pads folded into the convs."""
    buf = io.BytesIO()
    dummy = torch.zeros(1, 3, size, size)
    with warnings.catch_warnings():
        # TF-'SAME' padding reads the input size as a Python int: a constant in the graph is
        # exactly right here (the exported input size is fixed; only the batch is dynamic).
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding")
        torch.onnx.export(model, (dummy,), buf, input_names=["image"],
                          output_names=[output],
                          dynamic_axes={"image": {0: "batch"}, output: {0: "batch"}},
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    proto = fold_pads_into_convs(onnx.load_from_string(buf.getvalue()))
    onnx.checker.check_model(proto)
    return proto


def session(model_bytes: bytes, threads: int = 0) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
