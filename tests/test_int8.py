"""int8 on every CPU: the load-time self-check, its fp32 fallback, and the AVX2 kernel path
(run under qemu's emulated AVX2-only CPU when qemu-x86_64 is installed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

from export.emulate import embed_as_avx2, qemu
from export.quantize import MIN_MEAN_COSINE, MIN_TOP10_OVERLAP, top10_overlap
from fai_infer import Encoder
from fai_infer.model.cpu import int8_path
from fai_infer.model.int8_check import GOLDEN_KEY
from tests.helpers import MYNTRA, ROOT, SHIPPED

INT8 = SHIPPED.with_name("fai-lite0-v2.int8.onnx")
FP32 = SHIPPED.with_name("fai-lite0-v2.onnx")  # the fp32 file beside it
SMALL_INT8 = FP32.with_name("fai-small-64-v2.int8.onnx")
V3_INT8 = SHIPPED.with_name("fai-lite0-v3.int8.onnx")  # v3 twin (export/layer_report.py)
needs_qemu = pytest.mark.skipif(
    qemu() is None, reason="qemu-x86_64 not installed (apt-get install qemu-user): the AVX2 "
    "int8 kernel path cannot be checked on this CPU")


def sabotaged_int8(folder, with_fp32: bool = True):
    """A copy of the shipped int8 file with one block's weight scales quadrupled (a file whose
    kernels went wrong looks like this), beside the fp32 file when asked."""
    proto = onnx.load(str(INT8))
    inits = {i.name: i for i in proto.graph.initializer}
    made_by = {o: n for n in proto.graph.node for o in n.output}
    conv = next(n for n in proto.graph.node if n.op_type == "Conv" and "_blocks.8" in n.name
                and made_by.get(n.input[1]) is not None)
    dq = made_by[conv.input[1]]
    scale = inits[dq.input[1]]
    scale.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(scale) * 4,
                                                scale.name))
    out = folder / INT8.name
    onnx.save(proto, str(out))
    if with_fp32:
        os.symlink(FP32, folder / FP32.name)
    return out


@pytest.mark.parametrize("path", [V3_INT8, INT8, SMALL_INT8], ids=["default", "v2", "small"])
def test_shipped_int8_files_pass_their_self_check_here(path):
    enc = Encoder(path)
    check = enc.int8_check
    assert check is not None and check.passed, check  # the file carries golden inputs
    assert enc.path == path and not enc.runtime()["fallback"]
    assert check.cpu_path == int8_path() and check.mean_cosine >= MIN_MEAN_COSINE


def test_a_broken_int8_file_says_so_in_one_line_and_falls_back_to_fp32(tmp_path, capfd):
    broken = sabotaged_int8(tmp_path)
    enc = Encoder(broken)
    err = capfd.readouterr().err.strip()
    assert "\n" not in err and "int8 self-check failed" in err
    assert f"using {FP32.name} instead" in err and int8_path() in err
    assert enc.path == tmp_path / FP32.name and enc.requested_path == broken
    assert enc.info.quantization == "fp32" and not enc.int8_check.passed
    fp32 = Encoder(FP32)
    assert enc.model_sha256 == fp32.model_sha256  # a catalogue sees the fp32 model
    x = np.full((1, 224, 224, 3), 200, np.uint8)
    assert np.allclose(enc.embed_squares(x), fp32.embed_squares(x), atol=1e-6)


def test_a_broken_int8_file_without_fp32_beside_it_keeps_int8_and_says_so(tmp_path, capfd):
    broken = sabotaged_int8(tmp_path, with_fp32=False)
    enc = Encoder(broken)
    err = capfd.readouterr().err.strip()
    assert "\n" not in err and f"no fp32 file {FP32.name} beside it" in err
    assert enc.path == broken and enc.info.quantization.startswith("int8")


def test_damaged_golden_metadata_counts_as_a_failed_check(tmp_path, capfd):
    proto = onnx.load(str(INT8))
    for p in proto.metadata_props:
        if p.key == GOLDEN_KEY:
            data = json.loads(p.value)
            data["squares"]["shape"] = [2**40, 224, 224, 3]
            p.value = json.dumps(data)
    onnx.save(proto, str(tmp_path / INT8.name))
    os.symlink(FP32, tmp_path / FP32.name)
    enc = Encoder(tmp_path / INT8.name)
    assert "out of bounds" in capfd.readouterr().err and enc.info.quantization == "fp32"


def test_check_int8_false_and_fp32_files_skip_the_check():
    assert Encoder(INT8, check_int8=False).int8_check is None
    assert Encoder(FP32).int8_check is None


def test_fai_info_names_the_cpu_path_and_the_file_in_use(tmp_path):
    from fai_infer import Catalog

    photos = tmp_path / "photos"
    photos.mkdir()
    import cv2

    for i in range(3):
        cv2.imwrite(str(photos / f"p{i}.png"), np.full((40, 30, 3), 60 * i, np.uint8))
    broken = sabotaged_int8(tmp_path)
    Catalog.build(photos, encoder=Encoder(FP32)).save(tmp_path / "shop.cat")
    fai = [sys.executable, "-m", "fai_infer"]
    r = subprocess.run(fai + ["info", str(tmp_path / "shop.cat"), "--model", str(broken)],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert f"cpu: {int8_path()} int8 kernels; int8 self-check FAILED" in r.stdout
    assert f"instead of {broken}" in r.stdout and r.stderr.count("\n") == 1
    j = subprocess.run(fai + ["info", str(tmp_path / "shop.cat"), "--json"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    rt = json.loads(j.stdout)["runtime"]
    assert rt["file"] == str(FP32) and rt["cpu_int8_path"] == int8_path()


def myntra_squares(enc: Encoder, n: int) -> np.ndarray:
    if not (MYNTRA / "images").is_dir():
        pytest.skip(f"shared Myntra photos not found at {MYNTRA}")
    photos = sorted((MYNTRA / "images").glob("*.jpg"))[::30][:n]
    return np.stack([enc.prepare(p) for p in photos])


@needs_qemu
@pytest.mark.data
def test_shipped_int8_default_stays_within_its_gate_on_an_avx2_only_cpu():
    """The old recipe (8-bit weights in u8 x s8 pair sums) gave mean cosine 0.984 and top-10
    overlap 0.88 on AVX2-only CPUs (int16 saturation), though 0.998 / 0.975 here."""
    fp32 = Encoder(FP32)
    squares = myntra_squares(fp32, 60)
    ref, got = fp32.embed_squares(squares), embed_as_avx2(INT8, squares)
    assert float(np.sum(ref * got, axis=1).mean()) >= MIN_MEAN_COSINE
    assert top10_overlap(ref, got) >= 0.9  # a 60-photo sample: looser than the 0.95 gate
    here = Encoder(INT8, check_int8=False).embed_squares(squares)
    assert top10_overlap(ref, here) >= 0.9 and MIN_TOP10_OVERLAP == 0.95


@needs_qemu
@pytest.mark.parametrize("path", [V3_INT8, INT8], ids=["default", "v2"])
def test_self_check_runs_on_the_emulated_avx2_cpu_and_passes(path):
    code = ("from fai_infer.model.encoder import Encoder; import json, sys; "
            f"e = Encoder({str(path)!r}); print(json.dumps(e.runtime()))")
    r = subprocess.run([qemu(), "-cpu", __import__("export.emulate").emulate.AVX2_CPU,
                        sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=600, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"})
    assert r.returncode == 0, r.stderr[-500:]
    rt = json.loads(r.stdout.strip().splitlines()[-1])
    assert rt["cpu_int8_path"] == "avx2" and rt["int8_check"]["passed"] and not rt["fallback"]


@pytest.mark.parametrize("path", [V3_INT8, INT8, SMALL_INT8], ids=["default", "v2", "small"])
def test_no_pair_summed_int8_product_can_saturate_int16(path):
    """By construction, for every CPU: each conv whose kernels add u8 x s8 products in pairs
    (all but depthwise) has u8 weights (multiplied exactly) or 7-bit ones (2 x 255 x 64 <
    32767). The old default file had 8-bit s8 weights there (pairs up to 64770)."""
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    inits = {i.name: i for i in proto.graph.initializer}
    dq = {n.output[0]: n for n in proto.graph.node if n.op_type == "DequantizeLinear"}
    checked = 0
    for conv in (n for n in proto.graph.node if n.op_type == "Conv"):
        group = next((a.i for a in conv.attribute if a.name == "group"), 1)
        node = dq.get(conv.input[1])
        if node is None or group > 1:
            continue  # the fp32 stem; depthwise kernels accumulate in int32
        w = numpy_helper.to_array(inits[node.input[0]])
        checked += 1
        assert w.dtype == np.uint8 or np.abs(w.astype(np.int16)).max() <= 64, conv.name
    assert checked >= 4  # the seed family has 5 convs, its stem stays fp32


def test_the_v3_int8_twin_keeps_the_colour_part_in_fp32():
    """The colour histogram is a fixed computation over pixels: nothing that feeds the
    colour slice of the embedding (fai.embedding_parts) may be quantised."""
    proto = onnx.load(str(V3_INT8))
    meta = {p.key: p.value for p in proto.metadata_props}
    parts = json.loads(meta["fai.embedding_parts"])
    assert parts["colour"][0] == parts["garment"][1]  # garment first, colour after it
    made_by = {o: n for n in proto.graph.node for o in n.output}
    final = made_by[proto.graph.output[0].name]
    assert final.op_type == "Concat" and len(final.input) == 2
    seen, todo, ops = set(), [final.input[1]], []
    while todo:
        node = made_by.get(todo.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        ops.append(node.op_type)
        todo.extend(node.input)
    assert len(ops) > 20 and "Exp" in ops  # the soft histogram, found from the output
    assert not {"QuantizeLinear", "DequantizeLinear"} & set(ops)


def test_a_conv_kept_in_fp32_between_quantised_layers_stays_fp32():
    """onnxruntime re-quantises, at load, the float weights of a conv between a per-tensor
    DequantizeLinear and a QuantizeLinear (per-tensor int8); export.quantize gives such convs
    a per-channel DequantizeLinear, and the optimised session then computes what the graph
    says (the same graph run unoptimised)."""
    from onnx import TensorProto, helper, numpy_helper

    from export.quantize import fp32_islands_stay_fp32
    from fai_infer.model.ort import ort

    rng = np.random.default_rng(5)
    w = rng.normal(0, 0.05, (4, 1, 3, 3)).astype(np.float32)
    w[0] *= 300  # one large channel: a per-tensor int8 scale wipes out the small ones
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
         helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
         helper.make_node("Conv", ["xd", "w"], ["c"], name="dw", group=4, pads=[1, 1, 1, 1]),
         helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"]),
         helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])],
        [numpy_helper.from_array(np.float32(0.02), "s"),
         numpy_helper.from_array(np.uint8(0), "z"), numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.uniform(0, 5, (1, 4, 6, 6)).astype(np.float32)

    def run(optimise: bool) -> np.ndarray:
        so = ort.SessionOptions()
        if not optimise:
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(model.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        return sess.run(None, {"x": x})[0][:, 1:]  # the small channels

    assert np.abs(run(True) - run(False)).max() > 0.1  # re-quantised behind our back
    assert fp32_islands_stay_fp32(model) == 1
    assert np.abs(run(True) - run(False)).max() < 1e-5


def test_the_encoders_stem_stays_fp32_when_another_parts_conv_comes_first():
    """After quant_pre_process a colour part's convs can come first in node order; the
    encoder's own stem must still be the conv left in fp32 (v4's twin went int8 there)."""
    from onnx import TensorProto, helper

    from export.quantize import int8_recipe

    w = onnx.numpy_helper.from_array(np.ones((3, 3, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="/colour/cells/Conv"),
             helper.make_node("Conv", ["x", "w"], ["s"], name="/encoder/_conv_stem/Conv"),
             helper.make_node("Conv", ["s", "w"], ["y"], name="/encoder/_blocks.0/Conv")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 3, 4, 4])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], [w])
    excluded = int8_recipe(helper.make_model(graph))["nodes_to_exclude"]
    assert "/encoder/_conv_stem/Conv" in excluded
    assert "/encoder/_blocks.0/Conv" not in excluded
