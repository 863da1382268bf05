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

from fai_infer.store_files import open_regular

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
