"""Held-apart evaluation of the exported garment parser, run through onnxruntime as shipped.

``python -m train.parser_eval --model models/fai-parser.onnx --data ../shared/data/ccp``

Why from the ONNX file: the figures describe the file the runtime loads, read the runtime's
way (``fai_infer.image.preprocess`` for the input, ``train.parser_output`` for the output), and are
scored at each photo's own resolution against its original mask, not the letterboxed one.
Only the held-apart photos are read (the split is recomputed from the photo ids with the
fractions the model was trained with, recorded in its metadata). Writes docs/eval-parser.json
with the model's sha256, the CPU flags, the date and the command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fai_infer.model.ort import ort
from fai_infer.image.preprocess import preprocess
from train.parser_data import (DEFAULT_DATA, GARMENT_GROUPS, GROUPS, label_lut, photos_in,
                               read_groups, read_labels)
from train.parser_output import group_map, parser_metadata
from train.parser_train import confusion, iou_table, mean_garment_iou

CPU_FLAGS = ("avx512_vnni", "avx512f", "avx2", "amx_tile")


def cpu_flags() -> dict[str, bool]:
    """The CPU features that decide onnxruntime's kernels (timings depend on them)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return {}
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return {f: f in flags for f in CPU_FLAGS}


def open_session(path: str, threads: int = 2) -> "ort.InferenceSession":
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def garment_vs_rest(conf: np.ndarray) -> float:
    """IoU of "any garment group" against background, skin and hair together."""
    g = [GROUPS.index(x) for x in GARMENT_GROUPS]
    truth = conf[g].sum()
    pred = conf[:, g].sum()
    tp = conf[np.ix_(g, g)].sum()
    return float(tp / (truth + pred - tp)) if truth + pred - tp else 0.0


def speed(parser: str, encoder: str | None, threads: int = 2, rounds: int = 100) -> dict:
    """Median ms per photo at batch 1 (model run only), the parser and the shipped encoder
    interleaved in one process so both see the same machine load."""
    sessions = {"parser": open_session(parser, threads)}
    if encoder and Path(encoder).is_file():
        sessions["encoder"] = open_session(encoder, threads)
    rng = np.random.default_rng(0)
    feeds = {}
    for k, sess in sessions.items():
        inp = sess.get_inputs()[0]
        shape = [1] + [int(d) for d in inp.shape[1:]]
        feeds[k] = {inp.name: rng.standard_normal(shape).astype(np.float32)}
        for _ in range(10):
            sess.run(None, feeds[k])
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, sess in sessions.items():
            t0 = time.perf_counter()
            sess.run(None, feeds[k])
            times[k].append((time.perf_counter() - t0) * 1000)
    out = {f"{k}_ms_batch1_median": round(float(np.median(v)), 2) for k, v in times.items()}
    if "encoder" in sessions:
        out["encoder_file"] = str(encoder)
        out["encoder_input"] = list(feeds["encoder"].values())[0].shape[1:]
        out["parser_plus_encoder_over_encoder"] = round(
            (out["parser_ms_batch1_median"] + out["encoder_ms_batch1_median"])
            / out["encoder_ms_batch1_median"], 2)
    out.update(threads=threads, rounds=rounds)
    return out


def evaluate(model: str, data: str, threads: int = 2, limit: int = 0) -> dict:
    sess = open_session(model, threads)
    meta = parser_metadata(sess)
    if tuple(meta.groups) != GROUPS:
        raise SystemExit(f"model groups {meta.groups} differ from this code's {GROUPS}")
    tc = meta.raw.get("train_config", {})
    held, val = float(tc.get("held_apart", 0.2)), float(tc.get("val_fraction", 0.1))
    photos = photos_in(data, "test", held, val)
    if limit:
        photos = photos[:limit]
    if not photos:
        raise SystemExit(f"no held-apart CCP photos with masks in {data}")
    lut = label_lut(read_labels(data))
    conf = np.zeros((len(GROUPS), len(GROUPS)), dtype=np.int64)
    run_ms, prep_ms = [], []
    name = sess.get_inputs()[0].name
    size = meta.spec.size
    x0 = preprocess(Path(data) / "images" / f"{photos[0]}.jpg", meta.spec)[None]
    for _ in range(5):  # warm-up: first runs allocate
        sess.run(None, {name: x0})
    for p in tqdm(photos, desc="held-apart photos", leave=False, mininterval=5):
        t0 = time.perf_counter()
        x = preprocess(Path(data) / "images" / f"{p}.jpg", meta.spec)[None]
        t1 = time.perf_counter()
        logits = sess.run(None, {name: x})[0][0]
        t2 = time.perf_counter()
        truth = read_groups(data, p, lut)
        pred = group_map(logits, truth.shape[0], truth.shape[1], size)
        conf += confusion(pred, truth)
        prep_ms.append((t1 - t0) * 1000)
        run_ms.append((t2 - t1) * 1000)
    ious = iou_table(conf)
    model_bytes = Path(model).read_bytes()
    return {
        "model_file": str(model),
        "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "model_bytes": len(model_bytes),
        "data": str(data),
        "split": {"held_apart_photos": len(photos), "held_apart_fraction": held,
                  "rule": "sha256('fai-parser-held-apart-v1:' + photo id) < fraction "
                          "(train/parser_data.py split_of)"},
        "input_size": size,
        "groups": list(GROUPS),
        "iou": {g: (round(v, 4) if v is not None else None) for g, v in ious.items()},
        "garment_vs_rest_iou": round(garment_vs_rest(conf), 4),
        "mean_garment_iou": round(mean_garment_iou(ious), 4),
        "pixel_accuracy": round(float(np.trace(conf) / conf.sum()), 4),
        "pixels": int(conf.sum()),
        "targets": {"garment_vs_rest_iou": 0.80, "mean_garment_iou": 0.55},
        "scored_at": "each photo's own resolution against its original mask",
        "speed": {"onnxruntime_ms_per_photo_batch1_median": round(float(np.median(run_ms)), 2),
                  "preprocess_ms_median": round(float(np.median(prep_ms)), 2),
                  "threads": threads, "note": "a shared 2-core machine; other jobs ran"},
        "cpu_flags": cpu_flags(),
        "onnxruntime": ort.__version__,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/fai-parser.onnx")
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--out", default="docs/eval-parser.json", help="'' = print only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="first N held-apart photos (smoke)")
    ap.add_argument("--encoder", default="models/fai-default.onnx",
                    help="the encoder timed beside the parser ('' = parser only)")
    ns = ap.parse_args(argv)
    if not (Path(ns.data) / "masks").is_dir():
        print(f"error: no CCP masks in {ns.data} (expected {ns.data}/masks/NNNN.png)",
              file=sys.stderr)
        return 2
    result = evaluate(ns.model, ns.data, ns.threads, ns.limit)
    result["speed_vs_encoder"] = speed(ns.model, ns.encoder, ns.threads)
    result["command"] = "python -m train.parser_eval " + " ".join(
        sys.argv[1:] if argv is None else argv)
    print(f"{'group':<12}IoU")
    for g, v in result["iou"].items():
        print(f"{g:<12}{'-' if v is None else f'{v:.3f}'}")
    print(f"garment vs rest IoU {result['garment_vs_rest_iou']:.3f} (target 0.80); "
          f"mean garment IoU {result['mean_garment_iou']:.3f} (target 0.55); "
          f"pixel accuracy {result['pixel_accuracy']:.3f}; "
          f"{result['speed']['onnxruntime_ms_per_photo_batch1_median']:.1f} ms per photo")
    print("speed:", json.dumps(result["speed_vs_encoder"]))
    if ns.out:
        Path(ns.out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
