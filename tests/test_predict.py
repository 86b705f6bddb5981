"""`predict` on your own images: photo-like real digits, outputs, ONNX, detector runs, bad input (reading the
images themselves: test_images.py)."""
from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
import torch
from helpers import encode, fresh_run, upscale
from PIL import Image

from mnistbench.cli import main
from mnistbench.data import images
from mnistbench.record import CONFIG


# --- helpers -------------------------------------------------------------------------------------
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


@pytest.fixture(scope="module")
def cnn_run(trained_cnn):
    return trained_cnn


def predict_json(capsys, *args) -> tuple[int, list, str]:
    rc = main(["predict", *map(str, args), "--format", "json"])
    captured = capsys.readouterr()
    return rc, json.loads(captured.out), captured.err


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
    run = shutil.copytree(cnn_run, tmp_path / "run")  # the export goes into a copy of the shared run
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for i in range(4):
        (pictures / f"{i}.png").write_bytes(encode(255 - upscale(test_set[0][i], 90)))
    assert main(["predict", str(run), str(pictures / "0.png"), "--backend", "onnx"]) == 2
    assert "no such ONNX file" in capsys.readouterr().err
    assert main(["export", str(run), "--data-dir", str(data_dir)]) == 0
    assert "parity with PyTorch on 1000 test images" in capsys.readouterr().out
    _, by_torch, _ = predict_json(capsys, run, pictures, "--device", "cpu")
    _, by_onnx, _ = predict_json(capsys, run, pictures, "--backend", "onnx")
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
