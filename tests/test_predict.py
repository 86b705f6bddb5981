"""`predict` on your own images: the preprocessing recipes, photo-like real digits, outputs, detector runs, bad input."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mnistbench import checkpoint
from mnistbench.cli import main
from mnistbench.config import resolve
from mnistbench.data import images
from mnistbench.data.datasets import load_arrays
from mnistbench.errors import UserError
from mnistbench.fsio import write_json
from mnistbench.models import get_model
from mnistbench.record import CONFIG, MODEL
from mnistbench.run import train


# --- helpers -------------------------------------------------------------------------------------
def encode(pixels: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **options)
    return buf.getvalue()


def upscale(digit: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(digit).resize((side, side), Image.BICUBIC))


def photo(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A real test digit made to look like a phone photo: upscaled, dark ink on tinted paper, noise, JPEG."""
    side = int(rng.integers(120, 320))
    ink = upscale(digit, side).astype(np.float32) / 255
    h, w = side + int(rng.integers(20, 160)), side + int(rng.integers(20, 160))
    a = np.zeros((h, w), np.float32)
    y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
    a[y:y + side, x:x + side] = ink
    paper = np.array([235, 228, 205], np.float32) * rng.uniform(0.85, 1.0)
    rgb = paper * (1 - a[..., None]) + np.array([30, 35, 80], np.float32) * a[..., None]
    rgb += rng.normal(0, 8, rgb.shape)
    return encode(np.clip(rgb, 0, 255).astype(np.uint8), "JPEG", quality=70)


def centre_of_mass(x: np.ndarray) -> tuple[float, float]:
    m = x.astype(float)
    return (m.sum(1) * np.arange(28)).sum() / m.sum(), (m.sum(0) * np.arange(28)).sum() / m.sum()


def fresh_run(folder, model: str, **options):
    """A run folder holding a freshly built (untrained) model: enough for plumbing and for ONNX parity."""
    cfg = resolve({"model": model, "out": str(folder), **options})
    folder.mkdir(parents=True)
    write_json(folder / CONFIG, {"config": cfg.to_dict()})
    checkpoint.save(folder / MODEL, get_model(model, **cfg.model_args).state_dict())
    return folder


@pytest.fixture(scope="module")
def test_set(data_dir):
    _, _, x, y = load_arrays("mnist", data_dir, allow_download=False)
    return np.array(x), np.array(y)


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory, data_dir):
    """The default CNN and recipe on 15,000 real training digits (~98.8 % on the test set), in fp32 so that
    every CPU trains the same model (precision=auto picks by timing)."""
    out = tmp_path_factory.mktemp("predict") / "cnn"
    train(resolve({"model": "cnn", "data_dir": str(data_dir), "out": str(out), "train_limit": 15000,
                   "precision": "fp32", "val_size": 1000, "test_limit": 500, "inference_benchmark": False,
                   "checkpoints": False, "quiet": True}))
    return out


def predict_json(capsys, *args) -> tuple[int, list, str]:
    rc = main(["predict", *map(str, args), "--format", "json"])
    captured = capsys.readouterr()
    return rc, json.loads(captured.out), captured.err


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


def test_fashion_recipe_trims_fits_the_longest_side_and_centres(data_dir):
    _, _, x, _ = load_arrays("fashion-mnist", data_dir, allow_download=False)
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


# --- classifier runs -----------------------------------------------------------------------------
def test_photo_like_real_test_digits_are_read_by_the_default_cnn(cnn_run, test_set, tmp_path, capsys):
    """Real test digits, upscaled, as dark ink on tinted paper, with noise and JPEG: >= 95 % correct."""
    x, y = test_set
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(x), 400, replace=False))
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in pick:
        (folder / f"{i:05d}.jpg").write_bytes(photo(x[i], rng))
    rc, res, err = predict_json(capsys, cnn_run, folder)
    assert rc == 0 and err == ""
    assert [r["file"] for r in res] == [str(folder / f"{i:05d}.jpg") for i in pick]  # a folder reads in name order
    accuracy = np.mean([int(r["class"]) == y[i] for r, i in zip(res, pick)])
    assert accuracy >= 0.95, accuracy


def test_table_csv_topk_and_what_the_model_saw(cnn_run, test_set, tmp_path, capsys):
    x, y = test_set
    a, b = tmp_path / "a.png", tmp_path / "b.bmp"
    a.write_bytes(encode(255 - upscale(x[0], 200)))
    b.write_bytes(encode(upscale(x[1], 60), "BMP"))
    assert main(["predict", str(cnn_run), str(a), str(b), "--topk", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["file", "class", "prob", "top-2"] and len(lines) == 3
    assert lines[1].split()[:2] == [str(a), str(y[0])] and lines[2].split()[:2] == [str(b), str(y[1])]
    seen = tmp_path / "seen"
    assert main(["predict", str(cnn_run), str(a), str(b), "--format", "csv", "--topk", "3",
                 "--save-preprocessed", str(seen)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["class"] for r in rows] == [str(y[0]), str(y[1])]
    assert all(len(r["topk"].split(";")) == 3 and 0.5 < float(r["probability"]) <= 1 for r in rows)
    for name, src in (("a.png", a), ("b.png", b)):
        saved = np.asarray(Image.open(seen / name))
        np.testing.assert_array_equal(saved, images.from_bytes(src.read_bytes(), "mnist"))


def test_bad_inputs_are_one_line_each_and_the_rest_is_answered(cnn_run, test_set, tmp_path, capsys):
    good = tmp_path / "good.png"
    good.write_bytes(encode(255 - upscale(test_set[0][0], 100)))
    bomb = io.BytesIO()
    Image.new("1", (12_000, 9_000)).save(bomb, format="PNG")
    bad = {"text.png": b"hello", "cut.jpg": encode(np.full((64, 64), 99, np.uint8), "JPEG")[:100],
           "bomb.png": bomb.getvalue()}
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image, and not looked at")
    args = [good, *(tmp_path / n for n in bad), empty, tmp_path / "missing.png"]
    rc, res, err = predict_json(capsys, cnn_run, *args)
    assert rc == 1 and [r["file"] for r in res] == [str(good)] and res[0]["class"] == str(test_set[1][0])
    lines = err.splitlines()
    assert len(lines) == 5 and all(line.startswith("mnistbench: error: ") for line in lines)
    for needle in ("text.png: not an image", "cut.jpg: truncated or corrupt", "bomb.png: image is 12000×9000",
                   "empty: folder holds no images", "missing.png: no such file or folder"):
        assert sum(needle in line for line in lines) == 1, needle


def test_a_run_without_model_pt_is_an_error(cnn_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / CONFIG).write_bytes((cnn_run / CONFIG).read_bytes())
    img = tmp_path / "x.png"
    img.write_bytes(encode(np.eye(28, dtype=np.uint8) * 255))
    assert main(["predict", str(run), str(img)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mnistbench: error: ") and "no model.pt" in err and "\n" not in err


def test_onnx_backend_matches_torch(cnn_run, test_set, data_dir, tmp_path, capsys):
    x = test_set[0]
    for i in range(4):
        (tmp_path / f"{i}.png").write_bytes(encode(255 - upscale(x[i], 90)))
    assert main(["predict", str(cnn_run), str(tmp_path / "0.png"), "--backend", "onnx"]) == 2
    assert "no such ONNX file" in capsys.readouterr().err
    assert main(["export", str(cnn_run), "--data-dir", str(data_dir)]) == 0
    assert "parity with PyTorch on 1000 test images" in capsys.readouterr().out
    _, by_torch, _ = predict_json(capsys, cnn_run, tmp_path, "--device", "cpu")
    _, by_onnx, _ = predict_json(capsys, cnn_run, tmp_path, "--backend", "onnx")
    assert [r["class"] for r in by_onnx] == [r["class"] for r in by_torch]
    # the run may predict in bf16 autocast on a CPU that has it; the ONNX file is fp32
    assert all(abs(a["probability"] - b["probability"]) < 0.02 for a, b in zip(by_onnx, by_torch))


def test_a_fashion_run_uses_its_recipe_and_class_names(tmp_path, capsys):
    run = fresh_run(tmp_path / "fm", "cnn", dataset="fashion-mnist")
    shirt = np.full((300, 200), 255, np.uint8)
    shirt[50:250, 40:160] = 60
    (tmp_path / "shirt.jpg").write_bytes(encode(shirt, "JPEG"))
    rc, res, _ = predict_json(capsys, run, tmp_path / "shirt.jpg", "--topk", "10")
    assert rc == 0 and len(res[0]["topk"]) == 10 and "Ankle boot" in {t["class"] for t in res[0]["topk"]}
    assert main(["predict", str(run), str(tmp_path / "shirt.jpg"), "--draw", str(tmp_path / "d")]) == 2
    assert "needs a detector run" in capsys.readouterr().err


# --- detector runs -------------------------------------------------------------------------------
def test_a_detector_run_reads_digits_left_to_right_and_draws_them(test_set, tmp_path, capsys):
    """Plumbing on an untrained detector (a trained one takes minutes here): every box comes back in the
    image's pixels, sorted left to right, drawn on the image; the canvas it saw is saved."""
    x, y = test_set
    torch.manual_seed(0)
    run = fresh_run(tmp_path / "frcnn", "frcnn")
    picks = [int(np.flatnonzero(y == d)[0]) for d in (2, 0, 2, 6)]
    row = np.concatenate([np.pad(x[i], ((6, 6), (2, 2))) for i in picks], axis=1)  # "2026", 40 x 128
    scene = 255 - np.kron(row, np.ones((4, 4), np.uint8))  # dark ink on white, 160 x 512
    (tmp_path / "2026.png").write_bytes(encode(scene))
    drawn, seen = tmp_path / "drawn", tmp_path / "seen"
    rc, res, err = predict_json(capsys, run, tmp_path / "2026.png", "--min-score", "0", "--draw", drawn,
                                "--save-preprocessed", seen)
    assert rc == 0 and err == ""
    digits = res[0]["digits"]
    assert digits and res[0]["text"] == "".join(str(d["digit"]) for d in digits)
    centres = [(d["box"][0] + d["box"][2]) / 2 for d in digits]
    assert centres == sorted(centres)
    assert all(0 <= d["box"][0] < d["box"][2] <= 512 and 0 <= d["box"][1] < d["box"][3] <= 160 for d in digits)
    assert all(0 <= d["digit"] <= 9 and 0 <= d["score"] <= 1 for d in digits)
    assert Image.open(drawn / "2026.png").size == (512, 160)
    canvas = np.asarray(Image.open(seen / "2026.png"))
    assert canvas.shape == (64, 64) and canvas[:, :2].max() == 0 and canvas.max() == 255
    assert main(["predict", str(run), str(tmp_path / "2026.png"), "--backend", "onnx"]) == 2
    assert "no ONNX export" in capsys.readouterr().err
