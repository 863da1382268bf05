"""Small timing helpers: medians of repeats, percentiles, the machine's sgemm peak."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np


def median_ms(fn: Callable[[], object], repeats: int = 7, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def percentiles_ms(samples_s: list[float]) -> dict[str, float]:
    a = 1000 * np.asarray(samples_s)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The machine's practical float32 peak: a large matrix product, both cores."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    ms = median_ms(lambda: a @ a, repeats=repeats, warmup=1)
    return 2 * n**3 / (ms / 1000) / 1e9


def table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def save_json(report: dict, path: str | Path | None, models: tuple = ()) -> None:
    """A bench's report as JSON with what made it (model sha256, CPU flags, date, command;
    ``models`` default to the shipped one); folders made; nothing when no path was given."""
    if path:
        from fai_infer.model.encoder import default_model_path
        from fai_infer.model.provenance import provenance

        report = {**report, "provenance": provenance(models or (default_model_path(),))}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=2, default=str))


def cpu_name() -> str:
    """The CPU model and its widest vector extension, for a bench's report (which CPU gave
    the figures matters: onnxruntime, hnswlib and Milvus pick kernels by it)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines()
                 if ln.startswith("model name")), platform.machine())
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines()
                      if ln.startswith("flags")), []))
    simd = "AVX-512" if "avx512f" in flags else "AVX2, no AVX-512" if "avx2" in flags else "SSE"
    return f"{name} ({simd})"
