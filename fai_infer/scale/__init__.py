"""Past one machine: index on a Ray cluster (``ray_index``), serve from Milvus (``milvus_catalog``;
``milvus_server`` runs a real Milvus server on this machine's loopback).

Both engines are the optional ``scale`` extra (``pip install -e .[scale]``). Importing this package
imports neither: the kiosk runtime stays onnxruntime + hnswlib + numpy + OpenCV, and the heavy
modules load only when a ``--ray`` or ``--milvus`` command asks for them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from fai_infer.errors import CatalogError

INSTALL_HINT = "pip install -e '.[scale]'"


class ExtraMissing(CatalogError):
    """The ``scale`` extra is not installed; the message says how to install it (a
    CatalogError, so every entry point reports it in one line)."""


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature`` (e.g. "fai index --ray"), or fail in one clear line."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExtraMissing(f"{feature} needs the optional 'scale' extra ({exc.name or module} is "
                           f"not installed): {INSTALL_HINT}") from None
