"""Digit scenes for the detector: exact boxes, seeded non-overlapping scenes, targets and centred digits."""
from __future__ import annotations

import torch
from helpers import fake_digits

from mnistbench.data.scenes import centered, digit_boxes, digit_pool, make_scenes
from mnistbench.tasks.detect import box_lists, padded_targets


# --- boxes ---------------------------------------------------------------------------------------
def test_boxes_are_exact_pixel_extents_and_empty_images_are_flagged():
    x = torch.zeros(4, 10, 12, dtype=torch.uint8)
    x[0, 2:5, 3:9] = 200      # rows 2..4, cols 3..8
    x[1, 0, 0] = 255          # a single corner pixel
    x[1, 9, 11] = 30          # below the threshold: not ink
    x[3, :, :] = 255          # everything
    boxes, valid = digit_boxes(x)
    assert valid.tolist() == [True, True, False, True]
    assert boxes.tolist() == [[3, 2, 9, 5], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 12, 10]]
    fb, fv = digit_boxes(x.float() / 255)  # float images in [0, 1] give the same boxes
    assert torch.equal(fb, boxes) and torch.equal(fv, valid)


# --- scenes --------------------------------------------------------------------------------------
def test_scenes_are_seeded_inside_the_canvas_without_overlap_and_correctly_labelled():
    x, y = fake_digits(50)
    pool = digit_pool(x, y)
    s = make_scenes(pool, 300, seed=3, canvas=64, max_digits=4)
    assert s.images.shape == (300, 1, 64, 64) and s.boxes.shape == (300, 4, 4)
    assert s.valid[:, 0].all() and (s.valid.sum(1) >= 1).all() and (s.valid.sum(1) == 4).any()
    b = s.boxes[s.valid]
    assert (b[:, :2] >= 0).all() and (b[:, 2:] <= 64).all() and (b[:, 2:] > b[:, :2]).all()
    assert torch.equal(s.labels[s.valid], y[s.sources[s.valid]]) and (s.labels[~s.valid] == -1).all()
    for k in range(4):  # every box holds ink
        for i in s.valid[:, k].nonzero().flatten()[:20].tolist():
            x1, y1, x2, y2 = s.boxes[i, k].int().tolist()
            assert s.images[i, 0, y1:y2, x1:x2].max() > 0.25
    # pairwise intersection of the tight boxes is empty
    lo = torch.maximum(s.boxes[:, :, None, :2], s.boxes[:, None, :, :2])
    hi = torch.minimum(s.boxes[:, :, None, 2:], s.boxes[:, None, :, 2:])
    inter = (hi - lo).clamp(min=0).prod(-1)
    pairs = s.valid[:, :, None] & s.valid[:, None, :] & ~torch.eye(4, dtype=torch.bool)
    assert (inter[pairs] == 0).all()
    again, other = (make_scenes(pool, 300, seed=seed, canvas=64, max_digits=4) for seed in (3, 4))
    assert all(torch.equal(a, b) for a, b in zip(vars(s).values(), vars(again).values()))
    assert not torch.equal(s.images, other.images)


def test_targets_and_centred_digits():
    x, y = fake_digits(20)
    s = make_scenes(digit_pool(x, y), 8, seed=0, canvas=48, max_digits=3, scale=(0.75, 1.0))
    targets = box_lists(s)
    assert [len(t["boxes"]) for t in targets] == s.valid.sum(1).tolist()
    assert torch.equal(torch.cat([t["labels"] for t in targets]), s.labels[s.valid])
    padded = padded_targets(s)
    assert torch.equal(padded.labels[s.valid], s.labels[s.valid] + 1)  # the detector's class 0 is background
    assert (padded.labels[~s.valid] == 0).all() and torch.equal(padded.valid, s.valid)
    c = centered(x[:2], 48)
    assert c.shape == (2, 1, 48, 48) and torch.equal(c[:, 0, 10:38, 10:38], x[:2].float() / 255)
