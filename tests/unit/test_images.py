import io

import numpy as np
import pytest
from PIL import Image

from dpexplorer.errors import ImageError
from dpexplorer.io.images import MAX_PIXELS, load_image, png_bytes, save_png, zoom_crop


def _encode(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_rgb_roundtrip_is_exact(photo, tmp_path):
    path = save_png(photo, tmp_path / "a.png")
    assert np.array_equal(load_image(path), photo)
    assert np.array_equal(load_image(png_bytes(photo)), photo)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "1", "YCbCr"])
def test_modes_become_rgb(photo, mode):
    img = Image.fromarray(photo).convert(mode)
    fmt = "JPEG" if mode in ("CMYK", "YCbCr") else "PNG"
    out = load_image(_encode(img, fmt))
    assert out.shape == photo.shape and out.dtype == np.uint8


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    arr = np.full((8, 8), 65535, dtype=np.uint16)
    arr[0, 0] = 0
    arr[1, 1] = 32896  # 128 * 257
    out = load_image(_encode(Image.fromarray(arr)))
    assert out[2, 2].tolist() == [255, 255, 255]
    assert out[0, 0].tolist() == [0, 0, 0]
    assert out[1, 1].tolist() == [128, 128, 128]


def test_alpha_is_composited_over_white():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red
    rgba[0, 0, 3] = 255  # opaque red pixel, the rest fully transparent
    out = load_image(_encode(Image.fromarray(rgba, "RGBA")))
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[1, 1].tolist() == [255, 255, 255]
    la = Image.fromarray(np.zeros((4, 4, 2), dtype=np.uint8), "LA")
    assert load_image(_encode(la))[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied():
    arr = np.zeros((20, 40, 3), dtype=np.uint8)  # landscape, left half white
    arr[:, :20] = 255
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    out = load_image(_encode(img, "JPEG", exif=exif, quality=95))
    assert out.shape == (40, 20, 3)  # displayed as portrait
    assert out[:20].mean() > 200 and out[20:].mean() < 50  # white half now on top


def test_tiny_image_loads():
    assert load_image(_encode(Image.new("RGB", (1, 1), (10, 20, 30)))).tolist() == [[[10, 20, 30]]]


def test_not_an_image():
    with pytest.raises(ImageError, match="not an image"):
        load_image(b"hello, this is text")


def test_truncated_file(photo):
    data = _encode(Image.fromarray(photo))
    with pytest.raises(ImageError, match="cannot decode"):
        load_image(data[: len(data) // 2])


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_decompression_bomb_is_refused():
    # A 1-bit 8000x8000 PNG is a few kB on disk but 64 MP once decoded.
    data = _encode(Image.new("1", (8000, 8000)))
    assert len(data) < 100_000
    with pytest.raises(ImageError, match="too large"):
        load_image(data)
    assert 8000 * 8000 > MAX_PIXELS


def test_arrays_are_accepted():
    assert load_image(np.zeros((3, 5), dtype=np.uint8)).shape == (3, 5, 3)
    assert load_image(np.ones((3, 5, 3), dtype=np.float32))[0, 0, 0] == 255
    assert load_image(np.full((2, 2, 3), 65535, dtype=np.uint16))[0, 0, 0] == 255
    with pytest.raises(ImageError):
        load_image(np.zeros((3, 5, 7), dtype=np.uint8))


def test_zoom_crop_is_nearest_and_clamped():
    img = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    crop = zoom_crop(img, 1.0, 1.0, size=4, scale=2)
    assert crop.shape == (8, 8, 3)
    assert np.array_equal(crop[::2, ::2], img[6:10, 8:12])  # clamped to the corner, pixels repeated
    assert zoom_crop(img, 0.5, 0.5, size=64).shape == (40, 40, 3)  # never larger than the image
