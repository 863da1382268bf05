"""What an exported model file says about itself (ONNX metadata_props, prefix ``fai.``)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from fai_infer.model.parts import EmbeddingParts
from fai_infer.image.preprocess import PreprocessSpec

META_PREFIX = "fai."
FORMAT_VERSION = 1
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 16, 2048  # square side; 2048: 48 MB of float32 per photo


def _integer(value: str, key: str, source: str) -> int:
    """A whole-number metadata value, or one line naming the model file and the key."""
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{source}: bad model metadata: fai.{key} is {str(value)[:40]!r}, "
                         f"not a whole number") from None


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    dim: int
    input_size: int
    preprocess: PreprocessSpec
    weights_sha256: str
    quantization: str
    training: str = ""
    git_commit: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    parts: EmbeddingParts | None = None  # garment / colour spans; None: one part
    catalogue_whitening: bool = True  # fai.catalogue_whitening: does a new catalogue whiten?
    colour_names: tuple[str, ...] = ()  # fai.colour_names: what the colour part's dims mean

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str) -> "ModelInfo":
        fai = {k[len(META_PREFIX):]: v for k, v in meta.items() if k.startswith(META_PREFIX)}
        missing = [k for k in ("embedding_dim", "preprocess", "weights_sha256") if k not in fai]
        if missing:
            raise ValueError(f"{source}: not an FAI model (metadata lacks {', '.join(missing)}); "
                             f"export it with python -m export.onnx")
        version = _integer(fai.get("format_version", "1"), "format_version", source)
        if version > FORMAT_VERSION:
            raise ValueError(f"{source}: model format {version} is newer than this "
                             f"runtime understands ({FORMAT_VERSION}); upgrade fai_infer")
        dim = _integer(fai["embedding_dim"], "embedding_dim", source)
        input_size = _integer(fai.get("input_size", "0"), "input_size", source)
        if dim <= 0 or input_size < 0:
            raise ValueError(f"{source}: bad model metadata: embedding_dim {dim} and input_size "
                             f"{input_size} must be positive")
        spec_data = None
        try:
            spec_data = json.loads(fai["preprocess"])
            if not isinstance(spec_data, dict):
                raise ValueError("not a JSON object")
            spec = PreprocessSpec.from_dict(spec_data)
            if not isinstance(spec.size, int) or isinstance(spec.size, bool):
                raise ValueError(f"size {spec.size!r} is not a whole number")
            if not MIN_INPUT_SIZE <= spec.size <= MAX_INPUT_SIZE:  # 40000 px: 3.6 GB a photo
                raise ValueError(f"size {spec.size} is outside {MIN_INPUT_SIZE}.."
                                 f"{MAX_INPUT_SIZE} pixels")
            if not all(math.isfinite(x) for x in (*spec.mean, *spec.std, spec.scale)):
                raise ValueError("mean, std and scale must be finite numbers")
        except (ValueError, TypeError) as exc:
            detail = " ".join(str(exc).split(": {")[0].split())[:160]
            if isinstance(spec_data, dict):
                detail += "; " + ", ".join(f"{k} {spec_data[k]!r}" for k in
                                           ("size", "mean", "std") if k in spec_data)
            raise ValueError(f"{source}: bad model metadata: fai.preprocess is unusable "
                             f"({detail}); re-export the model with python -m export.onnx"
                             ) from None
        if input_size and input_size != spec.size:
            raise ValueError(f"{source}: bad model metadata: input_size {input_size} differs "
                             f"from the preprocessing size {spec.size}")
        parts = EmbeddingParts.from_metadata(fai.get("embedding_parts"), fai.get("colour_weight"),
                                             dim, source)
        whitening = fai.get("catalogue_whitening", "on")
        if whitening not in ("on", "off"):
            raise ValueError(f"{source}: bad model metadata: fai.catalogue_whitening "
                             f"{whitening[:20]!r} is neither on nor off")
        names = _colour_names(fai.get("colour_names"), parts, source)
        return cls(name=fai.get("model_name", "unnamed"), version=fai.get("model_version", "?"),
                   dim=dim, input_size=input_size, preprocess=spec,
                   weights_sha256=fai["weights_sha256"],
                   quantization=fai.get("quantization", "fp32"),
                   training=fai.get("training", ""), git_commit=fai.get("git_commit", ""),
                   extra=fai, parts=parts, catalogue_whitening=whitening == "on",
                   colour_names=names)

    def summary(self) -> dict:
        return {"name": self.name, "version": self.version, "dim": self.dim,
                "input_size": self.input_size, "quantization": self.quantization,
                "weights_sha256": self.weights_sha256, "training": self.training,
                "git_commit": self.git_commit,
                "parts": (self.parts or EmbeddingParts.whole(self.dim)).to_dict(),
                "catalogue_whitening": self.catalogue_whitening,
                "colour_names": list(self.colour_names)}


def _colour_names(text: str | None, parts: EmbeddingParts, source: str) -> tuple[str, ...]:
    """``fai.colour_names``: a JSON list of short names, one per dimension of the colour part
    (a learned colour part is a distribution over them); anything else is refused."""
    if not text:
        return ()
    try:
        names = json.loads(text)
    except (ValueError, RecursionError):
        names = None
    width = parts.colour[1] - parts.colour[0] if parts.colour else 0
    if not isinstance(names, list) or len(names) != width or not all(
            isinstance(n, str) and 0 < len(n) <= 40 and n.isprintable() for n in names):
        raise ValueError(f"{source}: bad model metadata: fai.colour_names is not a list of "
                         f"{width} short names")
    return tuple(names)
