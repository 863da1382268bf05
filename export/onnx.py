"""python -m export.onnx: a trained checkpoint -> the self-contained ONNX file a kiosk loads.

Like optimum's exporter, every export is validated against the source model: image files go
through the runtime's own ``Encoder`` (which reads the preprocessing spec from the exported
file's metadata, decodes and normalises as a kiosk will) and through torch with the checkpoint's
spec; the two must agree within an explicit tolerance at several batch sizes, on real photos
when given, or the command fails and writes nothing. So a spec that drifted between training and
the exported file would show here, not in a shop.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from fai_infer.catalog.sources import list_images as catalog_images
from fai_infer.model.info import FORMAT_VERSION, META_PREFIX
from export.emulate import EmulationUnavailable
from export.synthetic import generated_squares
from fai_infer.image.preprocess import PreprocessSpec, load_square, to_tensor
from train.checkpoint import load_checkpoint
from train.model import EmbeddingModel
from train.onnx_graph import fold_pads_into_convs, session, to_onnx_proto  # noqa: F401

FP32_TOLERANCE = 1e-4
PARITY_BATCHES = (1, 3, 8)


class ExportError(RuntimeError):
    """An export that failed its checks: nothing was written."""


@dataclass
class ParityReport:
    max_abs_diff: dict[int, float]
    tolerance: float
    images: str

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values())


def weights_sha256(model: torch.nn.Module) -> str:
    """A digest of the exported weights, independent of file layout."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def list_images(folder: str | Path, count: int) -> list[Path]:
    """A deterministic, evenly spread sample of ``count`` photos from a folder."""
    paths = [p for p in catalog_images(folder) if p.is_file()]
    if len(paths) <= count:
        return paths
    step = len(paths) / count
    return [paths[int(i * step)] for i in range(count)]


def load_squares(paths: list[Path], spec: PreprocessSpec) -> np.ndarray:
    return np.stack([load_square(p, spec) for p in paths])


def build_metadata(ckpt: dict, model: torch.nn.Module, spec: PreprocessSpec, name: str,
                   version: str, quantization: str) -> dict[str, str]:
    tc = ckpt.get("train_config", {})
    recipe = (f"arch={tc.get('arch', 'seed')} data={tc.get('data', '?')} "
              f"train_size={tc.get('image_size')} test_size={spec.size} epochs={ckpt.get('epoch')} "
              f"labels={tc.get('label_columns')}x{tc.get('label_weight')} "
              f"contrastive={tc.get('contrastive_weight')} distill={tc.get('distill_weight', 0)} "
              f"instance={tc.get('instance_weight', 0)} recon={tc.get('recon_weight')}")
    parts = model.parts()
    meta = {
        "format_version": str(FORMAT_VERSION),
        "model_name": name,
        "model_version": version,
        "embedding_dim": str(max(stop for _, stop in parts.values())),
        "embedding_parts": json.dumps(parts, sort_keys=True),
        "colour_weight": str(ckpt["model_config"].get("colour_weight", 0.0)
                             if "colour" in parts else 0.0),
        "input_size": str(spec.size),
        "catalogue_whitening": "off" if ckpt["model_config"].get("head") == "projection"
                               else "on",
        "preprocess": json.dumps(spec.to_dict(), sort_keys=True),
        "model_config": json.dumps(ckpt["model_config"], sort_keys=True),
        "train_config": json.dumps(tc, sort_keys=True, default=str),
        "training": recipe,
        "git_commit": git_commit(),
        "weights_sha256": weights_sha256(model),
        "quantization": quantization,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    names = ckpt["model_config"].get("colour_names")
    if names and "colour" in parts:
        meta["colour_names"] = json.dumps(list(names))
    return {META_PREFIX + k: v for k, v in meta.items()}


def set_metadata(proto: onnx.ModelProto, meta: dict[str, str]) -> None:
    keep = [p for p in proto.metadata_props if p.key not in meta]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)


def check_parity(model: torch.nn.Module, spec: PreprocessSpec, model_bytes: bytes,
                 paths: list[Path], tolerance: float, source: str) -> ParityReport:
    """Image files -> torch (checkpoint spec) vs the runtime ``Encoder`` (the exported file's
    own metadata) at batch sizes 1, 3 and 8; raises ExportError past tolerance."""
    from fai_infer.model.encoder import Encoder

    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / "candidate.onnx"
        candidate.write_bytes(model_bytes)
        encoder = Encoder(candidate)
        diffs: dict[int, float] = {}
        for bs in PARITY_BATCHES:
            files = [paths[i % len(paths)] for i in range(bs)]
            with torch.no_grad():
                ref = model(torch.from_numpy(to_tensor(load_squares(files, spec), spec))).numpy()
            got = encoder.embed(files, batch_size=bs)
            diffs[bs] = float(np.abs(ref - got).max())
    report = ParityReport(diffs, tolerance, source)
    if report.worst > tolerance:
        raise ExportError(f"torch/onnxruntime parity failed on {source}: max abs difference "
                          f"{report.worst:.2e} > tolerance {tolerance:.0e} ({diffs})")
    return report


def self_check(q_data: bytes) -> dict:
    """The load-time int8 self-check (fai_infer.model.int8_check) run here on the file to write."""
    from fai_infer.model.encoder import Encoder

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "q.int8.onnx").write_bytes(q_data)
        check = Encoder(Path(tmp) / "q.int8.onnx", check_int8=False)
        check._check_int8()
        return check.int8_check.summary()


INT8_QUANTIZATION = "int8-static-qdq-satfree"  # export/quantize.py: no int16 saturation


def write_int8(data: bytes, spec: PreprocessSpec, out: Path, meta: dict[str, str],
               calib: str | Path | None, calib_count: int = 300, log=print, keep: str = "",
               check_avx2: bool = False,
               samples: tuple[list[Path], list[Path]] | None = None,
               keep_fp32: tuple[str, ...] = (), calibration: str = "minmax") -> dict:
    """Quantise fp32 ``data``, gate it, add the golden inputs, check it loads here, and
    write OUT's NAME.int8.onnx beside it -> the int8 part of the report. ``samples``:
    (calibration, gate) photos chosen by the caller instead of drawn from ``calib``;
    ``keep_fp32``: node-name prefixes left in fp32 and ``calibration`` (export/quantize.py's
    quantize_qdq), as export/layer_report.py chose them."""
    from export.quantize import QuantizationGateError, golden_metadata_for, quantize_int8

    if samples is not None:
        calib_paths, gate_paths = samples
    elif calib is None:
        raise ExportError("--int8 needs --calib DIR with at least 300 photos" + keep)
    else:
        calib_paths, gate_paths = calib_and_gate(calib, calib_count, keep)
    try:
        q_bytes, figures = quantize_int8(
            data, load_squares(calib_paths, spec), spec,
            eval_squares=load_squares(gate_paths, spec) if len(gate_paths) >= 50 else None,
            log=log, avx2=check_avx2, keep_fp32=keep_fp32, calibration=calibration)
    except QuantizationGateError as exc:
        raise ExportError(f"{exc}{keep}") from None
    q_proto = onnx.load_from_string(q_bytes)
    meta = {**meta, META_PREFIX + "quantization": INT8_QUANTIZATION,
            META_PREFIX + "int8_quality": json.dumps(figures, sort_keys=True),
            **golden_metadata_for(data, spec)}
    set_metadata(q_proto, meta)
    q_data = q_proto.SerializeToString()
    figures["self_check"] = self_check(q_data)
    if not figures["self_check"]["passed"]:
        raise ExportError(f"the int8 file misses its own load-time self-check here "
                          f"({figures['self_check']}){keep}")
    q_path = out.with_name(out.name.replace(".onnx", "") + ".int8.onnx")
    write_atomic(q_data, q_path)
    return {"path": str(q_path), "bytes": q_path.stat().st_size, **figures}


GATE_PHOTOS = 300  # photos beside the calibration set that judge the int8 gate


def calib_and_gate(calib: str | Path, calib_count: int, keep: str = ""
                   ) -> tuple[list[Path], list[Path]]:
    """(calibration, gate) photos from one folder: the gate is judged on other photos than
    the calibration's when the folder has them (interleaved, so both spread over it)."""
    paths = list_images(calib, calib_count + GATE_PHOTOS)
    if len(paths) < min(300, calib_count):
        raise ExportError(f"--calib {calib}: {len(paths)} photos found, need at least 300"
                          + keep)
    if len(paths) >= 2 * calib_count:
        return paths[0::2][:calib_count], paths[1::2]
    return paths[:calib_count], paths[calib_count:]


def generated_files(folder: Path, size: int, count: int = 8) -> list[Path]:
    """Generated product images written as PNG files, for parity without real photos."""
    import cv2

    paths = []
    for i, square in enumerate(generated_squares(size, count)):
        paths.append(folder / f"generated-{i}.png")
        cv2.imwrite(str(paths[-1]), square[..., ::-1])
    return paths


def write_atomic(data: bytes, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def export(checkpoint: str | Path, out: str | Path, name: str | None = None,
           version: str = "1", opset: int = 17, parity_images: str | Path | None = None,
           int8: bool = False, calib: str | Path | None = None, calib_count: int = 300,
           tolerance: float = FP32_TOLERANCE, log=print, check_avx2: bool = False) -> dict:
    """Export, validate and write; returns a report dict (sizes, parity, int8 figures)."""
    t0 = time.time()
    out = Path(out)
    ae, spec, ckpt = load_checkpoint(checkpoint)
    model = EmbeddingModel(ae).eval()
    proto = to_onnx_proto(model, spec.size, opset)
    name = name or out.name.split(".")[0]
    set_metadata(proto, build_metadata(ckpt, model, spec, name, version, "fp32"))
    data = proto.SerializeToString()
    with tempfile.TemporaryDirectory() as tmp:
        if parity_images:
            paths = list_images(parity_images, 8)
            if not paths:
                raise ExportError(f"no images found in {parity_images}")
            source = f"{len(paths)} photos"
        else:
            paths, source = generated_files(Path(tmp), spec.size), "8 generated images"
        parity = check_parity(model, spec, data, paths, tolerance, source)
    log(f"parity ok on {source}: max abs diff {parity.worst:.2e} <= {tolerance:.0e} "
        + ", ".join(f"batch {b}: {d:.1e}" for b, d in parity.max_abs_diff.items()))
    report: dict = {"fp32": {"path": str(out), "parity_max_abs_diff": parity.max_abs_diff,
                             "tolerance": tolerance}}
    write_atomic(data, out)
    report["fp32"]["bytes"] = out.stat().st_size
    if int8:
        meta = build_metadata(ckpt, model, spec, name, version, INT8_QUANTIZATION)
        report["int8"] = write_int8(data, spec, out, meta, calib, calib_count, log,
                                    f"; the checked fp32 model is kept at {out}", check_avx2)
    report["seconds"] = round(time.time() - t0, 2)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m export.onnx",
        description="Export a trained FAI checkpoint's encoder + embedding head to one ONNX file "
                    "(opset >= 17, dynamic batch, L2-normalised output, preprocessing in its "
                    "metadata), validated against torch; optionally an int8 copy gated on "
                    "quality.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="RUN/best.pt from python -m train")
    p.add_argument("--out", required=True, help="output file, e.g. models/fai-default.onnx")
    p.add_argument("--name", default=None,
                   help="model name in the metadata (none given: the output file's stem)")
    p.add_argument("--version", default="1", help="model version in the metadata")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (17 or newer)")
    p.add_argument("--parity-images", default=None,
                   help="folder of real photos for the parity check (default: --calib, "
                        "else generated images)")
    p.add_argument("--tolerance", type=float, default=FP32_TOLERANCE,
                   help="max abs difference allowed between torch and onnxruntime")
    p.add_argument("--int8", action="store_true",
                   help="also write NAME.int8.onnx: static QDQ U8S8 (export/quantize.py), "
                   "written only if it passes the quality gate")
    p.add_argument("--calib", default=None, help="folder of >= 300 photos to calibrate int8 "
                   "on; up to 300 more of its photos judge the gate")
    p.add_argument("--calib-count", type=int, default=300, help="photos used for calibration")
    p.add_argument("--check-avx2", action="store_true",
                   help="also judge the int8 gate on an emulated AVX2-only CPU (needs "
                   "qemu-x86_64: apt-get install qemu-user; slow)")
    p.add_argument("--report", default=None, help="also write the report as JSON here")
    a = p.parse_args(argv)
    if a.opset < 17:
        p.error("--opset must be 17 or newer")
    try:
        report = export(a.checkpoint, a.out, a.name, a.version, a.opset,
                        a.parity_images or a.calib, a.int8, a.calib, a.calib_count, a.tolerance,
                        check_avx2=a.check_avx2)
    except (ExportError, FileNotFoundError, EmulationUnavailable) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(report, indent=2)
    print(text)
    if a.report:
        Path(a.report).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
