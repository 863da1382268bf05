"""Issue 33, point 4: a progressive JPEG with thousands of scans is refused before decoding.

libjpeg re-runs every scan over the whole coefficient buffer: a 164 kB file with 10,000 scans
took 32 s to decode and two of them held both of the server's decode slots. The scans are
counted by walking the file's markers (``fai_infer/image/header.py``) and a file over the cap
is refused in one line naming it, before OpenCV sees it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fai_infer.errors import ImageError
from fai_infer.image import decode
from fai_infer.image.header import MAX_JPEG_SCANS, jpeg_scans


def progressive(size: int = 64) -> bytes:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (size, size, 3), np.uint8)
    ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1,
                                         cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return enc.tobytes()


def segments(buf: bytes) -> tuple[bytes, list[bytes], bytes]:
    """(everything before the first scan, each scan with its entropy data, the EOI)."""
    first = buf.index(b"\xff\xda")
    scans, pos = [], first
    while True:
        nxt = buf.find(b"\xff\xda", pos + 2)
        if nxt < 0:
            scans.append(buf[pos:-2])
            return buf[:first], scans, buf[-2:]
        scans.append(buf[pos:nxt])
        pos = nxt


def scan_bomb(repeats: int) -> bytes:
    """A real progressive JPEG whose last refinement scan is repeated ``repeats`` times."""
    head, scans, eoi = segments(progressive())
    return head + b"".join(scans) + scans[-1] * repeats + eoi


def test_scans_are_counted_by_walking_markers():
    head, scans, _ = segments(progressive())
    assert jpeg_scans(progressive()) == len(scans) > 1
    assert jpeg_scans(scan_bomb(2000), stop_after=10**6) == len(scans) + 2000
    assert jpeg_scans(scan_bomb(2000)) == MAX_JPEG_SCANS + 1  # stops counting past the cap


def test_a_scan_bomb_is_refused_before_any_decode(monkeypatch):
    decodes: list[int] = []
    real = cv2.imdecode
    monkeypatch.setattr(decode.cv2, "imdecode", lambda *a: decodes.append(1) or real(*a))
    bomb = scan_bomb(2000)
    with pytest.raises(ImageError) as err:
        decode.load_rgb(bomb, target=224)
    message = str(err.value)
    assert "scans" in message and f"{MAX_JPEG_SCANS}" in message and "\n" not in message
    assert message.startswith(f"<{len(bomb)} bytes>")
    assert decodes == []
    assert decode.load_rgb(progressive()).shape == (64, 64, 3)  # ordinary progressive: fine
    assert decode.load_rgb(scan_bomb(MAX_JPEG_SCANS - 20)).shape == (64, 64, 3)
