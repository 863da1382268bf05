"""Which int8 kernel path onnxruntime takes on this CPU, and the flags that decide it.

onnxruntime's MLAS picks its u8 x s8 matrix kernels from the CPU's features at start-up:
VNNI (``vpdpbusd``) and AMX add products in 32 bits, while plain AVX2 and AVX-512 without VNNI
add pairs in 16 bits (``vpmaddubsw``), which saturates. So the same int8 file can give other
embeddings on another CPU, and an export's gate holds only for the path it was judged on.

The flags come from numpy's run-time CPUID probe (what the process really sees, emulators
included); /proc/cpuinfo is read only for the two features numpy does not name.
"""

from __future__ import annotations

import platform
from functools import lru_cache

SATURATING_PATHS = ("avx2", "avx512")  # u8 x s8 pairs summed in int16


def _numpy_features() -> dict[str, bool]:
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_features__
    return dict(__cpu_features__)


def _proc_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@lru_cache(maxsize=1)
def cpu_flags() -> tuple[str, ...]:
    """The CPU features that matter for int8 (lower case, sorted), as this process sees them."""
    np_flags = {k for k, v in _numpy_features().items() if v}
    wanted = {"SSE41": "sse4_1", "AVX": "avx", "AVX2": "avx2", "FMA3": "fma",
              "AVX512F": "avx512f", "AVX512BW": "avx512bw", "AVX512VL": "avx512vl",
              "AVX512VNNI": "avx512_vnni", "ASIMD": "asimd", "ASIMDDP": "asimddp"}
    flags = {name for key, name in wanted.items() if key in np_flags}
    proc = _proc_flags()
    # numpy does not name these two; trust /proc/cpuinfo only where numpy agrees on the base
    if "avx2" in flags and "avx_vnni" in proc:
        flags.add("avx_vnni")
    if "AVX512_SPR" in np_flags and "amx_int8" in proc:
        flags.add("amx_int8")
    return tuple(sorted(flags))


def int8_path(flags: tuple[str, ...] | None = None) -> str:
    """The name of onnxruntime's u8 x s8 kernel family here: amx, avx512_vnni, avx_vnni,
    avx512 (no VNNI: saturating), avx2 (saturating), sse4_1, arm64_dot, arm64, other."""
    f = set(cpu_flags() if flags is None else flags)
    if "amx_int8" in f:
        return "amx"
    if "avx512_vnni" in f:
        return "avx512_vnni"
    if "avx_vnni" in f:
        return "avx_vnni"
    if {"avx512f", "avx512bw"} <= f:
        return "avx512"
    if "avx2" in f:
        return "avx2"
    if "sse4_1" in f:
        return "sse4_1"
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "arm64_dot" if "asimddp" in f else "arm64"
    return "other"
