"""Encoder speed: torch eager (NCHW, channels_last) against onnxruntime fp32 and int8."""

from __future__ import annotations

import copy
import json

import onnx
from fai_infer.model.ort import ort
import torch

from bench.timing import median_ms
from export.onnx import to_onnx_proto
from export.quantize import quantize_int8
from export.synthetic import generated_squares
from fai_infer.image.preprocess import PreprocessSpec, to_tensor
from train.model import AutoEncoder, EmbeddingModel, ModelConfig


def count_macs(model: torch.nn.Module, size: int) -> int:
    """Multiply-accumulates of one forward pass (convolutions and linear layers)."""
    macs = 0

    def hook(mod, inp, out):
        nonlocal macs
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            macs += out.numel() * k
        elif isinstance(mod, torch.nn.Linear):
            macs += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return macs


def _session(data: bytes) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def bench_model(name: str, cfg: ModelConfig, repeats: int, batches=(1, 16),
                files: tuple[str, str] | None = None) -> list[dict]:
    """torch eager (random weights of the same network) against onnxruntime fp32 and int8:
    ``files`` = (fp32, int8) ONNX files to time, e.g. the shipped ones; else exported and
    quantised here. ``cfg.image_size`` is the input size timed."""
    torch.set_num_threads(2)
    model = EmbeddingModel(AutoEncoder(cfg)).eval()
    macs = count_macs(model, cfg.image_size)
    spec = PreprocessSpec(size=cfg.image_size)
    if files is not None:
        fp32, int8 = (open(f, "rb").read() for f in files)
    else:
        fp32 = to_onnx_proto(model, cfg.image_size, 17).SerializeToString()
        calib = generated_squares(cfg.image_size, 64, seed=1)
        int8, _ = quantize_int8(fp32, calib, spec, log=lambda *a: None, gate=False)
    rows = []
    # A copy: Module.to() converts in place, which would time channels_last weights twice.
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    for bs in batches:
        x = to_tensor(generated_squares(cfg.image_size, bs, seed=2), spec)
        xt = torch.from_numpy(x)
        variants = {
            "torch eager NCHW": lambda: model(xt),
            "torch eager channels_last": lambda: cl(xt.contiguous(
                memory_format=torch.channels_last)),
            "onnxruntime fp32": (lambda s=_session(fp32): s.run(None, {"image": x})),
        }
        variants["onnxruntime int8"] = (lambda s=_session(int8): s.run(None, {"image": x}))
        for label, fn in variants.items():
            with torch.no_grad():
                ms = median_ms(fn, repeats=repeats) / bs
            rows.append({"model": name, "engine": label, "batch": bs, "ms_per_image": ms,
                         "gflops": 2 * macs / (ms / 1000) / 1e9, "gmac": macs / 1e9})
    return rows


def shipped_config(path: str) -> ModelConfig:
    """The network of an exported file, at the input size it runs at (its spec's size)."""
    meta = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    cfg = ModelConfig.from_dict(json.loads(meta["fai.model_config"]))
    cfg.image_size = json.loads(meta["fai.preprocess"])["size"]
    return cfg
