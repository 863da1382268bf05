"""The per-layer int8 report (export/layer_report.py): giving a layer back fp32 inside the int8
graph really computes it in fp32, so each row measures that layer and nothing else."""

from __future__ import annotations

import json

import onnx
import pytest

from export.layer_report import Samples, layers, main, quantised_nodes, restored, worst
from export.quantize import preprocessed, quantize_qdq
from export.synthetic import generated_squares
from fai_infer.image.preprocess import to_tensor
from fai_infer.model.info import ModelInfo
from tests.helpers import SHIPPED

SMALL = SHIPPED.with_name("fai-small-64-v2.onnx")  # 64 px: the whole report runs in seconds


@pytest.fixture(scope="module")
def quantised():
    data = SMALL.read_bytes()
    meta = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    spec = ModelInfo.from_metadata(meta, str(SMALL)).preprocess
    pre_bytes = preprocessed(data)
    calib = generated_squares(spec.size, 32, seed=3)
    q = onnx.load_from_string(quantize_qdq(pre_bytes, calib, spec))
    x = to_tensor(generated_squares(spec.size, 24, seed=9), spec)
    from export.layer_report import embed

    return q, onnx.load_from_string(pre_bytes), Samples({"s": x}, {"s": embed(data, x)})


def test_giving_every_layer_back_fp32_comes_back_to_fp32(quantised):
    """All but the stem's output rounding (the stem is fp32 in the recipe, not a layer of the
    report, and its output stays quantised): five times closer than all-int8, at least."""
    q, pre, samples = quantised
    units = layers(pre, quantised_nodes(pre, q))
    assert len(units) >= 4 and all(len(u.nodes) == 1 for u in units)
    names = {n for u in units for n in u.nodes}
    all_int8 = samples.judge(q.SerializeToString())["s"]
    back = samples.judge(restored(q, pre, names, names).SerializeToString())["s"]
    assert back["mean_cosine"] >= 0.9999 and 1 - back["mean_cosine"] < (1 - all_int8["mean_cosine"]) / 5
    assert back["min_cosine"] >= all_int8["min_cosine"]


def test_one_layer_back_changes_the_figures_and_leaves_the_graph_loadable(quantised):
    q, pre, samples = quantised
    units = layers(pre, quantised_nodes(pre, q))
    names = {n for u in units for n in u.nodes}
    base = samples.judge(q.SerializeToString())["s"]
    one = samples.judge(restored(q, pre, set(units[0].nodes), names).SerializeToString())["s"]
    assert one["mean_cosine"] != base["mean_cosine"]
    assert worst({"a": base, "b": one})["mean_cosine"] == min(base["mean_cosine"],
                                                              one["mean_cosine"])


def test_too_few_photos_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "styles.csv").write_text("id,split\n1,train\n2,val\n")
    assert main([str(SMALL), "--data", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("layer_report failed: too few photos") and "\n" not in err


def test_the_report_runs_end_to_end_and_picks_layers_that_pass(tmp_path):
    """Calibration and judging photos come from different splits; --select stops at the
    first set of fp32 layers whose re-quantised model clears the gate on every sample."""
    import cv2

    from export.quantize import MIN_TOP10_OVERLAP

    (tmp_path / "images").mkdir()
    squares = generated_squares(64, 180, seed=11)
    rows = ["id,split"]
    for i, sq in enumerate(squares):
        cv2.imwrite(str(tmp_path / "images" / f"{i}.jpg"), sq[..., ::-1])
        rows.append(f"{i},{'val' if i % 3 == 0 else 'train'}")
    (tmp_path / "styles.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "report.json"
    assert main([str(SMALL), "--data", str(tmp_path), "--calib-count", "100",
                 "--judge-count", "60", "--select", "--max-layers", "2",
                 "--margin", "0", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["calibration"] == "100 " + tmp_path.name + " train photos"
    assert report["judged_on"] == {f"{tmp_path.name} val": 60}
    assert len(report["layers"]) >= 4 and 1 <= len(report["selection"]) <= 2
    last = report["selection"][-1]["worst"]
    assert (last["top10_overlap"] >= MIN_TOP10_OVERLAP) or len(report["selection"]) == 2
    assert report["kept_fp32"] == report["selection"][-1]["kept"]
