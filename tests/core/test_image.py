"""The image loader on every kind of input, with pixels checked against what was written."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from tfface.core.image import load_image, save_image_atomic
from tfface.errors import ImageError


def gradient(h=40, w=60):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 4 % 256, y * 6 % 256, (x + y) * 3 % 256], -1).astype(np.uint8)


def test_path_bytes_fileobj_and_array_agree(tmp_path):
    rgb = gradient()
    path = tmp_path / "g.png"
    Image.fromarray(rgb).save(path)
    data = path.read_bytes()
    for src in (path, str(path), data, io.BytesIO(data), rgb):
        out = load_image(src)
        assert out.dtype == np.uint8 and out.shape == (40, 60, 3)
        np.testing.assert_array_equal(out, rgb)


def test_png_is_rgb_not_bgr(tmp_path):
    red = np.zeros((10, 10, 3), np.uint8)
    red[..., 0] = 255
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), red[..., ::-1])  # OpenCV writes BGR; an independent writer
    out = load_image(path)
    assert out[0, 0].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied(tmp_path):
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:5, :5] = 255  # white square at top-left of the stored pixels
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=100)
    out = load_image(path)
    assert out.shape == (40, 20, 3)
    # After a 90 degree clockwise rotation the top-left corner goes to the top-right.
    assert out[:4, -4:].mean() > 200 and out[:4, :4].mean() < 50


def test_grayscale_palette_alpha(tmp_path):
    gray = (np.arange(100).reshape(10, 10) * 2).astype(np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "l.png")
    np.testing.assert_array_equal(load_image(tmp_path / "l.png"), np.stack([gray] * 3, -1))

    rgb = gradient(10, 10)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(
        tmp_path / "p.png")
    pal = load_image(tmp_path / "p.png")
    assert pal.shape == (10, 10, 3) and np.abs(pal.astype(int) - rgb).mean() < 8

    rgba = np.dstack([rgb, np.full((10, 10), 255, np.uint8)])
    rgba[0, 0, 3] = 0  # fully transparent pixel -> white background
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    np.testing.assert_array_equal(out[1:, 1:], rgb[1:, 1:])
    assert out[0, 0].tolist() == [255, 255, 255]

    la = np.dstack([gray, np.full((10, 10), 255, np.uint8)])
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(load_image(tmp_path / "la.png"), np.stack([gray] * 3, -1))


def test_16bit_png_gray_and_color(tmp_path):
    g16 = (np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), g16)
    out = load_image(tmp_path / "g16.png")
    np.testing.assert_allclose(out[..., 0], g16 / 257.0, atol=1.0)

    c16 = np.stack([g16, g16[::-1], g16.T], -1)
    cv2.imwrite(str(tmp_path / "c16.png"), c16[..., ::-1])  # BGR on disk
    out = load_image(tmp_path / "c16.png")
    np.testing.assert_allclose(out, c16 / 257.0, atol=1.0)


def test_cmyk_jpeg(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:8] = (200, 30, 60)
    rgb[8:] = (20, 120, 220)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    out = load_image(tmp_path / "c.jpg")
    assert np.abs(out.astype(int) - rgb).max() <= 12


def test_array_inputs():
    np.testing.assert_array_equal(load_image(np.full((4, 4), 7, np.uint8)), np.full((4, 4, 3), 7))
    np.testing.assert_array_equal(load_image(np.ones((4, 4, 3), np.float32)),
                                  np.full((4, 4, 3), 255))
    with pytest.raises(ImageError, match="array"):
        load_image(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(ImageError):
        load_image(np.zeros((4, 4, 5), np.uint8))


@pytest.mark.parametrize("kind", ["missing", "empty", "truncated", "text", "directory",
                                  "random_bytes", "empty_bytes"])
def test_bad_inputs_raise_image_error_naming_the_file(tmp_path, kind):
    path = tmp_path / f"bad_{kind}.jpg"
    src = path
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        buf = io.BytesIO()
        Image.fromarray(gradient(200, 200)).save(buf, format="JPEG")
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif kind == "text":
        path.write_text("hello, I am not a picture\n")
    elif kind == "directory":
        path.mkdir()
    elif kind == "random_bytes":
        src = np.random.default_rng(0).bytes(500)
    elif kind == "empty_bytes":
        src = b""
    with pytest.raises(ImageError) as info:
        load_image(src)
    msg = str(info.value)
    assert "\n" not in msg
    if isinstance(src, type(path)):
        assert str(path) in msg


def test_save_image_atomic_leaves_no_temp(tmp_path):
    rgb = gradient()
    out = tmp_path / "sub" / "x.png"
    save_image_atomic(out, rgb)
    np.testing.assert_array_equal(load_image(out), rgb)
    assert [p.name for p in out.parent.iterdir()] == ["x.png"]
