"""Parser checkpoint -> a validated fp32 ONNX file with its own reading instructions.

``python -m export.parser_onnx --checkpoint runs/parser/best.pt --out models/fai-parser.onnx``

Why validated from image files: the runtime feeds onnxruntime what ``fai_infer.image.preprocess``
makes of a photo, so parity is checked on exactly that (real CCP photos, batch 1 and 4): the
largest logit difference and the share of 1/4-resolution pixels whose group agrees are printed,
and the file is not written when either is off. The metadata (key ``fai_parser``) records the
groups in output order, the input size, the preprocessing spec and how to read the output, so
a runtime needs nothing from this repository's training code.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import torch

from fai_infer.image.preprocess import preprocess
from train.onnx_graph import session, to_onnx_proto
from train.parser_data import DEFAULT_DATA, GARMENT_GROUPS, masked_photos, photos_in
from train.parser_model import GarmentParser, load_parser
from train.parser_output import METADATA_KEY, parser_metadata

OPSET = 17
MAX_BYTES = 20 * 1024 * 1024
LOGIT_TOLERANCE = 1e-3
AGREEMENT_FLOOR = 0.999


class ParserExportError(RuntimeError):
    pass


def to_proto(model: GarmentParser) -> onnx.ModelProto:
    """torch -> ONNX the way the encoder is exported (``train.onnx_graph.to_onnx_proto``):
    fixed S x S input, dynamic batch, Pads folded; the output is ``logits``."""
    return to_onnx_proto(model, model.config.image_size, OPSET, output="logits")


def parser_meta(ckpt: dict, model: GarmentParser) -> dict:
    cfg = model.config
    size = cfg.image_size
    return {
        "format": 1,
        "groups": list(cfg.groups),
        "garment_groups": [g for g in cfg.groups if g in GARMENT_GROUPS],
        "input": {"name": "image", "shape": ["batch", 3, size, size], "dtype": "float32"},
        "preprocess": cfg.spec().to_dict(),
        "output": {"name": "logits", "shape": ["batch", len(cfg.groups), size // 4, size // 4],
                   "dtype": "float32"},
        "output_stride": 4,
        "how_to_read": (
            "logits[n, g] is group groups[g] over the letterboxed square at 1/4 resolution. "
            "Upsample bilinearly (half-pixel centres) to size x size, cut the letterbox "
            "padding off (top=(size-new_h)//2, left=(size-new_w)//2 with new_h, new_w the photo "
            "resized so its long side is size), resize to the photo, softmax over g; the argmax "
            "is the group per pixel. See train/parser_output.py."),
        "training": {k: ckpt.get(k) for k in ("epoch", "val_garment_miou", "command")},
        "train_config": ckpt.get("train_config", {}),
    }


def validate(model: GarmentParser, model_bytes: bytes, files: list[Path]) -> dict:
    """torch vs onnxruntime on photo files at batch 1 and 4; raises past the tolerances."""
    sess = session(model_bytes, threads=2)
    spec = parser_metadata(sess).spec
    worst, agree, total = 0.0, 0, 0
    for bs in (1, 4):
        for i in range(0, len(files) - bs + 1, bs):
            x = np.stack([preprocess(p, spec) for p in files[i : i + bs]])
            with torch.no_grad():
                ref = model(torch.from_numpy(x)).numpy()
            got = sess.run(None, {"image": x})[0]
            worst = max(worst, float(np.abs(ref - got).max()))
            agree += int((ref.argmax(1) == got.argmax(1)).sum())
            total += ref.shape[0] * ref.shape[2] * ref.shape[3]
    report = {"photos": len(files), "batches": [1, 4], "max_abs_logit_diff": worst,
              "argmax_agreement": agree / total, "pixels": total,
              "tolerance": LOGIT_TOLERANCE, "agreement_floor": AGREEMENT_FLOOR}
    print(f"torch vs onnxruntime on {len(files)} photos: max |logit diff| {worst:.2e} "
          f"(tolerance {LOGIT_TOLERANCE:.0e}), argmax agreement {agree / total:.5f} "
          f"of {total} pixels (floor {AGREEMENT_FLOOR})", flush=True)
    if worst > LOGIT_TOLERANCE or agree / total < AGREEMENT_FLOOR:
        raise ParserExportError(f"parity failed: max abs logit difference {worst:.2e}, "
                                f"argmax agreement {agree / total:.5f}")
    return report


def export_parser(model: GarmentParser, ckpt: dict, out: Path, files: list[Path]) -> dict:
    """Build, stamp, validate and atomically write the file; returns the validation report."""
    model.eval()
    proto = to_proto(model)
    meta = parser_meta(ckpt, model)
    proto.metadata_props.add(key=METADATA_KEY, value=json.dumps(meta))
    proto.metadata_props.add(key="fai_parser_groups", value=",".join(meta["groups"]))
    proto.producer_name = "fai export.parser_onnx"
    data = proto.SerializeToString()
    if len(data) > MAX_BYTES:
        raise ParserExportError(f"{len(data) / 1e6:.1f} MB is over the 20 MB limit")
    report = validate(model, data, files)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    report.update(file=str(out), bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    print(f"wrote {out}: {len(data) / 1e6:.2f} MB, sha256 {report['sha256'][:16]}...",
          flush=True)
    return report


def parity_photos(data: str, count: int) -> list[Path]:
    """Real photos for the parity check: validation photos (never the held-apart ones, though
    nothing is chosen here), else any masked photo."""
    ids = photos_in(data, "val") or masked_photos(data)
    return [Path(data) / "images" / f"{p}.jpg" for p in ids[:count]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="runs/parser/best.pt")
    ap.add_argument("--out", default="models/fai-parser.onnx")
    ap.add_argument("--data", default=DEFAULT_DATA, help="CCP folder: photos for the parity check")
    ap.add_argument("--photos", type=int, default=16, help="photos for the parity check")
    ap.add_argument("--report", default="docs/export-parser.json",
                    help="where the validation numbers go ('' = nowhere)")
    ns = ap.parse_args(argv)
    torch.set_num_threads(2)
    files = parity_photos(ns.data, ns.photos)
    if len(files) < 4:
        print(f"error: need at least 4 photos in {ns.data}/images for the parity check",
              file=sys.stderr)
        return 2
    model, ckpt = load_parser(ns.checkpoint)
    try:
        report = export_parser(model, ckpt, Path(ns.out), files)
    except ParserExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report["command"] = "python -m export.parser_onnx " + " ".join(
        sys.argv[1:] if argv is None else argv)
    if ns.report:
        Path(ns.report).write_text(json.dumps(report, indent=1) + "\n")
        print(f"validation report: {ns.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
