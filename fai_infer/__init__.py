"""FAI kiosk runtime: embed product photos and find similar catalogue items.

Depends on numpy, onnxruntime, opencv-python-headless and hnswlib only (never torch or gradio).
The names below load on first use, so a light module (``fai_infer.cli.util``,
``fai_infer.image.preprocess``) can be imported by training without onnxruntime or hnswlib.
"""

import importlib as _importlib
import os as _os
import sys as _sys

if "onnxruntime" in _sys.modules and _os.environ.get("ORT_DISABLE_TELEMETRY") != "1":
    # Loaded before us with telemetry on: nothing in-process stops it now
    # (fai_infer/harness/telemetry_hook.py), so say so, once.
    print("fai_infer: warning: onnxruntime was imported before fai_infer without "
          "ORT_DISABLE_TELEMETRY=1, so its telemetry is on in this process; install the "
          "start-up hook (python -m fai_infer.harness.telemetry_hook) or import fai_infer first",
          file=_sys.stderr, flush=True)
# Before anything below can load onnxruntime (see fai_infer/model/ort.py for why).
_os.environ["ORT_DISABLE_TELEMETRY"] = "1"

_WHERE = {
    "BaseCatalog": "fai_infer.catalog.contract", "Hit": "fai_infer.index.hits", "NotInCatalogue": "fai_infer.index.hits",
    "Skipped": "fai_infer.index.hits", "Catalog": "fai_infer.catalog.local", "Encoder": "fai_infer.model.encoder",
    "default_model_path": "fai_infer.model.encoder", "ModelInfo": "fai_infer.model.info",
    "ImageError": "fai_infer.errors", "PreprocessSpec": "fai_infer.image.preprocess",
    "preprocess": "fai_infer.image.preprocess", "CatalogError": "fai_infer.errors",
}

__all__ = sorted(_WHERE)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'fai_infer' has no attribute {name!r}")
    value = getattr(_importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
