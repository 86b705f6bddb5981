"""Test-time augmentation (tta=shift): the shifted views, how they combine, a run's test reporting both the
averaged and the single-view accuracy, and predict (PyTorch and ONNX) scoring images as the test did."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from helpers import TINY
from numerics import assert_within, assert_within_rounding, reduction_length, rounding_bound

from mnistbench import export
from mnistbench.config import resolve
from mnistbench.data.datasets import load_splits
from mnistbench.data.pipeline import TTA_VIEWS, shifted
from mnistbench.device import Runtime
from mnistbench.errors import UserError
from mnistbench.models import get_model, get_spec
from mnistbench.predict import Predictor
from mnistbench.run import train
from mnistbench.tasks import classify
from mnistbench.tasks.classify import combine, predict

CPU = Runtime(torch.device("cpu"))


def rolled_probabilities(model, images: torch.Tensor) -> torch.Tensor:
    """The oracle: mean softmax over the image and its 1-px shifts, made with torch.roll, which equals shifting
    in the background for images whose outermost pixels are blank (see `splits`)."""
    model.eval()
    with torch.no_grad():
        views = [torch.roll(images, shifts=(dy, dx), dims=(-2, -1)) for dy, dx in TTA_VIEWS["shift"]]
        return torch.stack([model(v[:, None].float() / 127.5 - 1).softmax(1) for v in views]).mean(0)


def test_shifted_moves_whole_pixels_and_fills_in_background():
    x = torch.zeros(2, 5, 5, dtype=torch.uint8)
    x[:, 2, 2], x[:, 0, 4] = 200, 7
    assert shifted(x, 0, 0) is x
    down, left = shifted(x, 1, 0), shifted(x, 0, -1)
    assert down[:, 3, 2].eq(200).all() and down[:, 1, 4].eq(7).all() and down[:, 0].eq(0).all()
    assert left[:, 2, 1].eq(200).all() and left[:, 0, 3].eq(7).all() and left[:, :, 4].eq(0).all()
    assert shifted(x, -1, 0)[:, 0, 4].eq(0).all()  # moved off the top edge: gone, not wrapped around
    assert all(shifted(x, *s).shape == x.shape for s in TTA_VIEWS["shift"])


def test_combine_is_the_log_of_the_mean_softmax_and_stays_finite_when_confident():
    views = torch.tensor([[[0.0, 3.0, 0.0], [2.0, 0.0, 1.0]]])  # one image, two views, three classes
    # two formulas of the same value (log-sum-exp of log-softmaxes, log of mean softmaxes): a handful of roundings
    # (3 exps and their sum, 2 views' sum, 2 logs: K = 7) on values of the logits' size, worst case
    assert_within_rounding(combine(views), views.softmax(-1).mean(1).log(), 7, magnitude=views.abs().max() + 1,
                           worst_case=True)
    assert torch.equal(combine(views[:, :1]), views[:, 0])  # one view: its logits unchanged
    # class 0's softmax underflows to 0 in fp32 in both views: a naive log(mean(softmax)) gives an infinite loss
    confident = torch.tensor([[[0.0, 200.0], [0.0, 300.0]]])
    loss = F.cross_entropy(combine(confident), torch.tensor([0]))
    assert torch.isfinite(loss) and 199 < loss.item() < 201


@pytest.fixture(scope="module")
def splits(data_dir):
    """A slice of the real data whose test images have a blank outer ring (107 of the 10,000 do not)."""
    s = load_splits("mnist", data_dir, val_size=256, train_limit=512, test_limit=400)
    x = s.test_x
    blank = (x[:, 0].amax(1) == 0) & (x[:, -1].amax(1) == 0) & (x[:, :, 0].amax(1) == 0) & (x[:, :, -1].amax(1) == 0)
    return replace(s, test_x=x[blank], test_y=s.test_y[blank], test_index=s.test_index[blank])


def test_test_metrics_average_the_shifted_views_and_report_the_single_view(splits):
    torch.manual_seed(0)
    net = get_model("cnn", width=4).eval()
    plain = classify.test_metrics(net, splits, rt=CPU, batch_size=128)
    tta = classify.test_metrics(net, splits, rt=CPU, batch_size=128, tta="shift")
    assert plain["test_accuracy_single_view"] is None
    assert tta["test_accuracy_single_view"] == pytest.approx(plain["test_accuracy"])
    want = rolled_probabilities(net, splits.test_x).argmax(1)
    assert torch.equal(tta["predictions"], want)
    assert not torch.equal(tta["predictions"], plain["predictions"])  # the views changed some answers
    logits = predict(net, splits.test_x, rt=CPU, batch_size=128, tta="shift")
    # the same network on the same views, batched otherwise: probabilities within twice the logits' rounding bound
    assert_within(logits.exp(), rolled_probabilities(net, splits.test_x), _probability_bound(net, splits.test_x))


def test_tta_is_a_checked_choice_for_classifiers_only():
    assert resolve({"model": "cnn", "tta": "shift"}).tta == "shift"
    with pytest.raises(UserError, match="tta='flip': choose one of none, shift"):
        resolve({"model": "cnn", "tta": "flip"})
    with pytest.raises(UserError, match="tta=shift is for classifiers"):
        resolve({"model": "frcnn", "tta": "shift"})
    # the recipes that use it, each chosen on the validation split (docs/BENCHMARKS.md)
    assert get_spec("vit").recipes["default"]["tta"] == "shift"
    assert get_spec("cnn").recipes["long"]["tta"] == "shift" and "tta" not in get_spec("cnn").recipes["default"]


def test_a_run_with_tta_predicts_as_it_tested_with_torch_and_onnx(tmp_path, data_dir, splits):
    out = tmp_path / "run"
    cfg = resolve({**TINY, "model": "cnn", "width": 4, "tta": "shift", "out": str(out), "data_dir": str(data_dir),
                   "precision": "fp32", "checkpoints": False})
    summary = train(cfg)
    saved = json.loads((out / "summary.json").read_text())
    assert 0 < saved["test_accuracy_single_view"] <= 1 and saved["test_accuracy"] == summary["test_accuracy"]
    export.export_onnx(out, data_dir=str(data_dir), check_images=64)
    images = splits.test_x[:40].numpy()
    by_torch = Predictor.load(out).probabilities(images)
    by_onnx = Predictor.load(out, backend="onnx").probabilities(images)
    model = Predictor.load(out).model
    bound = _probability_bound(model, splits.test_x[:40])  # onnxruntime: the same sums in its own order
    assert_within(torch.from_numpy(by_onnx), torch.from_numpy(by_torch), bound, "onnx")
    assert_within(torch.from_numpy(by_torch), rolled_probabilities(model, splits.test_x[:40]), bound, "torch")


def _probability_bound(net, images: torch.Tensor) -> float:
    """How far two correct computations of a softmax probability of `net` on `images` can end apart: its logits
    within sqrt(K) * eps * max |logit| (K: the network's forward sums, numerics.py), a probability within twice
    its logits' error, the mean over the views no further."""
    x = images[:, None].float() / 127.5 - 1
    with torch.no_grad():
        scale = net.eval()(x).abs().max().item()
    return 2 * rounding_bound(reduction_length(net, x[:1], backward=False), scale)
