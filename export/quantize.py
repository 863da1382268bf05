"""Static int8 quantisation (QDQ, uint8 activations, per-channel weights), gated on quality
and free of int16 saturation on every CPU by construction.

Why "by construction": onnxruntime's u8 x s8 kernels on CPUs without VNNI (AVX2, AVX-512
without VNNI) multiply with ``vpmaddubsw``, which adds each pair of u8 x s8 products in int16
and saturates past 32767. With 8-bit weights (|w| <= 127) and u8 activations a pair reaches
64770, so the same file that matched fp32 on a VNNI CPU (mean cosine 0.998) gave 0.984 and a
top-10 overlap of 0.88 on an AVX2-only one. Only convs that add products in pairs are at risk:
the depthwise kernels accumulate in int32 (measured: identical results on both paths).

Two settings, picked by the network's shape (:func:`int8_recipe`):

- plain convolutions (the seed family): only the convs, with reduce_range (7-bit weights:
  2 x 255 x 64 < 32767). ~1.9x faster than fp32 on the seed encoder; dynamic quantisation
  and S8S8 QOperator were slower than fp32.
- depthwise-separable networks (EfficientNet-Lite): every conv but the stem, *and* the ReLU6
  clips, residual adds and the global pool (whole int8 blocks; quantising the convs alone left
  fp32 islands that ran slower than fp32). Depthwise convs keep 8-bit s8 weights. The
  pair-summed 1x1 convs: *project* convs (a block's 6x-wide depthwise output back to its
  width, no activation after) take uint8 weights, which onnxruntime multiplies exactly (u8 x u8
  widened to 16 bits, summed in 32) on every CPU; *expand* convs and the head take 7-bit s8
  weights. Measured on 100 Myntra photos: 7-bit everywhere 0.9956 / top-10 0.951 (too close
  to the gate), u8 project convs 0.9979 / 0.968, u8 everywhere 0.9982 / 0.970 but u8 x u8 runs
  at about fp32 speed on a VNNI CPU. The stem sees raw pixels through 3 channels: it gains
  nothing from int8 and costs accuracy, so it stays fp32.

``python -m export.onnx --int8 --check-avx2`` also judges the gate on an emulated AVX2-only
CPU (export/emulate.py), and every int8 file carries golden inputs for the load-time
self-check (fai_infer/model/int8_check.py).
"""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path

import numpy as np
import onnx

from fai_infer.model.ort import ort  # first: telemetry off before onnxruntime loads
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

from export.synthetic import generated_squares
from fai_infer.model.cpu import cpu_flags, int8_path
from fai_infer.model.int8_check import golden_metadata
from fai_infer.image.preprocess import PreprocessSpec, to_tensor

MIN_MEAN_COSINE = 0.99
MIN_TOP10_OVERLAP = 0.95


class QuantizationGateError(RuntimeError):
    """int8 embeddings drifted too far from fp32: the int8 file is not written."""


class SquaresReader(CalibrationDataReader):
    def __init__(self, squares: np.ndarray, spec: PreprocessSpec, batch: int = 16):
        # Equal batches only: the histogram calibrators stack every batch's outputs.
        usable = max(batch, len(squares) - len(squares) % batch)
        self.batches = [to_tensor(squares[i : i + batch], spec)
                        for i in range(0, min(usable, len(squares)), batch)]
        self.i = 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {"image": self.batches[self.i - 1]}


def depthwise_convs(proto: onnx.ModelProto) -> list[str]:
    """Convolutions with one filter per channel group (MobileNet-style depthwise)."""
    return [n.name for n in proto.graph.node if n.op_type == "Conv"
            and any(a.name == "group" and a.i > 1 for a in n.attribute)]


def pair_summed_weights(proto: onnx.ModelProto, exclude: list[str]) -> dict[str, str]:
    """{weight initializer: "project" | "other"} for the quantised convs whose int8 products
    onnxruntime adds in pairs: every conv but the depthwise ones (its depthwise kernels
    accumulate in int32). "project" convs read a depthwise conv's output (through its ReLU6)."""
    inits = {i.name for i in proto.graph.initializer}
    dw = set(depthwise_convs(proto))
    made_by = {o: n for n in proto.graph.node for o in n.output}

    def after_depthwise(tensor: str) -> bool:
        node = made_by.get(tensor)
        while node is not None and node.op_type in ("Clip", "Relu"):
            node = made_by.get(node.input[0])
        return node is not None and node.name in dw

    return {n.input[1]: "project" if after_depthwise(n.input[0]) else "other"
            for n in proto.graph.node if n.op_type == "Conv" and n.name not in dw
            and n.name not in exclude and len(n.input) > 1 and n.input[1] in inits}


# Pair-summed weights of depthwise-separable networks, by construction free of int16
# saturation on every CPU (u8 activations <= 255):
# - project convs (6x wider input, no activation after them: the most sensitive, measured)
#   take uint8 weights: onnxruntime's u8 x u8 kernels widen to 16 bits and sum in 32;
# - the others (expand, head) take 7-bit weights (|w| <= 64: 2 x 255 x 64 < 32767).
PAIR_SUMMED_WEIGHTS = {"project": {"quant_type": QuantType.QUInt8},
                       "other": {"reduce_range": True}}
# The exact recipe, for networks whose 7-bit expand/head weights miss the gate: every
# pair-summed weight u8 (exact on every CPU; measured 0.998 / 0.970 on v2, but ~1.1x fp32).
EXACT_WEIGHTS = {"project": {"quant_type": QuantType.QUInt8},
                 "other": {"quant_type": QuantType.QUInt8}}
EXACT_FP32_TAIL = ("/encoder/_blocks.15/", "/encoder/_conv_head/")
RECIPES = ("fast", "exact")  # tried in turn; the first that passes the gate is written


def int8_recipe(proto: onnx.ModelProto, recipe: str = "fast",
                keep_fp32: tuple[str, ...] = ()) -> dict:
    """quantize_static settings for this network (see the module docstring for why); the
    first conv (the stem) stays fp32 in both. ``recipe="exact"``: u8 for every pair-summed
    weight of a depthwise-separable network (slower, closer to fp32). ``keep_fp32``: node-name
    prefixes also left in fp32 (the layers a per-layer report found to lose the gate,
    export/layer_report.py)."""
    # The encoder's first conv, not the graph's: after quant_pre_process a colour part's convs
    # can come first in node order, and the real stem then went int8 (v4's twin missed its gate
    # by that alone).
    convs = [n.name for n in proto.graph.node if n.op_type == "Conv"]
    stem = [c for c in convs if c.startswith("/encoder/")][:1] or convs[:1]
    stem += [n.name for n in proto.graph.node if keep_fp32 and n.name.startswith(keep_fp32)]
    # The colour part (train/colour.py: a soft histogram of the photo's colours) and anything
    # else outside the backbone and its head stay fp32: a handful of cheap element-wise ops
    # whose clips and sums lose the histogram's small bins when quantised.
    outside = [n.name for n in proto.graph.node
               if n.op_type in ("Clip", "Add", "Conv", "GlobalAveragePool")
               and not n.name.startswith(("/encoder/", "/head/"))]
    stem = stem + outside
    if recipe == "exact":  # the last block and the head conv stay fp32 too: errors there
        stem += [n.name for n in proto.graph.node  # reach the embedding unattenuated
                 if n.name.startswith(EXACT_FP32_TAIL)]
    if depthwise_convs(proto):
        weights = EXACT_WEIGHTS if recipe == "exact" else PAIR_SUMMED_WEIGHTS
        overrides = {w: [{"axis": 0, **weights[role]}]
                     for w, role in pair_summed_weights(proto, stem).items()}
        return {"op_types_to_quantize": ["Conv", "Clip", "Add", "GlobalAveragePool"],
                "nodes_to_exclude": stem, "reduce_range": False,
                "extra_options": {"TensorQuantOverrides": overrides}}
    return {"op_types_to_quantize": ["Conv"], "nodes_to_exclude": stem, "reduce_range": True}


def judged_here() -> dict:
    """The CPU a gate was judged on: its int8 kernel path, flags and onnxruntime version."""
    return {"cpu_int8_path": int8_path(), "cpu_flags": list(cpu_flags()),
            "onnxruntime": ort.__version__, "machine": platform.machine()}


def _embed(model: bytes | str, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"image": x[i : i + 32]})[0]
                           for i in range(0, len(x), 32)])


def top10_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of each photo's 10 nearest neighbours (itself left out) kept by ``b``."""
    k = min(10, len(a) - 1)

    def nn(e: np.ndarray) -> np.ndarray:
        s = e @ e.T
        np.fill_diagonal(s, -np.inf)
        return np.argsort(-s, axis=1)[:, :k]

    na, nb = nn(a), nn(b)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(na, nb)]))


def agreement(ref: np.ndarray, got: np.ndarray) -> dict:
    """Mean and min cosine, top-10 overlap of int8 embeddings ``got`` with fp32 ``ref``."""
    cos = np.sum(ref * got, axis=1) / np.maximum(
        np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1), 1e-12)
    return {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()),
            "top10_overlap": top10_overlap(ref, got)}


def passes(figures: dict) -> bool:
    return (figures["mean_cosine"] >= MIN_MEAN_COSINE
            and figures["top10_overlap"] >= MIN_TOP10_OVERLAP)


GOLDEN_COUNT, GOLDEN_SEED = 3, 23


def golden_squares(size: int) -> np.ndarray:
    """The inputs an int8 file carries for its load-time self-check (fai_infer.model.int8_check)."""
    return generated_squares(size, GOLDEN_COUNT, seed=GOLDEN_SEED)


def golden_metadata_for(fp32: bytes, spec: PreprocessSpec) -> dict[str, str]:
    """fai.int8_golden: the golden squares and the fp32 model's embeddings of them."""
    squares = golden_squares(spec.size)
    emb = _embed(fp32, to_tensor(squares, spec))
    return golden_metadata(squares, emb / np.linalg.norm(emb, axis=1, keepdims=True))


def quantize_int8(fp32: bytes, calib_squares: np.ndarray, spec: PreprocessSpec,
                  eval_squares: np.ndarray | None = None, log=print, gate: bool = True,
                  avx2: bool = False, keep_fp32: tuple[str, ...] = (),
                  calibration: str = "minmax") -> tuple[bytes, dict]:
    """-> (int8 model bytes, figures). Raises QuantizationGateError when the gate is missed
    (unless gate=False, for benchmarks); the figures are printed either way. ``avx2``: also
    judge the gate on an emulated AVX2-only CPU (export/emulate.py, needs qemu-x86_64).
    ``keep_fp32``: node-name prefixes left in fp32 on top of the recipe's own;
    ``calibration``: see :func:`quantize_qdq`."""
    eval_squares = calib_squares if eval_squares is None else eval_squares
    failed: QuantizationGateError | None = None
    for recipe in RECIPES:
        try:
            q_bytes, figures = _quantize_with(recipe, fp32, calib_squares, spec, eval_squares,
                                              log, gate, avx2, tuple(keep_fp32), calibration)
            if failed is not None:
                figures["faster_recipe_failed"] = str(failed)
            return q_bytes, figures
        except QuantizationGateError as exc:
            failed = exc
            if recipe != RECIPES[-1]:
                log(f"the {recipe} int8 recipe missed the gate; trying the {RECIPES[-1]} one")
    raise failed


def preprocessed(fp32: bytes) -> bytes:
    """The fp32 graph as the quantiser sees it: the exporter's Constant nodes folded into
    initializers (a conv whose bias is not an initializer keeps an fp32 bias, and onnxruntime
    cannot fuse it into QLinearConv)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        src.write_bytes(fp32)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        return pre.read_bytes()


CALIBRATIONS = ("minmax", "moving-average")


def quantize_qdq(pre: bytes, calib_squares: np.ndarray, spec: PreprocessSpec,
                 recipe: str = "fast", keep_fp32: tuple[str, ...] = (),
                 calibration: str = "minmax") -> bytes:
    """A :func:`preprocessed` fp32 graph -> its QDQ int8 graph (not judged: see
    :func:`quantize_int8`). ``calibration="moving-average"``: each activation's range is the
    mean of the per-batch ranges rather than the extremes over all photos, so one outlier
    photo does not coarsen a tensor's steps for every other (fai-lite0 v3 needed it)."""
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration {calibration!r}: expected one of {CALIBRATIONS}")
    settings = int8_recipe(onnx.load_from_string(pre), recipe, keep_fp32)
    if calibration == "moving-average":
        settings["extra_options"] = {**settings.get("extra_options", {}),
                                     "CalibMovingAverage": True}
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(pre)
        quantize_static(str(src), str(dst), SquaresReader(calib_squares, spec),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=CalibrationMethod.MinMax, **settings)
        q = onnx.load(str(dst))
    fp32_islands_stay_fp32(q)
    return q.SerializeToString()


def fp32_islands_stay_fp32(q: onnx.ModelProto) -> int:
    """Give each fp32 conv that reads a dequantised tensor its own per-channel
    DequantizeLinear (the same scale repeated) -> how many. Why: onnxruntime's
    WeightBiasQuantization re-quantises, at load, the float weights of any conv fed by a
    per-tensor DequantizeLinear, to *per-tensor* int8 (a depthwise conv then loses most of
    its small channels), so a layer kept in fp32 would silently run int8, worse than the
    quantiser's per-channel weights. A per-channel scale is outside that rule."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in q.graph.initializer}
    made_by = {o: n for n in q.graph.node for o in n.output}
    added = 0
    for pos in range(len(q.graph.node) - 1, -1, -1):
        conv = q.graph.node[pos]
        if conv.op_type != "Conv" or len(conv.input) < 2 or conv.input[1] not in inits:
            continue  # not a conv with float weights
        dq = made_by.get(conv.input[0])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[1] not in inits:
            continue
        scale, zero = (numpy_helper.to_array(inits[t]) for t in dq.input[1:3])
        if scale.ndim:
            continue
        group = next((a.i for a in conv.attribute if a.name == "group"), 1)
        channels = int(inits[conv.input[1]].dims[1]) * group
        stem = f"{conv.name}_input_per_channel"
        q.graph.initializer.extend([
            numpy_helper.from_array(np.full(channels, scale, scale.dtype), stem + "_scale"),
            numpy_helper.from_array(np.full(channels, zero, zero.dtype), stem + "_zero_point")])
        q.graph.node.insert(pos, helper.make_node(
            "DequantizeLinear", [dq.input[0], stem + "_scale", stem + "_zero_point"],
            [stem], name=stem, axis=1))
        conv.input[0] = stem
        added += 1
    return added


def _quantize_with(recipe: str, fp32: bytes, calib_squares: np.ndarray, spec: PreprocessSpec,
                   eval_squares: np.ndarray, log, gate: bool, avx2: bool,
                   keep_fp32: tuple[str, ...] = (), calibration: str = "minmax"
                   ) -> tuple[bytes, dict]:
    """One recipe's int8 model and its figures (see :func:`quantize_int8`)."""
    q_bytes = quantize_qdq(preprocessed(fp32), calib_squares, spec, recipe, keep_fp32,
                           calibration)
    x = to_tensor(eval_squares, spec)
    ref, got = _embed(fp32, x), _embed(q_bytes, x)
    figures = {**agreement(ref, got), "photos": int(len(eval_squares)),
               "calibration_photos": int(len(calib_squares)),
               "gate": {"mean_cosine": MIN_MEAN_COSINE, "top10_overlap": MIN_TOP10_OVERLAP},
               "judged_on": judged_here(), "recipe": recipe}
    if keep_fp32:
        figures["kept_fp32"] = list(keep_fp32)
    figures["calibration"] = calibration
    ok = passes(figures)
    log(f"int8 vs fp32 on {len(eval_squares)} photos ({figures['judged_on']['cpu_int8_path']} "
        f"kernels): mean cosine {figures['mean_cosine']:.4f} (gate {MIN_MEAN_COSINE}), top-10 "
        f"overlap {figures['top10_overlap']:.3f} (gate {MIN_TOP10_OVERLAP}) -> "
        f"{'PASS' if ok else 'FAIL'}")
    where, shown = "", figures
    if avx2:
        from export.emulate import AVX2_CPU, embed_as_avx2

        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "q.onnx").write_bytes(_with_fp32_metadata(q_bytes, fp32))
            emulated = embed_as_avx2(Path(tmp) / "q.onnx", eval_squares)
        figures["avx2_emulated"] = {**agreement(ref, emulated), "passed": passes(
            agreement(ref, emulated)), "qemu_cpu": AVX2_CPU, "cpu_int8_path": "avx2"}
        e = figures["avx2_emulated"]
        log(f"int8 vs fp32 on the same photos, emulated AVX2-only CPU: mean cosine "
            f"{e['mean_cosine']:.4f}, top-10 overlap {e['top10_overlap']:.3f} -> "
            f"{'PASS' if e['passed'] else 'FAIL'}")
        if ok and not e["passed"]:
            where, shown, ok = " on an emulated AVX2-only CPU", e, False
    figures["passed"] = ok
    if gate and not ok:
        raise QuantizationGateError(
            f"int8 quality gate failed{where}: mean cosine {shown['mean_cosine']:.4f} "
            f"(needs >= {MIN_MEAN_COSINE}), top-10 overlap {shown['top10_overlap']:.3f} "
            f"(needs >= {MIN_TOP10_OVERLAP}); the int8 file was not written")
    return q_bytes, figures


def _with_fp32_metadata(q_bytes: bytes, fp32: bytes) -> bytes:
    """The int8 graph with the fp32 file's fai.* metadata, so fai_infer's Encoder loads it."""
    q, src = onnx.load_from_string(q_bytes), onnx.load_from_string(fp32)
    del q.metadata_props[:]
    q.metadata_props.extend(src.metadata_props)
    return q.SerializeToString()
