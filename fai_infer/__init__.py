"""FAI kiosk runtime: embed product photos and find similar catalogue items.

Depends on numpy, onnxruntime, opencv-python-headless and hnswlib only (never torch or gradio).
"""

import os as _os

# Before anything below can load onnxruntime (see fai_infer/ort.py for why).
_os.environ["ORT_DISABLE_TELEMETRY"] = "1"

from fai_infer.api import BaseCatalog, Hit, NotInCatalogue, Skipped
from fai_infer.catalog import Catalog
from fai_infer.encoder import Encoder, default_model_path
from fai_infer.model_info import ModelInfo
from fai_infer.preprocess import ImageError, PreprocessSpec, preprocess
from fai_infer.storage import CatalogError

__all__ = ["BaseCatalog", "Catalog", "CatalogError", "Encoder", "Hit", "ImageError", "ModelInfo",
           "NotInCatalogue", "PreprocessSpec", "Skipped", "default_model_path", "preprocess"]
__version__ = "0.1.0"
