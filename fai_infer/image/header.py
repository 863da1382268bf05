"""What an encoded image will cost to decode, read from its header before any decoder runs.

A pixel count is not a memory bound: a 3.9 kB lossless WebP declares 10,000 x 10,000 RGBA and
decodes to 400 MB, a 16-bit RGBA PNG to twice that, a float32 TIFF to four bytes per sample, and
each conversion afterwards made full-size copies (5-6 GB measured). ``decoded_layout`` reads
width, height, channels and bytes per sample as the decoder will produce them (OpenCV,
``IMREAD_UNCHANGED``; only the first frame or page of a GIF, APNG or TIFF), so a caller can refuse
an input by its decoded bytes and never allocate them.

The one place an encoded image's bytes are parsed before decoding: one reader per format
(signature, JPEG SOF, PNG chunks, GIF, BMP, WebP chunks, TIFF IFD), used for the decoded size,
the format and dimensions (``header_size``), PNG chunk bounds, a JPEG's scan count and EXIF
orientation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True)
class Layout:
    fmt: str
    width: int
    height: int
    channels: int  # as decoded (palette and grey+alpha PNGs and GIFs come out as BGRA)
    sample_bytes: int  # 1 for 8-bit, 2 for 16-bit, 4 for float32 / 32-bit samples
    # Bytes the decoder holds besides its output whatever the output scale: libjpeg keeps
    # every DCT coefficient of a progressive (or multi-scan) JPEG, 128 bytes per 8x8 block.
    working_bytes: int = 0

    @property
    def decoded_bytes(self) -> int:
        return self.width * self.height * self.channels * self.sample_bytes + self.working_bytes

    def describe(self) -> str:
        depth = {1: "8-bit", 2: "16-bit", 4: "32-bit"}.get(self.sample_bytes,
                                                          f"{8 * self.sample_bytes}-bit")
        return f"{self.fmt} {self.width}x{self.height}, {self.channels} channel(s), {depth}"


def png_chunks(buf: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(kind, offset of the data, declared length) of each PNG chunk header in ``buf``, in
    order, up to IEND; a declared length may run past the end (the caller judges it)."""
    pos, n = 8, len(buf)
    while pos + 8 <= n:
        (length,) = struct.unpack(">I", buf[pos : pos + 4])
        kind = buf[pos + 4 : pos + 8]
        yield kind, pos + 8, length
        if kind == b"IEND":
            return
        pos += 12 + length


def webp_chunks(buf: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(kind, offset of the data, declared length) of each RIFF chunk of a WebP."""
    pos = 12
    while pos + 8 <= len(buf):
        kind = buf[pos : pos + 4]
        (length,) = struct.unpack("<I", buf[pos + 4 : pos + 8])
        yield kind, pos + 8, length
        pos += 8 + length + (length & 1)


def _png(buf: bytes) -> Layout | None:
    if len(buf) < 26 or buf[12:16] != b"IHDR":
        return None
    w, h, depth, colour = struct.unpack(">IIBB", buf[16:26])
    channels = {0: 1, 2: 3, 3: 4, 4: 4, 6: 4}.get(colour, 4)
    return Layout("png", w, h, channels, 2 if depth == 16 else 1)


def _jpeg(buf: bytes) -> Layout | None:
    i, n = 2, len(buf)
    while i + 9 < n:
        if buf[i] != 0xFF:
            i += 1
            continue
        marker = buf[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        (length,) = struct.unpack(">H", buf[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            precision = buf[i + 4]
            h, w = struct.unpack(">HH", buf[i + 5 : i + 9])
            buffered = marker in _PROGRESSIVE or buf.count(b"\xff\xda") > 1
            coefficients = _coefficient_bytes(buf[i + 9 : i + 2 + length], w, h) \
                if buffered else 0
            if coefficients is None:
                return None
            # IMREAD_COLOR gives 3 channels; 12-bit JPEGs decode to 16-bit samples.
            return Layout("jpeg", w, h, 3, 2 if precision > 8 else 1, coefficients)
        i += 2 + length
    return None


_PROGRESSIVE = (0xC2, 0xC6, 0xCA, 0xCE)
# libjpeg runs every scan over the whole image: a progressive file needs about ten, and a
# 164 kB file repeating one 10,000 times took 32 s to decode (issue 33).
MAX_JPEG_SCANS = 100


def jpeg_scans(buf: bytes, stop_after: int = MAX_JPEG_SCANS + 1) -> int:
    """Start-of-scan segments in a JPEG, counted by walking its markers and skipping each
    scan's entropy-coded data (where 0xFF is followed by 0x00 or a restart marker), so bytes
    inside the data are never taken for a marker. Stops counting at ``stop_after``."""
    i, n, scans = 2, len(buf), 0
    while i + 4 <= n and scans < stop_after:
        if buf[i] != 0xFF:
            i += 1
            continue
        marker = buf[i + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:
            i += 1 if marker == 0xFF else 2
            continue
        if marker == 0xD9:  # end of image
            break
        (length,) = struct.unpack(">H", buf[i + 2 : i + 4])
        i += 2 + length
        if marker == 0xDA:
            scans += 1
            while True:  # entropy-coded data up to the next real marker
                i = buf.find(b"\xff", i)
                if i < 0 or i + 1 >= n:
                    return scans
                follower = buf[i + 1]
                if follower == 0x00 or 0xD0 <= follower <= 0xD7 or follower == 0xFF:
                    i += 1 if follower == 0xFF else 2
                    continue
                break
    return scans


def _coefficient_bytes(components: bytes, w: int, h: int) -> int | None:
    """libjpeg's whole-image coefficient buffer for a progressive or multi-scan JPEG: every
    component's 8x8 blocks over the padded MCU grid, 64 int16 each (a 4.8 kB progressive
    10000x10000 CMYK file: 1.3 GB), needed in full even for a 1/8-scale decode."""
    if not components:
        return None
    count = components[0]
    factors = [(components[2 + 3 * c] >> 4, components[2 + 3 * c] & 15)
               for c in range(count) if 3 + 3 * c < len(components)]
    if count == 0 or len(factors) != count or any(not (1 <= a <= 4 and 1 <= b <= 4)
                                                  for a, b in factors):
        return None
    h_max, v_max = max(a for a, _ in factors), max(b for _, b in factors)
    mcus_x, mcus_y = -(-w // (8 * h_max)), -(-h // (8 * v_max))
    return sum(mcus_x * a * mcus_y * b for a, b in factors) * 64 * 2


def _gif(buf: bytes) -> Layout | None:
    if len(buf) < 10:
        return None
    w, h = struct.unpack("<HH", buf[6:10])
    return Layout("gif", w, h, 4, 1)  # the first frame, composed on the full logical screen


def _bmp(buf: bytes) -> Layout | None:
    if len(buf) < 30:
        return None
    w, h = struct.unpack("<ii", buf[18:26])
    (bits,) = struct.unpack("<H", buf[28:30])
    return Layout("bmp", abs(w), abs(h), 4 if bits == 32 else 3, 1)


def _webp(buf: bytes) -> Layout | None:
    kind = buf[12:16]
    if kind == b"VP8 " and len(buf) >= 30 and buf[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", buf[26:30])
        return Layout("webp", w & 0x3FFF, h & 0x3FFF, 3, 1)
    if kind == b"VP8L" and len(buf) >= 25 and buf[20] == 0x2F:
        bits = int.from_bytes(buf[21:25], "little")
        return Layout("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 4, 1)
    if kind == b"VP8X" and len(buf) >= 30:
        w = int.from_bytes(buf[24:27], "little") + 1
        h = int.from_bytes(buf[27:30], "little") + 1
        return Layout("webp", w, h, 4, 1)
    return None


_TIFF_TYPES = {3: ("H", 2), 4: ("I", 4)}  # SHORT, LONG


def tiff_tags(tiff: bytes, wanted: tuple[int, ...], partial: bool = False
              ) -> dict[int, tuple[int, list[int]]] | None:
    """{tag: (type, values)} of the ``wanted`` SHORT/LONG tags in the first IFD of classic TIFF
    data (a TIFF file or an EXIF block); None when this is not TIFF or the IFD is cut short
    (``partial``: then the tags read before the cut)."""
    if len(tiff) < 8 or tiff[:4] not in (b"II*\x00", b"MM\x00*"):
        return None  # BigTIFF and anything else: not read here, so refused by the caller
    end = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack(end + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return None
    (count,) = struct.unpack(end + "H", tiff[ifd : ifd + 2])
    if count > 512:
        return None  # no real photo needs that many tags; the ones past 512 would go unread
    tags: dict[int, tuple[int, list[int]]] = {}
    seen: set[int] = set()
    for k in range(count):
        entry = tiff[ifd + 2 + 12 * k : ifd + 14 + 12 * k]
        if len(entry) < 12:
            return tags if partial else None
        tag, typ, n = struct.unpack(end + "HHI", entry[:8])
        if tag in seen:
            return None  # repeated: libtiff keeps the first, a parser may keep the last
        seen.add(tag)
        if tag not in wanted:
            continue
        if typ not in _TIFF_TYPES:
            return None  # a size field this parser cannot read is a size it cannot bound
        code, size = _TIFF_TYPES[typ]
        n = min(n, 16)
        if n * size <= 4:
            raw = entry[8 : 8 + n * size]
        else:
            (offset,) = struct.unpack(end + "I", entry[8:12])
            raw = tiff[offset : offset + n * size]
        if len(raw) < n * size:
            return None
        tags[tag] = (typ, list(struct.unpack(end + code * n, raw)))
    return tags


def _tiff(buf: bytes) -> Layout | None:
    """First IFD: ImageWidth, ImageLength, BitsPerSample, SamplesPerPixel (classic TIFF)."""
    tags = tiff_tags(buf, (256, 257, 258, 277))
    if tags is None or 256 not in tags or 257 not in tags:
        return None
    bits = max(tags.get(258, (3, [8]))[1])
    channels = tags.get(277, (3, [1]))[1][0]
    if len(tags[256][1]) != 1 or len(tags[257][1]) != 1 or len(tags.get(277, (3, [1]))[1]) != 1 \
            or (258 in tags and len(tags[258][1]) not in (1, channels)):
        return None  # contradictory: several widths, or bits for another number of samples
    return Layout("tiff", tags[256][1][0], tags[257][1][0], max(1, channels),
                  max(1, -(-bits // 8)))


def _exif_orientation(block: bytes) -> int:
    """The Orientation tag (0x0112, a SHORT) of an EXIF block's first IFD, or 1."""
    if block[:6] == b"Exif\x00\x00":
        block = block[6:]
    tags = tiff_tags(block, (0x0112,), partial=True)
    typ, values = (tags or {}).get(0x0112, (0, []))
    return values[0] if typ == 3 and values and 1 <= values[0] <= 8 else 1


def exif_orientation(buf: bytes, fmt: str) -> int:
    """EXIF orientation (1..8, 1 = as stored) of a PNG (eXIf chunk) or WebP (EXIF chunk), read
    without decoding. OpenCV applies it to JPEGs (IMREAD_COLOR) and TIFFs itself, but not to
    these when it keeps their alpha and depth (IMREAD_UNCHANGED), which is how they decode."""
    chunks, kind = {"png": (png_chunks, b"eXIf"), "webp": (webp_chunks, b"EXIF")}.get(
        fmt, (None, b""))
    if chunks is None:
        return 1
    try:
        for name, start, length in chunks(buf):
            if name == kind:
                return _exif_orientation(buf[start : start + length])
    except struct.error:
        pass
    return 1


def image_format(buf: bytes) -> str:
    """jpeg, png, gif, bmp, webp, tiff or unknown, from the signature."""
    if buf[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if buf[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if buf[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if buf[:2] == b"BM":
        return "bmp"
    if buf[:4] == b"RIFF" and buf[8:12] == b"WEBP":
        return "webp"
    if buf[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return "unknown"


_READERS = {"jpeg": _jpeg, "png": _png, "gif": _gif, "bmp": _bmp, "webp": _webp, "tiff": _tiff}


def decoded_layout(buf: bytes) -> Layout | None:
    """The decoded size of an encoded image, or None where its header cannot be read."""
    reader = _READERS.get(image_format(buf))
    return reader(buf) if reader is not None else None


def header_size(buf: bytes) -> tuple[str, tuple[int, int] | None]:
    """(format, (width, height) or None) read from the first bytes of an encoded image."""
    fmt = image_format(buf)
    layout = decoded_layout(buf)
    return fmt, (layout.width, layout.height) if layout is not None else None
