"""Bounded fuzzing of decode + preprocess + embed, and concurrent queries during updates."""

import resource
import threading

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from export.synthetic import generated_squares
from fai_infer import Catalog, Encoder, ImageError
from tests.helpers import catalog_of, write_products
import pytest

pytestmark = [pytest.mark.soak]  # fuzzed inputs and query threads under churn

ENCODER = Encoder()
SEEDS = [cv2.imencode(ext, generated_squares(40, 1, seed=i)[0])[1].tobytes()
         for i, ext in enumerate([".jpg", ".png", ".bmp"])]
_SQUARE = generated_squares(40, 1, seed=7)[0]
_RGBA16 = np.dstack([_SQUARE, np.full(_SQUARE.shape[:2], 200, np.uint8)]).astype(np.uint16) * 257
SEEDS += [cv2.imencode(".png", _RGBA16)[1].tobytes(),  # the formats issue 17 found bombs in
          cv2.imencode(".webp", np.dstack([_SQUARE, _SQUARE[..., :1]]),
                       [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes(),
          cv2.imencode(".tiff", _SQUARE.astype(np.float32) / 255)[1].tobytes(),
          cv2.imencode(".tiff", _RGBA16[..., :3])[1].tobytes()]


@st.composite
def mutated_images(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "cut":
            data = data[:pos]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


@settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(mutated_images())
def test_fuzz_decode_preprocess_embed(data):
    """Either a unit embedding or ImageError: never a crash, another exception, or a hang."""
    try:
        emb = ENCODER.embed([data])
    except ImageError:
        return
    assert emb.shape == (1, ENCODER.dim) and np.isfinite(emb).all()


def test_fuzz_memory_stays_bounded():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rng = np.random.default_rng(0)
    for _ in range(200):
        data = bytearray(SEEDS[0])
        data[rng.integers(0, len(data))] ^= 0xFF
        try:
            ENCODER.embed([bytes(data)])
        except ImageError:
            pass
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200


def test_eight_query_threads_while_another_adds_and_removes(tmp_path):
    write_products(tmp_path / "shop", 60)
    extra = write_products(tmp_path / "more", 6, seed=3)
    extra = [p.rename(p.with_name(f"x{i}.jpg")) for i, p in enumerate(extra)]
    base = Catalog.build(tmp_path / "shop", tmp_path / "shop" / "metadata.csv",
                         encoder=ENCODER)
    for exact_below in (10_000, 20):  # exact engine, then HNSW
        cat = catalog_of(ENCODER, base.ids, base.paths, base.rows, base.embeddings,
                      exact_below=exact_below)
        ever = set(cat.ids) | {p.stem for p in extra}
        errors, results = [], []
        stop = threading.Event()

        def reader(seed: int):
            rng = np.random.default_rng(seed)
            try:
                while not stop.is_set():
                    item = base.ids[int(rng.integers(len(base.ids)))]
                    results.append(cat.similar(item, k=5))
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for round_ in range(6):
            cat.add(extra)
            cat.remove([p.stem for p in extra[: round_ + 1]])
        stop.set()
        for t in threads:
            t.join(10)
        assert not errors, errors[:3]
        assert len(results) > 50
        for hits in results:
            ids = [h.id for h in hits]
            assert len(ids) == 5 and len(set(ids)) == 5 and set(ids) <= ever
            assert all(a.score >= b.score - 1e-6 for a, b in zip(hits, hits[1:]))
