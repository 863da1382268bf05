"""python -m bench.fuzz: a longer fuzz run of decode + preprocess + embed than the tests do.

Mutates valid JPEG, PNG, BMP, GIF and WebP files (bit flips, truncation, insertion, header
field overwrites) and feeds them to the runtime. Every input must give a unit embedding or an
ImageError; anything else, an input slower than --max-seconds, or memory growth past
--max-rss-mb is a finding. Bounded by --executions and --minutes.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time

import cv2
import numpy as np

from export.synthetic import generated_squares
from fai_infer import Encoder, ImageError


def seeds() -> list[bytes]:
    out = []
    for i, ext in enumerate([".jpg", ".png", ".bmp", ".webp", ".tiff"]):
        out.append(cv2.imencode(ext, generated_squares(48, 1, seed=i)[0])[1].tobytes())
    # Depths, alpha and float: where issue 17 found few-kB files decoding to gigabytes.
    square = generated_squares(48, 1, seed=9)[0]
    rgba16 = np.dstack([square, square[..., :1]]).astype(np.uint16) * 257
    out.append(cv2.imencode(".png", rgba16)[1].tobytes())
    out.append(cv2.imencode(".webp", np.dstack([square, square[..., :1]]),
                            [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes())
    out.append(cv2.imencode(".tiff", square.astype(np.float32) / 255)[1].tobytes())
    out.append(cv2.imencode(".tiff", rgba16)[1].tobytes())
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 10)):
        op = rng.choice(["flip", "cut", "insert", "header", "dup"])
        pos = rng.randrange(max(1, len(buf)))
        if op == "flip" and buf:
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == "cut":
            buf = buf[:pos]
        elif op == "insert":
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
        elif op == "header" and len(buf) > 32:  # width/height-like fields near the start
            at = rng.randrange(4, 32)
            buf[at : at + 4] = rng.randrange(2**32).to_bytes(4, "big")
        elif op == "dup" and buf:
            buf[pos:pos] = buf[pos : pos + rng.randint(1, 256)]
    return bytes(buf)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--executions", type=int, default=20_000)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--max-seconds", type=float, default=2.0, help="slowest allowed input")
    p.add_argument("--max-rss-mb", type=float, default=1500.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    enc, rng, base = Encoder(), random.Random(a.seed), seeds()
    counts = {"ok": 0, "image_error": 0}
    findings: list[str] = []
    slowest = 0.0
    deadline = time.time() + 60 * a.minutes
    n = 0
    while n < a.executions and time.time() < deadline:
        data = mutate(rng.choice(base), rng)
        t0 = time.perf_counter()
        try:
            emb = enc.embed([data])
            assert emb.shape == (1, enc.dim) and np.isfinite(emb).all()
            counts["ok"] += 1
        except ImageError:
            counts["image_error"] += 1
        except Exception as exc:  # noqa: BLE001 - any other exception is a finding
            findings.append(f"{type(exc).__name__}: {exc} (input {data[:40]!r})")
        took = time.perf_counter() - t0
        slowest = max(slowest, took)
        if took > a.max_seconds:
            findings.append(f"slow input: {took:.2f}s (input {data[:40]!r})")
        n += 1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if rss > a.max_rss_mb:
        findings.append(f"peak memory {rss:.0f} MB over {a.max_rss_mb} MB")
    result = {"executions": n, **counts, "findings": findings[:20], "finding_count":
              len(findings), "slowest_s": round(slowest, 3), "peak_rss_mb": round(rss, 1)}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
