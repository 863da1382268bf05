"""The ONNX encoder: images in, L2-normalised embeddings out, preprocessing read from the model."""

from __future__ import annotations

import hashlib
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from fai_infer.model.ort import ort

from fai_infer.model.cpu import cpu_flags, int8_path
from fai_infer.model.int8_check import (MIN_COSINE, MIN_MEAN_COSINE, GoldenError, Int8Check,
                                  read_golden, run_check)
from fai_infer.model.info import ModelInfo
from fai_infer.model.graph_check import GraphRefused, check_graph
from fai_infer.safe_files import NotARegularFile, open_regular
from fai_infer.image.preprocess import ImageError, ImageInput, describe, load_square, to_tensor

# The checkout keeps the shipped model in the top-level models/; a built wheel carries it as
# package data in fai_infer/models/ (setup.py), so an install outside the checkout has it too.
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
PACKAGED_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
DEFAULT_MODEL_NAME = "fai-default.onnx"


def shipped_model_path(name: str, env_var: str, what: str, made_by: str) -> Path:
    """$``env_var``, else ``name`` in the repository's models/ folder, else the copy a wheel
    installed as package data: where every shipped model file (encoder, parser) is found."""
    env = os.environ.get(env_var)
    path = Path(env) if env else MODELS_DIR / name
    if not env and not path.is_file() and (PACKAGED_MODELS_DIR / name).is_file():
        path = PACKAGED_MODELS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found at {path}; pass a {what.split()[-1]} path or "
                                f"set {env_var} (made with {made_by})")
    return path


def default_model_path() -> Path:
    """$FAI_MODEL, else the shipped default encoder (``shipped_model_path``)."""
    return shipped_model_path(DEFAULT_MODEL_NAME, "FAI_MODEL", "default model",
                              "python -m export.onnx")


def _bounded_map(pool: ThreadPoolExecutor, fn, items: Iterable, window: int) -> Iterator:
    """Like pool.map, in order, but with at most ``window`` items in flight (bounded memory)."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


SQUARES_BATCH = 64  # photos per onnxruntime call: memory stays flat, speed is the same



def one_line(exc: BaseException, limit: int = 300) -> str:
    """onnxruntime's message (often several lines with source paths) as one short line."""
    return " ".join(str(exc).split())[:limit]

class Encoder:
    """``Encoder(None)`` loads the shipped default model; ``.embed(images)`` -> (n, dim)."""

    def __init__(self, model: str | os.PathLike | None = None, threads: int = 0,
                 check_int8: bool = True):
        self.path = Path(model) if model is not None else default_model_path()
        self.requested_path = self.path  # differs from .path after an int8 fallback
        self.threads = threads
        self.int8_check: Int8Check | None = None
        self._load(self.path)
        if check_int8 and self.info.quantization.startswith("int8"):
            self._check_int8()

    def _load(self, path: Path) -> None:
        try:  # a FIFO would block onnxruntime's read for good, a device never end
            os.close(open_regular(path, follow_symlinks=True))
        except FileNotFoundError:
            raise FileNotFoundError(f"model file not found: {path}") from None
        except NotARegularFile as exc:
            raise ValueError(f"{path}: not a model file ({exc})") from None
        try:  # an endless Loop or a 32 GB constant shape: refused before onnxruntime runs it
            check_graph(path)
        except GraphRefused as exc:
            raise ValueError(f"{path}: refused: {exc}") from None
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.log_severity_level = 3
        # No spin-waiting after a run: on a 2-core kiosk the search and the decoder that
        # follow an embedding need those cores at once (spinning made search 30x slower).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"{path}: not a loadable ONNX model ({one_line(exc)})") from None
        self.path, self.session = path, session
        self._meta = session.get_modelmeta().custom_metadata_map
        self.info = ModelInfo.from_metadata(self._meta, str(path))
        self.spec = self.info.preprocess
        self.dim = self.info.dim
        self._input = session.get_inputs()[0].name
        self._check_shapes()

    def _check_int8(self) -> None:
        """Embed the file's golden inputs on this CPU; below the gate, say so in one line on
        stderr and use the fp32 file beside it (NAME.int8.onnx -> NAME.onnx) when there is
        one of the same weights. Files exported before the check carry no golden inputs."""
        try:
            golden = read_golden(self._meta, self.spec.size, self.dim)
            if golden is None:
                return
            self.int8_check = run_check(self.embed_squares, *golden)
            if self.int8_check.passed:
                return
            c = self.int8_check
            why = (f"mean cosine {c.mean_cosine:.4f}, min {c.min_cosine:.4f} against fp32 on "
                   f"its {c.inputs} golden inputs (gate {MIN_MEAN_COSINE} / {MIN_COSINE})")
        except GoldenError as exc:
            why = str(exc)
        fp32 = self.path.with_name(self.path.name.replace(".int8.onnx", ".onnx"))
        weights = self.info.weights_sha256
        action = f"no fp32 file {fp32.name} beside it, so int8 stays in use"
        if fp32 != self.path and fp32.is_file():
            try:
                self._load(fp32)
                action = f"using {fp32.name} instead"
            except (ValueError, FileNotFoundError) as exc:
                action = f"and {fp32.name} is unusable ({exc}), so int8 stays in use"
                self._load(self.requested_path)
            if self.info.weights_sha256 != weights:
                action = f"{fp32.name} holds other weights, so int8 stays in use"
                self._load(self.requested_path)
        print(f"fai: {self.requested_path.name}: int8 self-check failed on this CPU "
              f"({int8_path()} kernels): {why}; {action}", file=sys.stderr, flush=True)

    def runtime(self) -> dict:
        """What runs here: the file in use, the one asked for, this CPU's int8 kernel path and
        the int8 self-check's figures (None: not an int8 file, or one without golden inputs)."""
        return {"file": str(self.path), "requested": str(self.requested_path),
                "fallback": self.path != self.requested_path, "cpu_int8_path": int8_path(),
                "cpu_flags": list(cpu_flags()),
                "int8_check": self.int8_check.summary() if self.int8_check else None}

    def _check_shapes(self) -> None:
        """The graph must take a batch of 3-channel squares and give ``dim`` numbers per image,
        as its metadata says; otherwise refuse at load, in one line naming the file."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = list(inputs[0].shape) if inputs else []
        out = list(outputs[0].shape) if outputs else []
        problem = ""
        if len(shape) != 4:
            problem = f"input shape {shape} is not (batch, 3, size, size)"
        elif isinstance(shape[0], int):
            problem = (f"its batch axis is fixed at {shape[0]} (input shape {shape}); export "
                       f"it with a dynamic batch axis")
        elif isinstance(shape[1], int) and shape[1] != 3:
            problem = f"input has {shape[1]} channels, not 3"
        elif any(isinstance(s, int) and s != self.spec.size for s in shape[2:]):
            problem = (f"input shape {shape} does not match the preprocessing size "
                       f"{self.spec.size}")
        elif len(out) != 2:
            problem = f"output shape {out} is not (batch, dim)"
        elif isinstance(out[1], int) and out[1] != self.dim:
            problem = f"metadata says embedding_dim {self.dim} but the output has {out[1]}"
        if problem:
            raise ValueError(f"{self.path}: bad model: {problem}")

    @property
    def model_sha256(self) -> str:
        """Identity of what produces the embeddings (weights + quantisation): a catalogue
        remembers it and refuses any other model, the int8 copy of its own model included."""
        return hashlib.sha256(
            f"{self.info.weights_sha256}:{self.info.quantization}".encode()).hexdigest()

    def prepare(self, image: ImageInput) -> np.ndarray:
        """Decode and square one input (uint8 HxWx3); raises ImageError naming it."""
        return load_square(image, self.spec)

    def embed_squares(self, squares: Sequence[np.ndarray] | np.ndarray,
                      batch_size: int = SQUARES_BATCH) -> np.ndarray:
        """Prepared squares (n, size, size, 3) uint8 -> (n, dim) unit rows, run ``batch_size``
        at a time: the network's activations grow with the batch (a 3,500-photo batch at
        224 px needs over 20 GB), its speed per photo does not."""
        if len(squares) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = []
        for i in range(0, len(squares), batch_size):
            x = to_tensor(np.asarray(squares[i : i + batch_size]), self.spec)
            try:
                out = self.session.run(None, {self._input: x})[0]
            except Exception as exc:  # onnxruntime's own types: one line, never a traceback
                raise ValueError(f"{self.path}: the model failed to run "
                                 f"({one_line(exc)})") from None
            parts.append(out.astype(np.float32))
        out = np.concatenate(parts)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def embed(self, images: Sequence[ImageInput] | ImageInput, batch_size: int = 32
              ) -> np.ndarray:
        """List of paths, bytes or HxWx3 uint8 RGB arrays -> float32 (n, dim), unit rows.
        Any input that cannot be decoded raises ImageError naming it."""
        if isinstance(images, (str, bytes, bytearray, os.PathLike, np.ndarray)) and not (
                isinstance(images, np.ndarray) and images.ndim == 4):
            images = [images]
        chunks = [self.embed_squares([self.prepare(im) for im in images[i : i + batch_size]])
                  for i in range(0, len(images), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), np.float32)

    def embed_stream(self, images: Iterable[ImageInput], batch_size: int = 32,
                     decode_threads: int = 2
                     ) -> Iterator[tuple[list[int], np.ndarray, list[tuple[int, str]]]]:
        """Decode on a thread pool while the encoder runs, so both cores stay busy.

        Yields (positions embedded, their embeddings, [(position, reason) skipped]) per batch;
        a bad input is skipped with its reason and never stops the rest."""

        def load(item: tuple[int, ImageInput]) -> tuple[int, np.ndarray | str]:
            pos, image = item
            try:
                return pos, self.prepare(image)
            except ImageError as exc:
                return pos, str(exc)
            except Exception as exc:  # an unexpected decoder failure must not lose the batch
                return pos, f"{describe(image)}: {type(exc).__name__}: {exc}"

        with ThreadPoolExecutor(max(1, decode_threads)) as pool:
            positions: list[int] = []
            squares: list[np.ndarray] = []
            skipped: list[tuple[int, str]] = []
            for pos, result in _bounded_map(pool, load, enumerate(images), 2 * batch_size):
                if isinstance(result, str):
                    skipped.append((pos, result))
                else:
                    positions.append(pos)
                    squares.append(result)
                if len(squares) >= batch_size:
                    yield positions, self.embed_squares(squares), skipped
                    positions, squares, skipped = [], [], []
            if squares or skipped:
                yield positions, self.embed_squares(squares), skipped
