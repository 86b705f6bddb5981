"""The detector's CPU fast paths equal what they replace: RoIAlign as one grid_sample (forward and
backward), and classification by detection's best box without the final NMS."""
from __future__ import annotations

import pytest
import torch
from numerics import assert_within_rounding, roi_align_k
from torch.nn.utils.rnn import pad_sequence
from torchvision.ops import roi_align

from mnistbench.config import resolve
from mnistbench.data.datasets import load_splits
from mnistbench.data.scenes import centered
from mnistbench.device import Runtime
from mnistbench.models import frcnn_heads as heads
from mnistbench.models.frcnn import build
from mnistbench.tasks.detect import DetectTask

TINY_MODEL = {"image_size": 48, "width_mult": 0.25, "fpn_channels": 16, "representation_size": 32}


def torchvision_roi_align(feature, rois, size, stride, sampling_ratio=1):
    index = torch.arange(len(rois), dtype=rois.dtype).repeat_interleave(rois.shape[1])[:, None]
    return roi_align(feature, torch.cat([index, rois.reshape(-1, 4)], dim=1), output_size=size,
                     spatial_scale=1 / stride, sampling_ratio=sampling_ratio)


def random_rois(b: int, r: int, canvas: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(b, r, 2, generator=g) * canvas
    wh = torch.rand(b, r, 2, generator=g) * canvas * 0.6
    rois = torch.cat([xy, (xy + wh).clamp(max=canvas)], dim=-1)
    # the edge cases: the whole canvas, a box under one cell wide at the right edge (its samples fall
    # beyond the map and read 0), a point-sized box at the origin, and a box reaching past the canvas
    rois[0, :4] = torch.tensor([[0.0, 0, canvas, canvas], [canvas - 1, 10, canvas - 0.5, 12],
                                [0.0, 0, 0, 0], [canvas - 8, canvas - 8, canvas + 6, canvas + 9]])
    return rois


@pytest.mark.parametrize("size,stride", [(7, 4), (5, 8)])
def test_grid_roi_align_equals_torchvision_forward_and_backward(size, stride):
    torch.manual_seed(0)
    canvas = 64
    feature = torch.randn(3, 8, canvas // stride, canvas // stride, requires_grad=True)
    rois = random_rois(3, 20, canvas)
    theirs = torchvision_roi_align(feature, rois, size, stride)
    ours = heads.grid_roi_align(feature, rois, size, stride)
    assert ours.shape == theirs.shape == (60, 8, size, size)
    # the same bilinear reads, positions computed in other operations: worst case, relative to max |feature|
    k = roi_align_k(canvas / stride)
    assert_within_rounding(ours, theirs, k, magnitude=feature.abs().max().item(), worst_case=True)
    assert ours[1].abs().sum() > 0 and (theirs[1] == 0).any()  # the edge box: zeros where the samples left the map
    grad = torch.randn_like(theirs)
    g_theirs, = torch.autograd.grad(theirs, feature, grad, retain_graph=True)
    g_ours, = torch.autograd.grad(ours, feature, grad)
    # each cell's gradient sums weight x grad over every read that touches it (up to all 60 x size^2 of them);
    # with weights >= 0 the sum of |terms| is the backward of |grad|; the reads' positions add roi_align_k's part
    terms, = torch.autograd.grad(theirs, feature, grad.abs())
    reads = grad.numel() // grad.shape[1]
    assert_within_rounding(g_ours, g_theirs, reads + roi_align_k(canvas / stride),
                           magnitude=terms + grad.abs().max() * roi_align_k(canvas / stride), worst_case=True)


def test_pool_rois_keeps_the_dtype_and_falls_back_where_the_grid_does_not_apply():
    torch.manual_seed(0)
    feature = torch.randn(2, 4, 16, 16)
    rois = random_rois(2, 6, 64, seed=1)
    assert heads.pool_rois(feature.bfloat16(), rois, (7, 7), 4, 1).dtype == torch.bfloat16
    two = heads.pool_rois(feature, rois, (7, 7), 4, 2)  # two samples per bin: torchvision's kernel
    assert torch.equal(two, torchvision_roi_align(feature, rois, 7, 4, sampling_ratio=2))
    oblong = heads.pool_rois(feature, rois, (7, 5), 4, 1)
    assert torch.equal(oblong, torchvision_roi_align(feature, rois, (7, 5), 4))


def first_detection(dets):
    """The oracle: each image's highest-scoring detection among forward's outputs (label 0 / score -1: none)."""
    scores = pad_sequence([d["scores"] for d in dets], batch_first=True, padding_value=-1.0)
    labels = pad_sequence([d["labels"] for d in dets], batch_first=True, padding_value=0)
    if scores.shape[1] == 0:
        return torch.zeros(len(dets), dtype=torch.int64), torch.full((len(dets),), -1.0)
    best, at = scores.max(dim=1)
    return torch.where(best >= 0, labels.gather(1, at[:, None])[:, 0], 0), best


@pytest.mark.parametrize("boxes", ["all", "some", "none"])
def test_best_is_the_first_of_forwards_detections_on_real_digits(data_dir, boxes):
    torch.manual_seed(0)
    splits = load_splits("mnist", data_dir, val_size=64, train_limit=256, test_limit=64)
    model = build(**TINY_MODEL).eval()
    with torch.no_grad():  # spread the fresh heads' scores
        model.roi_heads.box_predictor.cls_score.weight.normal_(std=0.3)
    canvases = centered(splits.test_x, 48)
    # a score threshold every image's best box passes, one that about half of them pass, one that none does
    with torch.no_grad():
        best_scores = model.best(canvases)[1]
    model.roi_heads.score_thresh = {"all": 0.05, "some": best_scores.median().item(), "none": 0.99}[boxes]
    cfg = resolve({"model": "frcnn", "eval_batch_size": 24, **TINY_MODEL})
    task = DetectTask(splits, cfg, Runtime(torch.device("cpu")))
    with torch.no_grad():
        label, score = model.best(canvases)
        want_label, want_score = first_detection(model(canvases))
    # the same network, batch and kernels through two code paths: the same numbers
    assert torch.equal(label, want_label) and torch.equal(score, want_score)
    found = int((label > 0).sum())
    assert found == {"all": len(canvases), "none": 0}.get(boxes, found) and (boxes != "some" or 0 < found < 64)
    model.train()
    preds = task.classify_digits(model, splits.test_x)
    assert model.training and torch.equal(preds, want_label - 1)  # digits 0..9, -1 for no box
