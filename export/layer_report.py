"""python -m export.layer_report MODEL.onnx: which layers an int8 copy must keep in fp32.

A whole-model gate says only *that* an int8 copy drifted from fp32, not *where*. This report
quantises the whole network once (export/quantize.py's recipe), then gives back fp32 to one
layer at a time (a conv, whose clip the quantiser folds into its output; a residual add; the
pool) and measures what each gives back: mean cosine and top-10 overlap against fp32 on fixed
photo samples that the calibration never saw. Giving a layer back rewires the int8 graph
itself (its fp32 weights; its output read unrounded where no int8 layer reads it), so every
row shares one calibration and costs one pass over the samples.

``--select`` then keeps layers in fp32, largest gain first, re-quantising with them excluded
(quantize_static's own exclusion) at each step, until the gate holds on every sample with
``--margin`` to spare; ``--write`` writes with those layers (or ``--keep-fp32``) excluded,
judges the gate on this CPU and, with ``--check-avx2``, on an emulated AVX2-only CPU
(export/emulate.py), adds the golden inputs and writes NAME.int8.onnx beside the model, as
``export.onnx --int8`` does. The colour part stays fp32 whatever the report says
(export/quantize.py: ``int8_recipe``).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from fai_infer.model.ort import ort  # first: telemetry off before onnxruntime loads
from export.quantize import (CALIBRATIONS, MIN_MEAN_COSINE, MIN_TOP10_OVERLAP, agreement,
                             fp32_islands_stay_fp32, preprocessed, quantize_qdq)
from fai_infer.image.preprocess import PreprocessSpec, to_tensor
from fai_infer.model.info import META_PREFIX, ModelInfo

QUANTISED_OPS = ("Conv", "Clip", "Add", "GlobalAveragePool")


@dataclass(frozen=True)
class Layer:
    """One unit of the report: a short label and the graph nodes it covers."""

    label: str
    nodes: tuple[str, ...]


def _label(name: str) -> str:
    """'/encoder/_blocks.3/_expand_conv/Conv' -> 'block 3 expand'."""
    parts = [p for p in name.split("/") if p]
    if len(parts) > 1 and parts[1].startswith("_blocks."):
        what = parts[2].replace("_conv", "").strip("_") if len(parts) > 3 else parts[2].lower()
        return f"block {parts[1].split('.')[1]} {what}"
    return " ".join(p.strip("_").replace("_conv", "").lower() for p in parts[1:-1]) or name


def layers(pre: onnx.ModelProto, quantised: set[str]) -> list[Layer]:
    """The quantised units of a graph, in graph order: each conv (the clip after it is folded
    into its output's quantisation), each residual add, the pool."""
    return [Layer(_label(n.name), (n.name,)) for n in pre.graph.node if n.name in quantised]


def quantised_nodes(pre: onnx.ModelProto, q: onnx.ModelProto) -> set[str]:
    """Names of the pre-processed graph's nodes that read a dequantised tensor in ``q``."""
    dq_out = {o for n in q.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    names = {n.name for n in pre.graph.node if n.op_type in QUANTISED_OPS}
    return {n.name for n in q.graph.node if n.name in names and (
        n.input[1] in dq_out if n.op_type == "Conv" else any(t in dq_out for t in n.input))}


def restored(q: onnx.ModelProto, pre: onnx.ModelProto, names: set[str],
             quantised: set[str] = frozenset()) -> onnx.ModelProto:
    """``q`` with the nodes ``names`` computing in fp32 again, as quantize_static's exclusion
    would leave them: fp32 weights; the activation clip the quantiser folded into their
    output's quantisation put back; their outputs read unrounded by every node that is not
    still quantised (``quantised`` minus ``names``). Their inputs stay as a quantised
    producer leaves them. What no longer feeds anything is dropped."""
    out = onnx.ModelProto()
    out.CopyFrom(q)
    g = out.graph
    src = {n.name: n for n in pre.graph.node}
    pre_inits = {i.name: i for i in pre.graph.initializer}
    pre_readers: dict[str, list[onnx.NodeProto]] = {}
    for n in pre.graph.node:
        for t in n.input:
            pre_readers.setdefault(t, []).append(n)
    have = {i.name for i in g.initializer}
    made = {o for n in g.node for o in n.output}
    still = set(quantised) - set(names)
    added: list[tuple[int, onnx.NodeProto]] = []
    for pos, n in enumerate(g.node):
        if n.name not in names:
            continue
        for k, t in enumerate(src[n.name].input):
            if t not in pre_inits:
                continue  # an activation: left as its producer makes it
            name = t + "_fp32" if t in made else t  # the dequantised copy may bear its name
            if name not in have:
                init = onnx.TensorProto()
                init.CopyFrom(pre_inits[t])
                init.name = name
                g.initializer.append(init)
                have.add(name)
            n.input[k] = name
        raw = src[n.name].output[0]
        if n.output[0] != raw:  # the quantiser folded the clip after it into its output
            clip = next(c for c in pre_readers[raw] if c.op_type == "Clip")
            put_back = onnx.NodeProto()
            put_back.CopyFrom(clip)
            put_back.name = clip.name + "_fp32"
            put_back.input[0] = n.output[0] + "_unclipped"
            put_back.output[0] = n.output[0]
            n.output[0] = put_back.input[0]
            added.append((pos + 1, put_back))
    for pos, node in reversed(added):
        g.node.insert(pos, node)
    _unround_outputs(g, {o for n in g.node if n.name in names for o in n.output}
                     | {c.output[0] for _, c in added}, still)
    _prune(g)
    fp32_islands_stay_fp32(out)
    return out


def _unround_outputs(g: onnx.GraphProto, tensors: set[str], still: set[str]) -> None:
    """Readers of DequantizeLinear(QuantizeLinear(T)) for T in ``tensors`` read T itself,
    unless they are still quantised."""
    made_by = {o: n for n in g.node for o in n.output}
    plain = {}
    for n in g.node:
        if n.op_type == "DequantizeLinear":
            qn = made_by.get(n.input[0])
            if qn is not None and qn.op_type == "QuantizeLinear" and qn.input[0] in tensors:
                plain[n.output[0]] = qn.input[0]
    for n in g.node:
        if n.name in still:
            continue
        for k, t in enumerate(n.input):
            if t in plain:
                n.input[k] = plain[t]


def _prune(graph: onnx.GraphProto) -> None:
    """Drop nodes and initializers that no longer feed the graph's outputs."""
    while True:
        used = {t for n in graph.node for t in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {t for n in graph.node for t in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def _session(model: bytes, threads: int = 0) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def embed(model: bytes, x: np.ndarray, batch: int = 16) -> np.ndarray:
    sess = _session(model)
    return np.concatenate([sess.run(None, {"image": x[i: i + batch]})[0]
                           for i in range(0, len(x), batch)])


@dataclass
class Samples:
    """Named photo samples (prepared tensors) and the fp32 model's embeddings of them."""

    tensors: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]

    def judge(self, model: bytes) -> dict[str, dict]:
        return {k: _rounded(agreement(self.reference[k], embed(model, x)))
                for k, x in self.tensors.items()}


def _rounded(figures: dict) -> dict:
    return {k: round(v, 4) for k, v in figures.items()}


def worst(judged: dict[str, dict]) -> dict:
    """The lowest mean cosine and top-10 overlap over the samples."""
    return {"mean_cosine": min(j["mean_cosine"] for j in judged.values()),
            "top10_overlap": min(j["top10_overlap"] for j in judged.values())}


def split_photos(data: Path, split: str, count: int) -> list[Path]:
    """``count`` photos of a split, evenly spread over the ids: DATA/styles.csv's ``split``
    column, photos at DATA/images/ID.jpg."""
    with open(data / "styles.csv", newline="", encoding="utf-8") as f:
        ids = sorted(int(r["id"]) for r in csv.DictReader(f) if r.get("split") == split)
    paths = [p for p in (data / "images" / f"{i}.jpg" for i in ids) if p.is_file()]
    if len(paths) <= count:
        return paths
    return [paths[int(i * len(paths) / count)] for i in range(count)]


def spread(folder: Path, count: int) -> list[Path]:
    from export.onnx import list_images

    return list_images(folder, count)


def gains(q: onnx.ModelProto, pre: onnx.ModelProto, units: list[Layer], samples: Samples,
          kept: set[str] = frozenset(), log=print) -> list[dict]:
    """One row per layer: the figures with that layer (and ``kept``) restored to fp32."""
    rows = []
    quantised = {n for u in units for n in u.nodes}
    for i, unit in enumerate(units):
        t0 = time.perf_counter()
        judged = samples.judge(restored(q, pre, set(kept) | set(unit.nodes), quantised)
                               .SerializeToString())
        rows.append({"layer": unit.label, "nodes": list(unit.nodes), **{
            f"{k}_{s}": v for s, j in judged.items() for k, v in j.items()
            if k in ("mean_cosine", "top10_overlap")}, "worst": worst(judged)})
        log(f"[{i + 1}/{len(units)}] {unit.label}: worst cosine "
            f"{rows[-1]['worst']['mean_cosine']:.4f}, top-10 "
            f"{rows[-1]['worst']['top10_overlap']:.3f} ({time.perf_counter() - t0:.1f} s)")
    return rows


def select(q: onnx.ModelProto, pre: onnx.ModelProto, units: list[Layer], rows: list[dict],
           samples: Samples, margin: float, max_layers: int, log=print,
           judge_kept=None) -> tuple[list[Layer], list]:
    """Keep layers in fp32, largest top-10 gain first, until every sample passes the gate
    with ``margin`` over its top-10 overlap -> (kept layers, the path's figures).
    ``judge_kept(node names)`` judges each step (default: the bypass in ``q``; run() passes a
    real re-quantisation with those nodes excluded, which the bypass only approximates)."""
    by_gain = sorted(range(len(units)), key=lambda i: (-rows[i]["worst"]["top10_overlap"],
                                                       -rows[i]["worst"]["mean_cosine"]))
    kept: list[Layer] = []
    path = []
    quantised = {n for u in units for n in u.nodes}
    for i in by_gain[:max_layers]:
        kept.append(units[i])
        names = {n for u in kept for n in u.nodes}
        judged = (judge_kept(tuple(sorted(names))) if judge_kept else
                  samples.judge(restored(q, pre, names, quantised).SerializeToString()))
        w = worst(judged)
        path.append({"kept": [u.label for u in kept], "worst": w, "samples": judged})
        log(f"fp32: {', '.join(u.label for u in kept)} -> worst cosine {w['mean_cosine']:.4f}, "
            f"top-10 {w['top10_overlap']:.3f}")
        if (w["mean_cosine"] >= MIN_MEAN_COSINE
                and w["top10_overlap"] >= MIN_TOP10_OVERLAP + margin):
            break
    return kept, path


def speed(files: dict[str, Path], repeats: int, threads: int = 2) -> dict[str, float]:
    """Median ms per photo at batch 1, the files' runs interleaved (the machine's load swings
    hit them alike), through the runtime's Encoder (its session options)."""
    from fai_infer.model.encoder import Encoder

    encs = {k: Encoder(p, threads=threads, check_int8=False) for k, p in files.items()}
    x = {k: to_tensor(np.full((1, e.spec.size, e.spec.size, 3), 128, np.uint8), e.spec)
         for k, e in encs.items()}
    times: dict[str, list[float]] = {k: [] for k in encs}
    for _ in range(3):  # warm up
        for k, e in encs.items():
            e.session.run(None, {e._input: x[k]})
    for _ in range(repeats):
        for k, e in encs.items():
            t0 = time.perf_counter()
            e.session.run(None, {e._input: x[k]})
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: round(statistics.median(v), 2) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.layer_report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="an fp32 FAI ONNX file")
    p.add_argument("--data", required=True, type=Path,
                   help="a dataset folder with styles.csv (id, split) and images/ID.jpg")
    p.add_argument("--calib-split", default="train")
    p.add_argument("--judge-split", default="val")
    p.add_argument("--calib-count", type=int, default=300)
    p.add_argument("--judge-count", type=int, default=200)
    p.add_argument("--also", type=Path, action="append", default=[],
                   help="another folder of photos to judge on (another shop), repeatable")
    p.add_argument("--also-count", type=int, default=100)
    p.add_argument("--calibration", choices=CALIBRATIONS, default="moving-average",
                   help="activation ranges: mean of per-batch ranges, or the extremes")
    p.add_argument("--keep-fp32", default="",
                   help="comma-separated node-name prefixes kept fp32 before the report")
    p.add_argument("--select", action="store_true",
                   help="choose the layers to keep in fp32 (largest gain first)")
    p.add_argument("--margin", type=float, default=0.005,
                   help="top-10 overlap over the gate the selection asks on every sample")
    p.add_argument("--max-layers", type=int, default=12)
    p.add_argument("--write", action="store_true",
                   help="write NAME.int8.onnx beside the model if it passes the gate")
    p.add_argument("--check-avx2", action="store_true",
                   help="with --write: also judge on an emulated AVX2-only CPU")
    p.add_argument("--speed", type=int, default=0, metavar="REPEATS",
                   help="with --write: median ms at batch 1, fp32 and int8 interleaved")
    p.add_argument("--out", type=Path, help="the report as JSON")
    a = p.parse_args(argv)
    try:
        report = run(a)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"layer_report failed: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(report, indent=1)
    if a.out:
        a.out.write_text(text)
    print(json.dumps({k: v for k, v in report.items() if k not in ("layers", "selection")},
                     indent=1))
    return 0


def run(a: argparse.Namespace, log=print) -> dict:
    from export.onnx import load_squares

    path = Path(a.model)
    data = path.read_bytes()
    meta = {m.key: m.value for m in onnx.load_from_string(data).metadata_props
            if m.key.startswith(META_PREFIX)}
    info = ModelInfo.from_metadata(meta, str(path))
    spec: PreprocessSpec = info.preprocess
    calib_paths = split_photos(a.data, a.calib_split, a.calib_count)
    judge = {f"{a.data.name} {a.judge_split}": split_photos(a.data, a.judge_split, a.judge_count)}
    for folder in a.also:
        judge[folder.parent.name if folder.name == "images" else folder.name] = spread(
            folder, a.also_count)
    if len(calib_paths) < 100 or any(len(v) < 50 for v in judge.values()):
        raise ValueError(f"too few photos: {len(calib_paths)} to calibrate, "
                         f"{ {k: len(v) for k, v in judge.items()} } to judge")
    log(f"calibrating on {len(calib_paths)} {a.data.name} {a.calib_split} photos; judging on "
        + ", ".join(f"{len(v)} {k}" for k, v in judge.items()))
    calib = load_squares(calib_paths, spec)
    tensors = {k: to_tensor(load_squares(v, spec), spec) for k, v in judge.items()}
    samples = Samples(tensors, {k: embed(data, x) for k, x in tensors.items()})
    pre_bytes = preprocessed(data)
    pre = onnx.load_from_string(pre_bytes)
    keep0 = tuple(s for s in a.keep_fp32.split(",") if s)
    q = onnx.load_from_string(quantize_qdq(pre_bytes, calib, spec, "fast", keep0,
                                           a.calibration))
    units = layers(pre, quantised_nodes(pre, q))
    base = samples.judge(q.SerializeToString())
    log(f"{len(units)} layers int8, {len(keep0)} kept fp32: " + "; ".join(
        f"{k} cosine {j['mean_cosine']:.4f} top-10 {j['top10_overlap']:.3f}"
        for k, j in base.items()))
    report: dict = {"model": str(path), "recipe": "fast", "kept_fp32_before": list(keep0),
                    "calibration_method": a.calibration,
                    "calibration": f"{len(calib_paths)} {a.data.name} {a.calib_split} photos",
                    "judged_on": {k: len(v) for k, v in judge.items()},
                    "gate": {"mean_cosine": MIN_MEAN_COSINE, "top10_overlap": MIN_TOP10_OVERLAP},
                    "all_int8": base}
    kept: list[Layer] = []
    if a.select or not a.write:  # --write alone writes with --keep-fp32 as given
        rows = gains(q, pre, units, samples, log=log)
        report["layers"] = rows
        if not (a.select or a.write):
            return report
        def requantised(names: tuple[str, ...]) -> dict:
            return samples.judge(quantize_qdq(pre_bytes, calib, spec, "fast", keep0 + names,
                                              a.calibration))

        kept, path_rows = select(q, pre, units, rows, samples, a.margin, a.max_layers, log,
                                 requantised)
        report["selection"] = path_rows
    report["kept_fp32"] = [u.label for u in kept] + list(keep0)
    keep = keep0 + tuple(n for u in kept for n in u.nodes)
    report["kept_fp32_nodes"] = list(keep)
    if a.write:
        report["int8"] = write(data, spec, path, meta, calib_paths, judge, keep, a.check_avx2,
                               a.calibration, log)
        if a.speed:
            report["speed_ms_batch1_2threads"] = speed(
                {"fp32": path, "int8": Path(report["int8"]["path"])}, a.speed)
            s = report["speed_ms_batch1_2threads"]
            report["speedup"] = round(s["fp32"] / s["int8"], 2)
            log(f"batch 1, 2 threads, median of {a.speed}: fp32 {s['fp32']} ms, int8 "
                f"{s['int8']} ms ({report['speedup']}x)")
    return report


def write(data: bytes, spec: PreprocessSpec, path: Path, meta: dict[str, str],
          calib_paths: list[Path], judge: dict[str, list[Path]], keep: tuple[str, ...],
          avx2: bool, calibration: str = "minmax", log=print) -> dict:
    """Quantise with ``keep`` excluded, gate it on every judged sample (export.onnx's
    write_int8 on the first, the gate alone on the others) and write NAME.int8.onnx."""
    from export.onnx import ExportError, load_squares, write_int8
    from export.quantize import quantize_int8

    first, *others = judge
    extra = {}
    for name in others:  # judged first: nothing is written unless every sample passes
        _, fig = quantize_int8(data, load_squares(calib_paths, spec), spec,
                               eval_squares=load_squares(judge[name], spec), log=log,
                               gate=False, avx2=avx2, keep_fp32=keep, calibration=calibration)
        ok = fig["passed"] and fig.get("avx2_emulated", {}).get("passed", True)
        extra[name] = {k: fig[k] for k in ("mean_cosine", "min_cosine", "top10_overlap",
                                           "photos", "passed", "avx2_emulated") if k in fig}
        if not ok:
            raise RuntimeError(f"int8 gate missed on {name}: {extra[name]}; nothing written")
    try:
        out = write_int8(data, spec, path, meta, None, log=log, check_avx2=avx2,
                         samples=(calib_paths, judge[first]), keep_fp32=keep,
                         calibration=calibration)
    except ExportError as exc:
        raise RuntimeError(str(exc)) from None
    return {**out, "also_judged": extra}


if __name__ == "__main__":
    sys.exit(main())
