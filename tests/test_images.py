"""Reading your own images as MNIST digits (data/images.py): background polarity, centring, transparency, colour
modes and formats, EXIF rotation, the fashion recipe, and bad or oversized files."""
from __future__ import annotations

import io

import numpy as np
import pytest
from helpers import encode, upscale
from PIL import Image

from mnistbench.data import images
from mnistbench.data.datasets import load_arrays
from mnistbench.errors import UserError


def centre_of_mass(x: np.ndarray) -> tuple[float, float]:
    m = x.astype(float)
    return (m.sum(1) * np.arange(28)).sum() / m.sum(), (m.sum(0) * np.arange(28)).sum() / m.sum()



# --- preprocessing -------------------------------------------------------------------------------
def test_light_background_and_its_inverse_give_the_same_digit(test_set):
    digit = upscale(test_set[0][0], 140)
    dark_on_light = images.to_mnist(Image.fromarray(255 - digit))
    light_on_dark = images.to_mnist(Image.fromarray(digit))
    assert dark_on_light.shape == (28, 28) and dark_on_light.dtype == np.uint8
    np.testing.assert_array_equal(dark_on_light, light_on_dark)
    # MNIST's own layout: the ink fits 20 x 20 and its centre of mass is within a pixel of (14, 14)
    rows, cols = np.flatnonzero(dark_on_light.any(1)), np.flatnonzero(dark_on_light.any(0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in (20, 21)
    cy, cx = centre_of_mass(dark_on_light)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


def test_an_mnist_digit_comes_back_nearly_unchanged(test_set):
    x = test_set[0][:50]
    back = np.stack([images.to_mnist(Image.fromarray(d)) for d in x]).astype(float)
    cos = (back * x).sum((1, 2)) / np.linalg.norm(back, axis=(1, 2)) / np.linalg.norm(x.astype(float), axis=(1, 2))
    assert np.median(cos) > 0.99


def test_an_off_centre_digit_in_a_400_by_300_image_is_centred(test_set):
    digit = 255 - upscale(test_set[0][1], 100)
    corner, middle = np.full((300, 400), 255, np.uint8), np.full((300, 400), 255, np.uint8)
    corner[10:110, 15:115] = digit
    middle[100:200, 150:250] = digit
    a, b = images.to_mnist(Image.fromarray(corner)), images.to_mnist(Image.fromarray(middle))
    np.testing.assert_array_equal(a, b)
    cy, cx = centre_of_mass(a)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


@pytest.mark.parametrize("stroke", [0, 255], ids=["black-strokes", "white-strokes"])
def test_a_transparent_png(test_set, stroke):
    digit = upscale(test_set[0][2], 112)
    rgba = np.zeros((112, 112, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = stroke, digit  # the strokes are the alpha channel; colour under it is arbitrary
    got = images.to_mnist(images.decode(encode(rgba)))
    want = images.to_mnist(Image.fromarray(digit))
    # flattening alpha onto a background rounds each 0..255 level once more, and the recipe's Lanczos fit turns
    # a level's +-1 into at most +-2
    assert np.abs(got.astype(int) - want).max() <= 2


MODES = {  # name -> (the digit as this kind of file, format, save options)
    "RGB PNG": (lambda g: Image.fromarray(g).convert("RGB"), "PNG", {}),
    "palette GIF": (lambda g: Image.fromarray(g).convert("P"), "GIF", {}),
    "CMYK JPEG": (lambda g: Image.fromarray(g).convert("CMYK"), "JPEG", {"quality": 95}),
    "16-bit PNG": (lambda g: Image.fromarray(g.astype(np.uint16) * 257), "PNG", {}),
    "float TIFF": (lambda g: Image.fromarray(g.astype(np.float32) / 255), "TIFF", {}),
    "WebP": (lambda g: Image.fromarray(g).convert("RGB"), "WEBP", {"quality": 95}),
    "grey+alpha PNG": (lambda g: Image.fromarray(g).convert("LA"), "PNG", {}),
}


@pytest.mark.parametrize("kind", MODES)
def test_any_colour_mode_and_format_gives_the_same_digit(test_set, kind):
    grey = 255 - upscale(test_set[0][0], 84)
    make, fmt, options = MODES[kind]
    buf = io.BytesIO()
    make(grey).save(buf, format=fmt, **options)
    got = images.to_mnist(images.decode(buf.getvalue()))
    # lossy formats (JPEG and WebP at quality 95, a 256-colour palette, CMYK) move a level by a step or two; the
    # background removal's stretch and the Lanczos fit can grow that to 3 of 255, never to a different digit
    assert np.abs(got.astype(int) - images.to_mnist(Image.fromarray(grey))).max() <= 3


def test_exif_rotation_is_applied(test_set):
    upright = 255 - upscale(test_set[0][0], 90)  # a "7": no rotation of it looks alike
    upright = np.pad(upright, ((0, 0), (30, 30)), constant_values=255)  # 90 x 150, not square
    stored = np.ascontiguousarray(np.rot90(upright))  # what the camera wrote: on its side
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    img = images.decode(encode(stored, exif=exif.tobytes()))
    assert img.size == (150, 90)
    np.testing.assert_array_equal(images.to_mnist(img), images.to_mnist(Image.fromarray(upright)))
    assert not np.array_equal(images.to_mnist(img), images.to_mnist(Image.fromarray(stored)))


def test_fashion_recipe_trims_fits_the_longest_side_and_centres(fashion_data_dir):
    _, _, x, _ = load_arrays("fashion-mnist", fashion_data_dir, allow_download=False)
    item = x[1]  # a pullover, wider than tall once trimmed
    product = np.full((500, 700), 255, np.uint8)  # dark garment on a white studio background, off-centre
    product[40:320, 60:340] = 255 - upscale(item, 280)
    out = images.preprocess(Image.fromarray(product), "fashion-mnist")
    rows, cols = np.flatnonzero(out.any(1)), np.flatnonzero(out.any(0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 == 28  # the longest side fills the canvas
    assert abs((rows[0] + rows[-1]) / 2 - 13.5) <= 1 and abs((cols[0] + cols[-1]) / 2 - 13.5) <= 1
    cos = (out.astype(float) * item).sum() / np.linalg.norm(out) / np.linalg.norm(item.astype(float))
    assert cos > 0.9
    with pytest.raises(UserError, match="no preprocessing recipe"):
        images.preprocess(Image.fromarray(product), "cifar10")


@pytest.mark.parametrize("data, needle", [
    (b"this is not an image", "not an image"),
    (encode(np.full((64, 64), 200, np.uint8))[:60], "truncated or corrupt"),
    (encode(np.full((64, 64), 200, np.uint8)), "blank"),
])
def test_bad_images_are_one_clear_line(data, needle):
    with pytest.raises(UserError, match=needle):
        images.from_bytes(data, "mnist")


def test_a_decompression_bomb_is_refused_before_decoding():
    buf = io.BytesIO()
    Image.new("1", (12_000, 9_000)).save(buf, format="PNG")  # 108 M pixels in a few kB
    with pytest.raises(UserError, match=r"12000×9000 = 108,000,000 pixels, over the limit of 64,000,000"):
        images.decode(buf.getvalue())
    with pytest.raises(UserError, match="over the limit of 100"):
        images.decode(encode(np.zeros((20, 20), np.uint8)), max_pixels=100)
