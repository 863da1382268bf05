"""One preprocessing path: colour modes, orientation, padding, and clear errors for bad files."""

import io
import os
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from fai_infer.image.preprocess import ImageError, PreprocessSpec, load_rgb, preprocess

SPEC = PreprocessSpec(size=32)


def png_bytes(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def test_output_is_float_chw_in_unit_range():
    x = preprocess(np.full((40, 30, 3), 128, np.uint8), SPEC)
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    assert abs(float(x[0, 16, 16]) - 128 / 255) < 1e-6


def test_portrait_is_padded_with_white_not_stretched():
    red = np.zeros((40, 20, 3), np.uint8)
    red[..., 0] = 255
    x = preprocess(red, SPEC)
    assert np.allclose(x[:, 16, 0], 1.0)  # left border is white padding
    assert np.allclose(x[:, 16, 16], [1.0, 0.0, 0.0])  # centre keeps the red product


def test_grayscale_becomes_three_equal_channels():
    gray = np.full((20, 20), 77, np.uint8)
    rgb = load_rgb(png_bytes(gray))
    assert rgb.shape == (20, 20, 3) and (rgb == 77).all()


def test_rgba_is_composited_on_white():
    bgra = np.zeros((10, 10, 4), np.uint8)
    bgra[..., 2] = 255  # red in BGR order
    bgra[:, :5, 3] = 255  # left half opaque, right half transparent
    rgb = load_rgb(png_bytes(bgra))
    assert (rgb[:, :5] == [255, 0, 0]).all()
    assert (rgb[:, 5:] == [255, 255, 255]).all()


def test_sixteen_bit_png_is_scaled_to_eight_bits():
    img16 = np.full((8, 8, 3), 65535 // 2, np.uint16)
    rgb = load_rgb(png_bytes(img16))
    assert rgb.dtype == np.uint8 and abs(int(rgb[0, 0, 0]) - 127) <= 1


def test_cmyk_jpeg_is_decoded_to_rgb():
    buf = io.BytesIO()
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(buf, "JPEG")  # pure red in CMYK
    rgb = load_rgb(buf.getvalue())
    assert rgb.shape == (16, 16, 3)
    r, g, b = rgb[8, 8].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_palette_png_with_transparency():
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 255] + [0, 0, 0] * 255)
    buf = io.BytesIO()
    img.save(buf, "PNG", transparency=0)  # palette entry 0 (blue) is fully transparent
    assert (load_rgb(buf.getvalue()) == 255).all()


def test_exif_orientation_is_honoured():
    # A 20x10 (wide) image whose EXIF says 'rotate 90 CW' must come out 10 wide, 20 tall.
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = [255, 0, 0]
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif, quality=95)
    rgb = load_rgb(buf.getvalue())
    assert rgb.shape[:2] == (20, 10)
    assert rgb[2, 5, 0] > 200 and rgb[17, 5, 0] < 80  # red half ends up on top


@pytest.mark.parametrize("payload,reason", [
    (b"", "empty file"),
    (b"hello, this is text", "not an image"),
    (b"<!doctype html><html></html>", "not an image"),
])
def test_bad_bytes_raise_a_clear_error(tmp_path, payload, reason):
    path = tmp_path / "photo.jpg"
    path.write_bytes(payload)
    with pytest.raises(ImageError, match=reason) as err:
        preprocess(path, SPEC)
    assert "photo.jpg" in str(err.value)


def test_truncated_jpeg_raises(tmp_path):
    ok, buf = cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.tobytes()[:300])
    with pytest.raises(ImageError, match="cut.jpg"):
        preprocess(path, SPEC)


def test_truncated_png_raises(tmp_path):
    data = png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.png"):
        preprocess(path, SPEC)


def test_decompression_bomb_is_refused_from_the_header():
    header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    data = header + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    with pytest.raises(ImageError, match="pixel limit"):
        load_rgb(data)


def test_directory_missing_file_and_broken_symlink(tmp_path):
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(ImageError, match="directory"):
        load_rgb(tmp_path / "dir.jpg")
    with pytest.raises(ImageError, match="not found"):
        load_rgb(tmp_path / "missing.jpg")
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "link.jpg")
    with pytest.raises(ImageError, match="broken symbolic link"):
        load_rgb(tmp_path / "link.jpg")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without permission")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.jpg"
    path.write_bytes(png_bytes(np.zeros((4, 4, 3), np.uint8)))
    path.chmod(0)
    with pytest.raises(ImageError, match="permission"):
        load_rgb(path)


def test_wrong_python_type_is_named():
    with pytest.raises(ImageError, match="expected a file path"):
        load_rgb(12345)  # type: ignore[arg-type]


def test_spec_round_trips_through_a_dict():
    spec = PreprocessSpec(size=64)
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec


def test_absurd_aspect_ratio_never_allocates_a_huge_square():
    strip = np.full((2, 60_000, 3), 10, np.uint8)
    out = preprocess(strip, SPEC)
    assert out.shape == (3, 32, 32)
    assert np.allclose(out[:, 0, 0], 1.0) and out[:, 15, 16].max() < 0.1  # 1-pixel strip


def test_png_chunk_claiming_more_than_the_file_is_refused_before_decoding(monkeypatch):
    """Found by bench.fuzz: OpenCV allocated what a corrupt chunk claimed (3.5 GB, 7 s)."""
    import cv2

    data = bytearray(png_bytes(np.zeros((48, 48, 3), np.uint8)))
    idat = data.index(b"IDAT") - 4
    data[idat : idat + 4] = (2**31 - 1).to_bytes(4, "big")
    decoded = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: decoded.append(1) or real(*a, **k))
    with pytest.raises(ImageError, match="chunk IDAT claims"):
        load_rgb(bytes(data))
    assert decoded == []  # refused from the chunk table: the decoder never ran


def _phone_photo(h: int, w: int) -> bytes:
    """A big JPEG like a phone shot: a textured, striped garment on an off-white background."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.full((h, w, 3), 236, np.float32) + rng.normal(0, 4, (h, w, 1))
    body = ((yy - h * 0.55) / (h * 0.35)) ** 2 + ((xx - w * 0.5) / (w * 0.3)) ** 2 < 1
    stripes = (np.sin(xx / 9.0 + yy / 23.0) > 0)[..., None]
    garment = np.where(stripes, [40, 70, 160], [200, 60, 50]) + rng.normal(0, 12, (h, w, 3))
    img[body] = garment[body]
    ok, buf = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8)[..., ::-1],
                           [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("size,factor", [(224, 4), (160, 8), (96, 8)])
def test_big_jpegs_decode_reduced_to_the_same_pixels(size, factor):
    """Issue 26: a 12 MP photo decodes at 1/4 or 1/8 scale (libjpeg's DCT scaling) when the
    model needs far fewer pixels; the model input must match decoding everything and
    shrinking, within what JPEG's own rounding moves (mean under 1 level of 255, no pixel
    off by more than a few), and the embedding must not notice."""
    from fai_infer.image.decode import _jpeg_reduction
    from fai_infer.image.preprocess import load_square, square_resize

    buf = _phone_photo(3024, 4032)
    assert _jpeg_reduction((4032, 3024), size)[0] == factor
    spec = PreprocessSpec(size=size)
    reduced = load_square(buf, spec).astype(np.int16)
    full_rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR),
                            cv2.COLOR_BGR2RGB)
    assert full_rgb.shape[:2] == (3024, 4032)
    full = square_resize(full_rgb, spec).astype(np.int16)
    diff = np.abs(reduced - full)
    assert diff.mean() < 1.0 and np.percentile(diff, 99.9) <= 12, (diff.mean(), diff.max())


def test_reduced_decode_leaves_the_embedding_unchanged():
    from fai_infer import Encoder
    from fai_infer.image.preprocess import square_resize

    enc = Encoder()
    buf = _phone_photo(3024, 4032)
    full_rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR),
                            cv2.COLOR_BGR2RGB)
    a = enc.embed([buf])[0]
    b = enc.embed_squares([square_resize(full_rgb, enc.spec)])[0]
    assert float(a @ b) > 0.999


def test_centre_crop_keeps_the_middle_at_the_squares_size():
    from fai_infer.image.preprocess import centre_crop

    square = np.zeros((100, 100, 3), np.uint8)
    square[:, :] = (0, 0, 255)  # a blue room ...
    square[20:80, 20:80] = (255, 0, 0)  # ... around a red garment in the middle
    crop = centre_crop(square, 0.6)
    assert crop.shape == square.shape and crop.dtype == np.uint8
    assert np.abs(crop.astype(int) - (255, 0, 0)).max() <= 1  # only the garment is left
    assert centre_crop(square, 1.0) is square
    for bad in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match="centre crop share"):
            centre_crop(square, bad)
    assert centre_crop(square[:3, :3], 0.01).shape == (3, 3, 3)  # tiny: one pixel at least
    with pytest.raises(ValueError, match="square HxWx3"):
        centre_crop(square[:, :50], 0.7)
