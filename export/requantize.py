"""python -m export.requantize MODEL.onnx --calib DIR: a new int8 copy of an exported fp32 file.

For models whose checkpoint is gone (or to move an int8 file to a new recipe without
re-exporting fp32): the fp32 file's own metadata and preprocessing are kept, and the int8 copy
goes through the same quantiser, gate, golden inputs and self-check as ``export.onnx --int8``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import onnx

from export.emulate import EmulationUnavailable
from export.onnx import ExportError, write_int8
from fai_infer.model.info import META_PREFIX, ModelInfo


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.requantize", description=__doc__)
    p.add_argument("model", help="an fp32 FAI ONNX file; NAME.int8.onnx is written beside it")
    p.add_argument("--calib", required=True, help="folder of >= 300 photos")
    p.add_argument("--calib-count", type=int, default=300)
    p.add_argument("--check-avx2", action="store_true",
                   help="also judge the gate on an emulated AVX2-only CPU (qemu-x86_64)")
    p.add_argument("--report", default=None, help="also write the report as JSON here")
    a = p.parse_args(argv)
    path = Path(a.model)
    try:
        data = path.read_bytes()
        proto = onnx.load_from_string(data)
        meta = {m.key: m.value for m in proto.metadata_props if m.key.startswith(META_PREFIX)}
        info = ModelInfo.from_metadata(meta, str(path))
        if not info.quantization.startswith("fp32"):
            raise ExportError(f"{path} is {info.quantization}, not an fp32 model")
        report = {"int8": write_int8(data, info.preprocess, path, meta, a.calib,
                                     a.calib_count, check_avx2=a.check_avx2)}
    except (ExportError, FileNotFoundError, ValueError, EmulationUnavailable) as exc:
        print(f"requantize failed: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(report, indent=2)
    print(text)
    if a.report:
        Path(a.report).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
