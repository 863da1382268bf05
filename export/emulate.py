"""Run an ONNX model as an AVX2-only CPU would, on any x86-64 machine: qemu user-mode emulation.

A developer's CPU with VNNI or AMX never takes onnxruntime's saturating AVX2 int8 kernels, so
an int8 file that is wrong there looks fine here. ``qemu-x86_64 -cpu Haswell`` answers CPUID as
a Haswell (AVX2 + FMA, no AVX-512, no VNNI), so onnxruntime's MLAS dispatches its AVX2 kernels,
and qemu (7.2 or newer) executes them faithfully, saturation included. It is slow (~100x), so
use it on a few hundred photos of a small model. The child checks that it really sees an AVX2
CPU (fai_infer.model.cpu) and refuses otherwise.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# Haswell without the features qemu's TCG cannot emulate (each would print a warning)
AVX2_CPU = "Haswell-noTSX-IBRS,-pcid,-x2apic,-tsc-deadline,-invpcid,-spec-ctrl"
ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import sys
import numpy as np
from fai_infer.model.cpu import int8_path
from fai_infer.model.ort import ort
model, squares_file, out_file, expect = sys.argv[1:5]
if int8_path() != expect:
    sys.exit(f"emulated CPU takes the {int8_path()} path, not {expect}")
from fai_infer.model.encoder import Encoder
enc = Encoder(model, check_int8=False)
np.save(out_file, enc.embed_squares(np.load(squares_file), batch_size=16))
"""


class EmulationUnavailable(RuntimeError):
    """qemu-x86_64 is not installed, or this is not an x86-64 machine."""


def qemu() -> str | None:
    """The qemu-x86_64 binary, where it can run this Python (x86-64 hosts only)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    return shutil.which("qemu-x86_64")


def embed_as_avx2(model: str | Path, squares: np.ndarray, timeout: float = 3600) -> np.ndarray:
    """Prepared squares (n, size, size, 3) uint8 -> embeddings computed by onnxruntime on an
    emulated AVX2-only CPU (fai_infer's own preprocessing and Encoder)."""
    binary = qemu()
    if binary is None:
        raise EmulationUnavailable("qemu-x86_64 not found (apt-get install qemu-user) or not "
                                   "an x86-64 machine")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "squares.npy", Path(tmp) / "out.npy"
        np.save(src, np.asarray(squares, dtype=np.uint8))
        env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
        r = subprocess.run([binary, "-cpu", AVX2_CPU, sys.executable, "-c", _CHILD,
                            str(model), str(src), str(dst), "avx2"],
                           capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
        if r.returncode != 0 or not dst.is_file():
            tail = [ln for ln in r.stderr.splitlines() if "TCG doesn't support" not in ln]
            raise RuntimeError(f"emulated run failed ({r.returncode}): "
                               + " | ".join(tail[-3:]))
        return np.load(dst)
