"""Faster R-CNN on digit scenes: a few training steps, mAP, weights, the task, the CLI (boxes and scenes:
test_scenes.py)."""
from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
from helpers import fake_digits
from numerics import assert_within, assert_within_rounding, roi_align_k, rounding_bound
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import batched_nms

from mnistbench.cli import main
from mnistbench.config import resolve
from mnistbench.data.datasets import Splits, get_info
from mnistbench.data.scenes import digit_pool, make_scenes
from mnistbench.device import Runtime
from mnistbench.errors import UserError
from mnistbench.metrics import detection_metrics
from mnistbench.models import frcnn_heads as batched
from mnistbench.models import weights as wts
from mnistbench.models.frcnn import build
from mnistbench.models.frcnn_net import BACKBONE_WEIGHTS, ROI_STRIDE
from mnistbench.tasks.detect import (
    DetectOptions,
    DetectTask,
    box_lists,
    classification_metrics,
)

# A model small enough to train a few steps in a second or two on one CPU thread.
TINY_MODEL = {"image_size": 48, "width_mult": 0.25, "fpn_channels": 16, "representation_size": 32}
TINY_TASK = {"max_scale": 1.0}
CPU = Runtime(torch.device("cpu"))


def to_targets(scenes) -> list[dict[str, torch.Tensor]]:
    """torchvision's per-image target dicts (class 0 is the background, so digit d is class d + 1)."""
    return [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in box_lists(scenes)]


def task_for(cfg, splits):
    return DetectTask(splits, cfg, CPU)


@pytest.fixture(autouse=True)
def empty_weights_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def _decoded(model, levels, anchors):
    """Every anchor's proposal before clipping (what both RPN paths decode)."""
    objectness, deltas = model.rpn.head(levels)
    _, deltas = concat_box_prediction_layers(objectness, deltas)
    return model.rpn.box_coder.decode_single(deltas, anchors.repeat(len(levels[0]), 1))


def _box_head_bounds(model, feats, proposals, sizes) -> tuple[float, float]:
    """How far two correct box heads' boxes and scores can end apart by rounding alone: RoIAlign (ours reads on a
    grid, torchvision's kernel box by box), fc6, fc7 and the predictor add up K terms; each output's sum of |terms|
    follows from |W| @ (the |terms| before) + |b|, from RoIAlign of |features| on (numerics.py). A delta's error
    moves a box corner by (proposal size / the coder's weight) for its centre and (half the predicted size /
    weight) for its size; a score (softmax) moves by at most twice its logits' error."""
    heads = model.roi_heads
    terms = heads.box_roi_pool({k: v.abs() for k, v in feats.items()}, proposals, sizes).flatten(1)
    k = roi_align_k(48 / ROI_STRIDE)
    for fc in (heads.box_head.fc6, heads.box_head.fc7):
        terms, k = terms @ fc.weight.abs().T + fc.bias.abs(), k + fc.in_features
    predictor = heads.box_predictor
    k += predictor.cls_score.in_features
    logit_error = rounding_bound(k, (terms @ predictor.cls_score.weight.abs().T).max().item())
    delta_error = rounding_bound(k, (terms @ predictor.bbox_pred.weight.abs().T).max().item())
    logit_error += rounding_bound(k, predictor.cls_score.bias.abs().max().item())
    delta_error += rounding_bound(k, predictor.bbox_pred.bias.abs().max().item())
    pooled = heads.box_roi_pool(feats, proposals, sizes)
    deltas = predictor(heads.box_head(pooled))[1].view(-1, 4)
    w = min(heads.box_coder.weights)
    boxes = torch.cat(proposals)
    size = (boxes[:, 2:] - boxes[:, :2]).max().item()  # a proposal's larger side
    grown = size * deltas[:, 2:].div(w).clamp(max=heads.box_coder.bbox_xform_clip).exp().max().item()
    return delta_error * (size / w + grown / (2 * w)) + rounding_bound(4, 48 + grown, worst_case=True), \
        2 * logit_error


# --- the model -----------------------------------------------------------------------------------
def test_a_few_training_steps_then_boxes_in_eval_mode():
    torch.manual_seed(0)
    x, y = fake_digits(64)
    model = build(**TINY_MODEL)
    assert model.weights_source is None
    scenes = make_scenes(digit_pool(x, y), 8, seed=1, canvas=48, max_digits=3, scale=(0.75, 1.0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for step in range(6):
        parts = model(scenes.images, to_targets(scenes))
        assert set(parts) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
        loss = torch.stack(list(parts.values())).sum()
        assert torch.isfinite(loss)
        opt.zero_grad(), loss.backward()
        if step == 0:
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            assert len(grads) > 0.9 * len(list(model.parameters()))
            assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
        opt.step()
        losses.append(loss.item())
    assert min(losses[-2:]) < losses[0]
    task = task_for(resolve({"model": "frcnn", "eval_batch_size": 4, **TINY_MODEL, **TINY_TASK}), _splits())
    dets = task.detect(model, scenes.images)
    assert len(dets) == 8 and model.training  # detect() restores the mode
    for d in dets:
        assert d["boxes"].shape[1:] == (4,) and len(d["boxes"]) == len(d["labels"]) == len(d["scores"]) <= 8
        assert ((d["labels"] >= 0) & (d["labels"] <= 9)).all()  # digits, not the detector's classes


def test_builder_and_task_reject_bad_options():
    for bad, needle in (({"backbone": "vgg"}, "backbone"), ({"image_size": 24}, "image_size")):
        with pytest.raises(UserError, match=needle):
            build(**bad)
    with pytest.raises(UserError, match="test_scenes"):
        DetectOptions(test_scenes=0)
    with pytest.raises(UserError, match="test_scenes"):  # through the config, before any work
        resolve({"model": "frcnn", "test_scenes": 0})
    with pytest.raises(UserError, match="max_scale"):
        task_for(resolve({"model": "frcnn", "image_size": 30, "max_scale": 1.15}), _splits())


# --- evaluation ----------------------------------------------------------------------------------
def test_map_is_one_for_perfect_predictions_and_lower_for_a_shifted_box():
    x, y = fake_digits(30)
    s = make_scenes(digit_pool(x, y), 20, seed=2, canvas=64)
    truth = box_lists(s)
    perfect = [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["boxes"]))} for t in truth]
    m = detection_metrics(perfect, truth)
    assert m["map"] == pytest.approx(1.0) and m["map_50"] == pytest.approx(1.0)
    assert set(m["per_class_ap"]) <= {str(c) for c in range(10)}
    shifted = [dict(p) for p in perfect]
    shifted[0] = {**perfect[0], "boxes": perfect[0]["boxes"] + torch.tensor([3.0, 3.0, 3.0, 3.0])}
    assert detection_metrics(shifted, truth)["map"] < 1.0


def test_classification_by_detection_counts_missing_boxes_as_wrong():
    preds = torch.tensor([7, -1, 0])  # -1: no box (DetectTask.classify_digits)
    r = classification_metrics(preds, torch.tensor([7, 2, 5]))
    assert r["test_accuracy"] == pytest.approx(1 / 3) and r["no_detection_count"] == 1
    assert r["misclassified_count"] == 2 and r["misclassified"][0] == {"index": 1, "true": 2, "pred": -1}
    # the missing box is in its own "none" column (10 rows x 11 columns), charged to no digit class
    cm = r["confusion_matrix"]
    assert len(cm) == 10 and {len(row) for row in cm} == {11} and r["confusion_columns"][-1] == "none"
    assert cm[2][10] == 1 and cm[7][7] == 1 and cm[5][0] == 1 and sum(map(sum, cm)) == 3
    assert sum(row[3] for row in cm) == 0  # no fake prediction of class (2 + 1) % 10
    per = {p["class"]: p for p in r["per_class"]}
    assert len(per) == 10 and per[2]["recall"] == 0 and per[3]["precision"] == 0 and per[7]["f1"] == 1
    # macro-F1 over the ten digits: only 7 has F1 1 (0 was predicted once, wrongly: F1 0)
    assert r["test_macro_f1"] == pytest.approx(0.1)


# --- weights -------------------------------------------------------------------------------------
def test_offline_pretrained_names_the_cache_file_and_the_ways_out(tmp_path):
    with pytest.raises(UserError) as e:
        build(pretrained=True)
    msg = str(e.value)
    assert str(wts.cache_file(BACKBONE_WEIGHTS["mobilenet_v3_large_fpn"])) in msg
    assert str(tmp_path / "torch") in msg
    assert "--set weights=FILE" in msg and "--set pretrained=false" in msg and "\n" not in msg


def test_weights_file_roundtrip_and_mismatch(tmp_path):
    torch.manual_seed(1)
    saved = build(**TINY_MODEL)
    path = tmp_path / "frcnn.pt"
    torch.save(saved.state_dict(), path)
    torch.manual_seed(2)
    loaded = build(**TINY_MODEL, weights=str(path))
    assert loaded.weights_source == f"file:{path.resolve()}"
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(UserError, match="does not fit"):
        build(**{**TINY_MODEL, "fpn_channels": 8}, weights=str(path))
    (tmp_path / "junk.pt").write_bytes(b"not a state dict")
    with pytest.raises(UserError, match="cannot read"):
        build(**TINY_MODEL, weights=str(tmp_path / "junk.pt"))


# --- the training task ---------------------------------------------------------------------------
def _splits() -> Splits:
    """Training digits of classes 0-4 only, validation and test digits of 5-9 only."""
    (tx, ty), (vx, vy), (sx, sy) = fake_digits(200, range(5), 0), fake_digits(60, range(5, 10), 1), \
        fake_digits(40, range(5, 10), 2)
    return Splits(tx, ty, vx, vy, sx, sy, get_info("mnist"))


def test_task_draws_each_split_only_and_resumes_batches_exactly():
    cfg = resolve({"model": "frcnn", "batch_size": 8, "scenes_per_epoch": 40, "val_scenes": 10, "val_digits": 20,
                   **TINY_MODEL, **TINY_TASK})
    task = task_for(cfg, _splits())
    assert task.steps_per_epoch == 5
    full, resumed = list(task.batches(1, 0)), list(task.batches(1, 3))
    assert len(full) == 5 and len(resumed) == 2
    assert torch.equal(full[3].images, resumed[0].images) and torch.equal(full[4].boxes, resumed[1].boxes)
    assert not torch.equal(full[0].images, next(task.batches(0, 0)).images)  # epochs differ
    train_labels = torch.cat([b.labels[b.valid] for b in full])
    assert set(train_labels.tolist()) <= set(range(5))
    assert set(task.val_scenes.labels[task.val_scenes.valid].tolist()) <= set(range(5, 10))
    torch.manual_seed(0)
    model = build(**TINY_MODEL)
    loss = task.loss(model, full[0], 0)
    assert loss.dim() == 0 and torch.isfinite(loss)
    val = task.validate(model)
    assert {"val_loss", "val_accuracy", "val_map_50"} <= set(val) and 0 <= val["val_accuracy"] <= 1


# --- end to end through the command line ---------------------------------------------------------
def test_cli_train_and_evaluate(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    args = ["train", "--model", "frcnn", "--data-dir", str(data_dir), "--out", str(out), "--epochs", "1",
            "--batch-size", "16", "--quiet", "--set", "train_limit=256", "--set", "test_limit=64",
            "--set", "val_size=64", "--set", "scenes_per_epoch=48", "--set", "val_scenes=8",
            "--set", "test_scenes=16", "--set", "eval_batch_size=32", "--set", "inference_benchmark=false",
            *[f"--set={k}={v}" for k, v in {**TINY_MODEL, **TINY_TASK}.items()]]
    assert main(args) == 0
    for name in ("summary.json", "model.pt", "detections.png", "confusion.png", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    s = json.loads((out / "summary.json").read_text())
    for key in ("test_accuracy", "test_macro_f1", "test_detection_loss", "per_class", "confusion_matrix",
                "misclassified", "misclassified_count", "no_detection_count", "map", "map_50", "per_class_ap",
                "inference_scenes_per_second", "inference_ms_per_scene", "weights_source"):
        assert key in s, key
    # the detector's loss and speed are in its own units, never under the classifiers' keys
    assert not {"test_loss", "inference_images_per_second", "inference_ms_per_image"} & set(s)
    assert sum(map(sum, s["confusion_matrix"])) == 64 and 0 <= s["map_50"] <= 1
    assert len(s["confusion_matrix"]) == 10 and len(s["confusion_matrix"][0]) == 11
    preds = json.loads((out / "predictions.json").read_text())
    assert len(preds["index"]) == len(preds["pred"]) == 64 and min(preds["pred"]) >= -1
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data-dir", str(data_dir)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["test_accuracy"] == pytest.approx(s["test_accuracy"]) and shown["map"] == pytest.approx(s["map"])


def test_batched_rpn_and_heads_match_torchvision(monkeypatch):
    """Proposals, detections and anchor labels equal those of torchvision's per-image code."""
    monkeypatch.setattr(batched, "PRE_NMS_DETECTIONS", 10_000)  # no bound: compare every candidate
    torch.manual_seed(0)
    x, y = fake_digits(40)
    s = make_scenes(digit_pool(x, y), 6, seed=5, canvas=48, max_digits=3, scale=(0.75, 1.0))
    model = build(**TINY_MODEL).eval()
    with torch.no_grad():
        # spread the scores of the fresh heads (initialised with std 0.01): near-ties would order arbitrarily
        for layer in [*model.rpn.head.modules(), model.roi_heads.box_predictor.cls_score]:
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
                layer.weight.normal_(std=0.3)
        images = s.images * model.scale + model.shift
        size = (48, 48)
        feats = model.backbone(images)
        levels = [feats[k] for k in model.rpn_levels]
        image_list = ImageList(images, [size] * len(images))
        theirs, _ = model.rpn(image_list, OrderedDict((k, feats[k]) for k in model.rpn_levels))
        anchors = model.rpn.anchor_generator(ImageList(images[:1], [size]), [f[:1] for f in levels])[0]
        ours, _ = batched.propose(model.rpn, levels, size, anchors, None)
        # proposals: both decode the same head outputs element by element, no sum reordered; at most a few
        # roundings (K = 4: scale, shift, exp, halve) of the largest coordinate before clipping
        reach = _decoded(model, levels, anchors).abs().max().item()
        for i, p in enumerate(theirs):
            assert_within_rounding(ours.boxes[i][ours.valid[i]], p, 4, magnitude=reach, worst_case=True)
        their_dets, _ = model.roi_heads(feats, theirs, image_list.image_sizes)
        our_dets = batched.to_dicts(*batched.detections(model.roi_heads, feats[model.roi_level], ROI_STRIDE, ours,
                                                        size))
        assert sum(len(d["boxes"]) for d in our_dets) > 0
        box_bound, score_bound = _box_head_bounds(model, feats, theirs, image_list.image_sizes)
        for a, b in zip(their_dets, our_dets):
            assert torch.equal(a["labels"], b["labels"])
            assert_within(b["boxes"], a["boxes"], box_bound, "boxes")
            assert_within(b["scores"], a["scores"], score_bound, "scores")
        targets = to_targets(s)
        their_labels, _ = model.rpn.assign_targets_to_anchors([anchors] * len(images), targets)
        m = model.rpn.proposal_matcher
        _, our_labels = batched.match(batched.pad_targets(targets), anchors.expand(len(images), -1, -1),
                                      m.high_threshold, m.low_threshold, True)
        assert torch.equal(torch.stack(their_labels), our_labels.float())


def test_batched_nms_is_greedy_nms():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(5, 40, 2, generator=g) * 30
    boxes = torch.cat([xy, xy + 4 + torch.rand(5, 40, 2, generator=g) * 12], dim=2)
    scores = torch.rand(5, 40, generator=g)
    valid = torch.rand(5, 40, generator=g) > 0.2
    groups = torch.randint(0, 3, (5, 40), generator=g)
    keep = batched.nms(boxes, scores, valid, groups, 0.3)
    for i in range(5):
        idx = valid[i].nonzero().flatten()
        want = idx[batched_nms(boxes[i, idx], scores[i, idx], groups[i, idx], 0.3)]
        assert set(want.tolist()) == set(keep[i].nonzero().flatten().tolist())


def test_resnet50_fpn_option_trains_and_detects():
    x, y = fake_digits(20)
    s = make_scenes(digit_pool(x, y), 2, seed=0, canvas=48, scale=(0.75, 1.0))
    model = build(backbone="resnet50_fpn", image_size=48, fpn_channels=16, representation_size=32)
    losses = model.train()(s.images, to_targets(s))
    torch.stack(list(losses.values())).sum().backward()
    assert model.backbone.body.layer1[0].conv1.weight.grad is not None
    assert len(model.eval()(s.images)) == 2
