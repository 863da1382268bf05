"""The identity of a model *file*: the sha256 of its bytes, weights included.

``Encoder.model_sha256`` is built from the metadata the file declares about itself
(``fai.weights_sha256`` and the quantisation), so another network whose metadata copies the
shipped model's ``fai.*`` keys passed as the same model (issue 23). A catalogue now also
records the file's own hash and refuses a file with other bytes, and it only remembers (loads
without ``--model``) a model path whose bytes still hash to what it recorded: the manifest's
``model_path`` is not covered by any checksum, so it must not pick a file by itself.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import json
from typing import TYPE_CHECKING, Any, Mapping

from fai_infer.errors import CatalogError
from fai_infer.safe_files import open_regular
from fai_infer.text import shorten

if TYPE_CHECKING:
    from fai_infer.model.encoder import Encoder

MODEL_FILE_LIMIT = 4 * 1024**3
_cache: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a regular model file (cached by path, size and mtime); OSError otherwise."""
    fd = open_regular(Path(os.path.realpath(path)))
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if st.st_size > MODEL_FILE_LIMIT:
            raise OSError(27, f"{Path(path).name} is over {MODEL_FILE_LIMIT:,} bytes")
        key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
        if key not in _cache:
            h = hashlib.sha256()
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
            _cache[key] = h.hexdigest()
    return _cache[key]


def remembered_path(manifest: dict) -> str | None:
    """The manifest's model path if that file's bytes hash to the recorded sha256, else None
    (then the default model loads and the usual identity check names any mismatch)."""
    model, expected = manifest.get("model_path"), manifest.get("model_file_sha256")
    if not isinstance(model, str) or not isinstance(expected, str):
        return None
    try:
        return model if file_sha256(model) == expected else None
    except (OSError, ValueError):
        return None


def file_sha256_or_none(path: str | os.PathLike) -> str | None:
    """:func:`file_sha256`, or None when the file cannot be read (moved since it loaded)."""
    try:
        return file_sha256(path)
    except (OSError, ValueError):
        return None


def model_label(source) -> str:
    """'fai-lite0 v2 (int8, id 5250904ce839)' for an Encoder or a catalogue's manifest (older
    manifests know only the name): what a shop needs to tell two models apart. The id is the
    hash of weights + quantisation that a catalogue remembers."""
    if isinstance(source, dict):
        name, version = source.get("model_name"), source.get("model_version")
        quant, ident = source.get("model_quantization"), str(source.get("model_sha256", ""))
    else:
        name, version = source.info.name, source.info.version
        quant, ident = source.info.quantization, source.model_sha256
    label = shorten(str(name)) + (f" v{shorten(str(version))}" if version else "")
    return label + f" ({shorten(str(quant)) + ', ' if quant else ''}id {ident[:12]})"


def built_with_hint(stored: Mapping[str, Any]) -> str:
    """' (--model; it was PATH)' for a refused catalogue; when PATH now holds other bytes (a
    newer default was shipped under the same name) the model files beside it are searched for
    the bytes the catalogue recorded, and the one that has them is named instead."""
    path = str(stored.get("model_path", "?"))
    recorded = stored.get("model_file_sha256")
    if not isinstance(recorded, str) or path == "?":
        return f" (--model; it was {shorten(path)})"
    if file_sha256_or_none(path) == recorded:
        return f" (--model; it was {shorten(path)})"
    try:
        siblings = sorted(Path(path).parent.glob("*.onnx"))[:50]
    except (OSError, ValueError):
        siblings = []
    for candidate in siblings:
        if file_sha256_or_none(candidate) == recorded:
            return (f" (--model {shorten(str(candidate), 240)}: {shorten(path, 240)} now holds "
                    f"another model)")
    return f" (--model; it was {shorten(path)}, which now holds another model or is gone)"


def check_model(where: str, stored: Mapping[str, Any], encoder: "Encoder", remedy: str,
                model_hint: str = "") -> None:
    """Refuse a catalogue the loaded model cannot search, in one line for every back end:
    ``stored`` holds the catalogue's model_sha256 (+ name, version, quantisation), preprocess
    spec and dim; ``remedy`` says how to rebuild it."""
    if stored["model_sha256"] != encoder.model_sha256:
        raise CatalogError(
            f"{where}: indexed with model {model_label(dict(stored))}, but the loaded model is "
            f"{model_label(encoder)}; {remedy} or load the model file it was built with"
            f"{model_hint}")
    recorded, current = stored.get("model_file_sha256"), file_sha256_or_none(encoder.path)
    if isinstance(recorded, str) and current is not None and recorded != current:
        raise CatalogError(
            f"{where}: indexed with another model file than {shorten(str(encoder.path))} (its "
            f"metadata matches, its bytes do not: sha256 {recorded[:12]} vs {current[:12]}); "
            f"{remedy} or load the model file it was built with{model_hint}")
    stored_spec = stored.get("preprocess")
    spec = json.loads(json.dumps(encoder.spec.to_dict()))  # as JSON stores it: tuples -> lists
    if stored_spec is not None and stored_spec != spec:
        if not isinstance(stored_spec, dict):
            raise CatalogError(f"{where}: manifest's preprocess entry is not an object")
        changed = sorted(k for k in set(stored_spec) | set(spec)
                         if stored_spec.get(k) != spec.get(k))
        raise CatalogError(
            f"{where}: indexed with another preprocessing ({', '.join(changed)} differ) than "
            f"model {encoder.info.name!r} uses; {remedy} or load the model it was built with")
    if stored["dim"] != encoder.dim:
        raise CatalogError(f"{where}: catalogue is {stored['dim']}-d, the model makes "
                           f"{encoder.dim}-d embeddings")
