"""FAI kiosk runtime: embed product photos and find similar catalogue items.

Depends on numpy, onnxruntime, opencv-python-headless and hnswlib only (never torch or gradio).
"""

import os as _os
import sys as _sys

if "onnxruntime" in _sys.modules and _os.environ.get("ORT_DISABLE_TELEMETRY") != "1":
    # Loaded before us with telemetry on: nothing in-process stops it now
    # (fai_infer/telemetry_hook.py), so say so, once.
    print("fai_infer: warning: onnxruntime was imported before fai_infer without "
          "ORT_DISABLE_TELEMETRY=1, so its telemetry is on in this process; install the "
          "start-up hook (python -m fai_infer.telemetry_hook) or import fai_infer first",
          file=_sys.stderr, flush=True)
# Before anything below can load onnxruntime (see fai_infer/ort.py for why).
_os.environ["ORT_DISABLE_TELEMETRY"] = "1"

from fai_infer.catalog import Catalog, Hit, NotInCatalogue, Skipped
from fai_infer.encoder import Encoder, default_model_path
from fai_infer.model_info import ModelInfo
from fai_infer.preprocess import ImageError, PreprocessSpec, preprocess
from fai_infer.storage import CatalogError

__all__ = ["Catalog", "CatalogError", "Encoder", "Hit", "ImageError", "ModelInfo",
           "NotInCatalogue", "PreprocessSpec", "Skipped", "default_model_path", "preprocess"]
__version__ = "0.1.0"
