"""What an exported model file says about itself (ONNX metadata_props, prefix ``fai.``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from fai_infer.preprocess import PreprocessSpec

META_PREFIX = "fai."
FORMAT_VERSION = 1


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

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str) -> "ModelInfo":
        fai = {k[len(META_PREFIX):]: v for k, v in meta.items() if k.startswith(META_PREFIX)}
        missing = [k for k in ("embedding_dim", "preprocess", "weights_sha256") if k not in fai]
        if missing:
            raise ValueError(f"{source}: not an FAI model (metadata lacks {', '.join(missing)}); "
                             f"export it with python -m export.onnx")
        if int(fai.get("format_version", "1")) > FORMAT_VERSION:
            raise ValueError(f"{source}: model format {fai['format_version']} is newer than this "
                             f"runtime understands ({FORMAT_VERSION}); upgrade fai_infer")
        return cls(name=fai.get("model_name", "unnamed"), version=fai.get("model_version", "?"),
                   dim=int(fai["embedding_dim"]), input_size=int(fai.get("input_size", 0)),
                   preprocess=PreprocessSpec.from_dict(json.loads(fai["preprocess"])),
                   weights_sha256=fai["weights_sha256"],
                   quantization=fai.get("quantization", "fp32"),
                   training=fai.get("training", ""), git_commit=fai.get("git_commit", ""),
                   extra=fai)

    def summary(self) -> dict:
        return {"name": self.name, "version": self.version, "dim": self.dim,
                "input_size": self.input_size, "quantization": self.quantization,
                "weights_sha256": self.weights_sha256, "training": self.training,
                "git_commit": self.git_commit}
