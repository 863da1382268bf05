"""Issue 23, section 2: memory per input for progressive JPEG and TIFF with repeated tags, and
the server's cap on concurrent decodes. Each file is embedded by a fresh process that reports
its peak RSS (tests/test_hostile.py's probe); growth must stay under 300 MB. Before: +573 MB
(progressive 4:4:4 10000x10000), +645 MB (65500x1526), +766 MB (TIFF listing its size twice)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest

from fai_infer.image.header import decoded_layout
from tests.helpers import ROOT, RSS_PROBE


def progressive_jpeg(width: int, height: int) -> bytes:
    """A 16x16 progressive 4:4:4 JPEG whose frame header claims width x height."""
    img = np.random.default_rng(0).integers(0, 255, (16, 16, 3), np.uint8)
    ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1,
                                         cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                         cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    data = bytearray(enc.tobytes())
    sof = data.index(b"\xff\xc2")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def sof2_header(width: int, height: int, components: int) -> bytes:
    """SOI + a progressive frame header with ``components`` 1x1-sampled components."""
    body = struct.pack(">BHHB", 8, height, width, components) + b"".join(
        bytes([c + 1, 0x11, 0]) for c in range(components))
    return b"\xff\xd8\xff\xc2" + struct.pack(">H", len(body) + 2) + body + b"\x00" * 16


def tiff_listing_its_size_twice() -> bytes:
    """Uncompressed float32 RGBA TIFF whose IFD gives ImageWidth/ImageLength as 5000 first
    (what libtiff keeps) and 100 again later (what a last-wins parser keeps)."""
    entries = [(256, 4, 1, 5000), (257, 4, 1, 5000), (258, 3, 4, None), (259, 3, 1, 1),
               (262, 3, 1, 2), (273, 4, 1, None), (277, 3, 1, 4), (278, 4, 1, 5000),
               (279, 4, 1, 64), (339, 3, 4, None), (256, 4, 1, 100), (257, 4, 1, 100)]
    ifd_at, n = 8, len(entries)
    extra_at = ifd_at + 2 + 12 * n + 4
    bits_at, fmt_at, strip_at = extra_at, extra_at + 8, extra_at + 16
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_at) + struct.pack("<H", n))
    for tag, typ, count, value in entries:
        if tag == 258:
            value_field = struct.pack("<I", bits_at)
        elif tag == 339:
            value_field = struct.pack("<I", fmt_at)
        elif tag == 273:
            value_field = struct.pack("<I", strip_at)
        elif typ == 3:
            value_field = struct.pack("<HH", value, 0)
        else:
            value_field = struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + value_field
    out += b"\x00" * 4
    out += struct.pack("<4H", 32, 32, 32, 32) + struct.pack("<4H", 3, 3, 3, 3)
    return bytes(out + b"\x00" * 64)


def test_progressive_jpeg_is_budgeted_by_its_coefficients():
    cmyk = decoded_layout(sof2_header(10_000, 10_000, 4))
    assert cmyk.working_bytes == 10_000 * 10_000 * 4 * 2  # 800 MB whatever the output scale
    baseline = sof2_header(10_000, 10_000, 3).replace(b"\xff\xc2", b"\xff\xc0")
    assert decoded_layout(baseline).working_bytes == 0  # one scan: no whole-image buffer


def test_tiff_with_repeated_or_contradictory_size_tags_is_refused():
    assert decoded_layout(tiff_listing_its_size_twice()) is None


@pytest.mark.parametrize("name,make", [
    ("progressive-444-10000.jpg", lambda: progressive_jpeg(10_000, 10_000)),
    ("progressive-65500x1526.jpg", lambda: progressive_jpeg(65_500, 1_526)),
    ("tiff-size-twice.tiff", tiff_listing_its_size_twice)])
def test_each_file_costs_under_300_mb_in_a_fresh_process(tmp_path, name, make):
    path = tmp_path / name
    path.write_bytes(make())
    assert path.stat().st_size < 10_000
    res = subprocess.run([sys.executable, "-c", RSS_PROBE, str(path)], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    growth = report["peak_mb"] - report["before_mb"]
    print(name, report)
    assert growth < 300, report
    assert report["outcome"] != "embedded", report


def test_the_server_decodes_at_most_two_uploads_at_once(monkeypatch):
    """Eight uploads at once: each check holds its slot until every upload is either checking
    or waiting for a slot (a stable state, reached without sleeping); then two are checking."""
    import ui.decode_slots as slots
    import ui.service as service
    from ui.decode_slots import SLOTS

    state = {"now": 0, "most": 0, "waiting": 0}
    changed = threading.Condition()
    release = threading.Event()
    inner = slots._slots

    class CountingSlots:  # the real semaphore, with who waits on it counted
        def acquire(self, timeout=None):
            with changed:
                state["waiting"] += 1
                changed.notify_all()
            try:
                return inner.acquire(timeout=timeout)
            finally:
                with changed:
                    state["waiting"] -= 1
                    changed.notify_all()

        def release(self):
            inner.release()

    monkeypatch.setattr(slots, "_slots", CountingSlots())

    def held_check(path, target):
        with changed:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
            changed.notify_all()
        assert release.wait(120)
        with changed:
            state["now"] -= 1

    class FakeCat:
        class encoder:
            class spec:
                size = 224

        def __contains__(self, item):
            return False

        def similar(self, *a, **k):
            return []

        def parts(self):
            class Parts:
                @staticmethod
                def check_weight(colour):
                    return colour
            return Parts()

    monkeypatch.setattr(service, "check_upload", held_check)
    demo = service.ShopService.__new__(service.ShopService)
    demo.cat = FakeCat()
    threads = [threading.Thread(target=demo.answer, args=(f"/up/{i}.jpg", 5, {}))
               for i in range(8)]
    for t in threads:
        t.start()
    with changed:
        settled = changed.wait_for(lambda: state["now"] >= 2 and
                                   state["now"] + state["waiting"] == 8, timeout=120)
        taken = SLOTS - inner._value  # slots held, counted by the semaphore itself
    release.set()
    for t in threads:
        t.join()
    assert settled and taken == state["most"] == SLOTS == 2
