"""Faster R-CNN's RPN and box-head steps batched over images, for same-size canvases.

torchvision's RegionProposalNetwork and RoIHeads loop over the images of a batch in Python (anchor
matching, positive/negative sampling, NMS, post-processing): on a GPU that is ~100 small kernels and
several host syncs per image, which dominates a step on 64-px canvases. The functions here compute the
same things on padded (B, N, ...) tensors with the modules, thresholds and box coders of torchvision's
`rpn` and `roi_heads`, so parameters and state dicts stay torchvision's:
- matching follows torchvision's Matcher exactly (incl. low-quality matches in the RPN);
- sampling draws the same numbers of positives and negatives, uniformly, as its sampler does;
- NMS is exact greedy NMS (IoU > threshold suppresses), solved for all images at once;
- post-processing keeps torchvision's score threshold, per-class NMS and detections per image, but
  runs NMS over each image's `PRE_NMS_DETECTIONS` best class-boxes only (a bound, not a change, unless
  more than that many candidates clear the score threshold);
- on the CPU, RoIAlign is one grid_sample (`grid_roi_align`, the same values; torchvision's CPU backward
  runs on one thread and was a third of a training step).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import (
    RegionProposalNetwork,
    concat_box_prediction_layers,
)
from torchvision.ops import roi_align

from .boxes import Padded

PRE_NMS_DETECTIONS = 128  # class-boxes per image entering the final NMS



def pad_targets(targets: list[dict[str, torch.Tensor]]) -> Padded:
    """torchvision's list of {"boxes", "labels"} as Padded (at least one slot per image)."""
    n = max([len(t["boxes"]) for t in targets] + [1])
    dev = targets[0]["boxes"].device
    boxes = torch.zeros(len(targets), n, 4, device=dev)
    labels = torch.zeros(len(targets), n, dtype=torch.int64, device=dev)
    valid = torch.zeros(len(targets), n, dtype=torch.bool, device=dev)
    for i, t in enumerate(targets):  # the list format is per image by nature
        k = len(t["boxes"])
        boxes[i, :k], labels[i, :k], valid[i, :k] = t["boxes"], t["labels"], True
    return Padded(boxes, labels, valid)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of (B, N, 4) and (B, M, 4) xyxy boxes: (B, N, M)."""
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    lt = torch.maximum(a[:, :, None, :2], b[:, None, :, :2])
    rb = torch.minimum(a[:, :, None, 2:], b[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    return inter / (area_a[:, :, None] + area_b[:, None, :] - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor, groups: torch.Tensor,
        threshold: float) -> torch.Tensor:
    """Exact greedy NMS within each image and group: keep mask (B, M) over the valid boxes.

    Greedy NMS keeps box i iff no kept box of higher score and the same group overlaps it by IoU >
    threshold. That recursion has exactly one fixed point, reached by iterating from "keep all" (the
    first iteration is "Fast NMS"); a few batched iterations replace B sequential NMS calls.
    """
    order = scores.masked_fill(~valid, float("-inf")).argsort(dim=1, descending=True)  # (B, M)
    b = boxes.gather(1, order[..., None].expand(-1, -1, 4))
    g, v = groups.gather(1, order), valid.gather(1, order)
    m = boxes.shape[1]
    earlier = torch.ones(m, m, dtype=torch.bool, device=boxes.device).triu(diagonal=1)  # [j, i]: j before i
    suppresses = (box_iou(b, b) > threshold) & (g[:, :, None] == g[:, None, :]) & earlier & v[:, :, None]
    keep = v
    for _ in range(m):  # converges in a few iterations; m bounds the chain of suppressions
        new = v & ~(suppresses & keep[:, :, None]).any(dim=1)
        if torch.equal(new, keep):
            break
        keep = new
    return torch.zeros_like(valid).scatter(1, order, keep)


def match(gt: Padded, boxes: torch.Tensor, high: float, low: float, low_quality: bool
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's Matcher for a batch: (B, N) index of the best ground-truth box and label
    1 (IoU >= high, or the best box of some ground truth when `low_quality`), 0 (< low), -1 (between)."""
    iou = box_iou(gt.boxes, boxes).masked_fill(~gt.valid[..., None], -1.0)  # (B, G, N)
    best, idx = iou.max(dim=1)
    label = torch.where(best >= high, 1, torch.where(best < low, 0, -1))
    if low_quality:  # every ground truth keeps the boxes it overlaps most, however little
        top = iou.max(dim=2, keepdim=True).values
        label = torch.where(((iou == top) & gt.valid[..., None]).any(dim=1), 1, label)
    return idx, label


def sample(labels: torch.Tensor, per_image: int, positive_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's BalancedPositiveNegativeSampler for a batch: positive (label >= 1) and negative
    (label == 0) masks (B, N), at most per_image * positive_fraction positives, negatives filling up."""
    pos, neg = labels >= 1, labels == 0
    n_pos = pos.sum(dim=1).clamp(max=int(per_image * positive_fraction))
    n_neg = torch.minimum(per_image - n_pos, neg.sum(dim=1))
    r = torch.rand(labels.shape, device=labels.device)

    def first(mask: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        rank = torch.where(mask, r, 2.0).argsort(dim=1).argsort(dim=1)  # random rank among the mask
        return mask & (rank < n[:, None])

    return first(pos, n_pos), first(neg, n_neg)


def _smooth_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.smooth_l1_loss(pred.float(), target, beta=1 / 9, reduction="none").sum(dim=-1)


def propose(rpn: RegionProposalNetwork, features: list[torch.Tensor], image_size: tuple[int, int],
            anchors: torch.Tensor, targets: Padded | None) -> tuple[Padded, dict[str, torch.Tensor]]:
    """RPN: proposals (B, P, 4) with valid mask (labels unused), and its two losses when `targets` is given.

    `anchors` (N, 4) are one image's anchors, in the order of torchvision's AnchorGenerator.
    """
    objectness, deltas = rpn.head(features)
    per_level = [o.shape[1] * o.shape[2] * o.shape[3] for o in objectness]
    objectness, deltas = concat_box_prediction_layers(objectness, deltas)  # (B*N, 1), (B*N, 4)
    b, n = features[0].shape[0], anchors.shape[0]
    all_anchors = anchors.repeat(b, 1)
    proposals = rpn.box_coder.decode_single(deltas.detach().float(), all_anchors).view(b, n, 4)
    scores = objectness.detach().float().view(b, n)
    # the pre_nms_top_n best anchors of each level, as torchvision's filter_proposals
    top, level, start = [], [], 0
    for k, count in enumerate(per_level):
        take = min(rpn.pre_nms_top_n(), count)
        top.append(scores[:, start:start + count].topk(take, dim=1).indices + start)
        level.append(torch.full((take,), k, device=scores.device))
        start += count
    top = torch.cat(top, dim=1)  # (B, M)
    boxes = proposals.gather(1, top[..., None].expand(-1, -1, 4))
    h, w = image_size
    boxes = torch.stack([boxes[..., 0].clamp(0, w), boxes[..., 1].clamp(0, h),
                         boxes[..., 2].clamp(0, w), boxes[..., 3].clamp(0, h)], dim=-1)
    prob = scores.gather(1, top).sigmoid()
    ok = ((boxes[..., 2] - boxes[..., 0] >= rpn.min_size) & (boxes[..., 3] - boxes[..., 1] >= rpn.min_size)
          & (prob >= rpn.score_thresh))
    keep = nms(boxes, prob, ok, torch.cat(level).expand_as(top), rpn.nms_thresh)
    best = prob.masked_fill(~keep, -1.0).topk(min(rpn.post_nms_top_n(), top.shape[1]), dim=1)
    out = Padded(boxes.gather(1, best.indices[..., None].expand(-1, -1, 4)), best.indices, best.values >= 0)
    if targets is None:
        return out, {}
    idx, labels = match(targets, anchors.expand(b, -1, -1), rpn.proposal_matcher.high_threshold,
                        rpn.proposal_matcher.low_threshold, rpn.proposal_matcher.allow_low_quality_matches)
    matched = targets.boxes.gather(1, idx[..., None].expand(-1, -1, 4)).view(-1, 4)
    regression = rpn.box_coder.encode_single(matched, all_anchors)
    pos, neg = sample(labels, rpn.fg_bg_sampler.batch_size_per_image, rpn.fg_bg_sampler.positive_fraction)
    pos, sampled = pos.flatten(), (pos | neg).flatten()
    count = sampled.sum().clamp(min=1)
    box_loss = (_smooth_l1(deltas, regression) * pos).sum() / count
    bce = F.binary_cross_entropy_with_logits(objectness.flatten().float(), labels.flatten().clamp(min=0).float(),
                                             reduction="none")
    return out, {"loss_objectness": (bce * sampled).sum() / count, "loss_rpn_box_reg": box_loss}


def grid_roi_align(feature: torch.Tensor, rois: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """torchvision's roi_align (aligned=False, sampling_ratio=1) of (B, R, 4) boxes as one grid_sample:
    (B*R, C, size, size), equal up to float rounding.

    With one sample per bin, RoIAlign reads the feature map bilinearly at each bin's centre, the box
    at least one cell wide and tall; a point is clamped to the map's edge, or reads 0 beyond one cell
    outside it. grid_sample (border padding, align_corners) does the same reads, and its CPU backward
    is vectorised and multi-threaded, where torchvision's loops over boxes on one thread: several times
    faster for a step's 1,024 boxes on 64 channels (docs/BENCHMARKS.md).
    """
    b, r, _ = rois.shape
    h, w = feature.shape[-2:]
    x1, y1, x2, y2 = (rois.float() / stride).unbind(-1)
    centres = torch.arange(size, device=rois.device, dtype=torch.float32) + 0.5
    xs = x1[..., None] + centres * ((x2 - x1).clamp(min=1) / size)[..., None]  # (B, R, size)
    ys = y1[..., None] + centres * ((y2 - y1).clamp(min=1) / size)[..., None]
    gx = (2 * xs / (w - 1) - 1)[:, :, None, :].expand(b, r, size, size)
    gy = (2 * ys / (h - 1) - 1)[:, :, :, None].expand(b, r, size, size)
    grid = torch.stack([gx, gy], dim=-1).reshape(b, r * size, size, 2)
    # fp32 like roi_align's autocast rule (bf16 would round coordinates to 0.25-0.5 px)
    pooled = F.grid_sample(feature.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    inside = ((xs >= -1) & (xs <= w))[:, :, None, :] & ((ys >= -1) & (ys <= h))[:, :, :, None]
    pooled = pooled * inside.reshape(b, 1, r * size, size)
    c = feature.shape[1]
    return pooled.view(b, c, r, size, size).transpose(1, 2).reshape(b * r, c, size, size).to(feature.dtype)


def pool_rois(feature: torch.Tensor, rois: torch.Tensor, size: tuple[int, int], stride: int,
              sampling_ratio: int) -> torch.Tensor:
    """RoIAlign of (B, R, 4) boxes on one level: (B*R, C, *size); grid_roi_align on the CPU where it applies,
    torchvision's roi_align elsewhere (its CUDA kernels are measured; the grid form is not, there)."""
    if feature.device.type == "cpu" and sampling_ratio == 1 and size[0] == size[1]:
        return grid_roi_align(feature, rois, size[0], stride)
    b, r, _ = rois.shape
    index = torch.arange(b, device=rois.device, dtype=rois.dtype).repeat_interleave(r)[:, None]
    # boxes stay fp32 (bf16 would round coordinates to 0.25-0.5 px); roi_align's autocast rule casts
    return roi_align(feature, torch.cat([index, rois.reshape(-1, 4)], dim=1), output_size=size,
                     spatial_scale=1 / stride, sampling_ratio=sampling_ratio)


def _heads(roi_heads: RoIHeads, feature: torch.Tensor, rois: torch.Tensor, stride: int):
    """Class logits (B*R, C) and box deltas (B*R, C, 4) of (B, R, 4) boxes on one feature level."""
    b, r, _ = rois.shape
    pool = roi_heads.box_roi_pool
    pooled = pool_rois(feature, rois, pool.output_size, stride, pool.sampling_ratio)
    logits, deltas = roi_heads.box_predictor(roi_heads.box_head(pooled))
    return logits.float(), deltas.float().view(b * r, -1, 4)


def box_losses(roi_heads: RoIHeads, feature: torch.Tensor, stride: int, proposals: Padded,
               targets: Padded) -> dict[str, torch.Tensor]:
    """The box head's classification and regression losses on sampled proposals plus ground truth."""
    cand = torch.cat([proposals.boxes, targets.boxes], dim=1)  # torchvision adds the ground truth too
    valid = torch.cat([proposals.valid, targets.valid], dim=1)
    m = roi_heads.proposal_matcher
    idx, fg = match(targets, cand, m.high_threshold, m.low_threshold, m.allow_low_quality_matches)
    labels = torch.where(fg == 1, targets.labels.gather(1, idx), torch.where(fg == 0, 0, -1))
    labels = labels.masked_fill(~valid, -1)  # padding is never sampled
    s = roi_heads.fg_bg_sampler
    pos, neg = sample(labels, s.batch_size_per_image, s.positive_fraction)
    sampled = pos | neg
    # the sampled boxes first, then padding (weight 0): a fixed (B, R) block for the heads
    sel = sampled.to(torch.uint8).topk(min(s.batch_size_per_image, cand.shape[1]), dim=1).indices
    weight = sampled.gather(1, sel).flatten().float()
    rois = cand.gather(1, sel[..., None].expand(-1, -1, 4))
    roi_labels = labels.gather(1, sel).clamp(min=0).flatten()
    matched = targets.boxes.gather(1, idx.gather(1, sel)[..., None].expand(-1, -1, 4))
    regression = roi_heads.box_coder.encode_single(matched.reshape(-1, 4), rois.reshape(-1, 4))
    logits, deltas = _heads(roi_heads, feature, rois, stride)
    count = weight.sum().clamp(min=1)
    ce = F.cross_entropy(logits, roi_labels, reduction="none")
    chosen = deltas[torch.arange(len(deltas), device=deltas.device), roi_labels]  # (B*R, 4)
    box = _smooth_l1(chosen, regression) * weight * (roi_labels > 0)
    return {"loss_classifier": (ce * weight).sum() / count, "loss_box_reg": box.sum() / count}


def _candidates(roi_heads: RoIHeads, feature: torch.Tensor, stride: int, proposals: Padded,
                image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (proposal, digit class) box of the box head: boxes (B, M, 4), scores, labels 1..C-1 and the
    mask of those that pass torchvision's score threshold and minimum size (B, M)."""
    b, p, _ = proposals.boxes.shape
    logits, deltas = _heads(roi_heads, feature, proposals.boxes, stride)
    boxes = roi_heads.box_coder.decode_single(deltas.flatten(1), proposals.boxes.reshape(-1, 4)).view(b, p, -1, 4)
    h, w = image_size
    boxes = torch.stack([boxes[..., 0].clamp(0, w), boxes[..., 1].clamp(0, h),
                         boxes[..., 2].clamp(0, w), boxes[..., 3].clamp(0, h)], dim=-1)
    scores = F.softmax(logits, dim=-1).view(b, p, -1)
    c = scores.shape[-1]
    labels = torch.arange(1, c, device=scores.device).expand(b, p, -1).reshape(b, -1)
    boxes, scores = boxes[:, :, 1:].reshape(b, -1, 4), scores[:, :, 1:].reshape(b, -1)  # drop the background
    ok = ((scores > roi_heads.score_thresh) & proposals.valid.repeat_interleave(c - 1, dim=1)
          & (boxes[..., 2] - boxes[..., 0] >= 1e-2) & (boxes[..., 3] - boxes[..., 1] >= 1e-2))
    return boxes, scores, labels, ok


def detections(roi_heads: RoIHeads, feature: torch.Tensor, stride: int, proposals: Padded,
               image_size: tuple[int, int]) -> tuple[Padded, torch.Tensor]:
    """Final detections (boxes, labels 1..C-1, valid) of shape (B, D, ...) and their scores (B, D)."""
    boxes, scores, labels, ok = _candidates(roi_heads, feature, stride, proposals, image_size)
    pre = scores.masked_fill(~ok, -1.0).topk(min(PRE_NMS_DETECTIONS, scores.shape[1]), dim=1).indices
    boxes, scores = boxes.gather(1, pre[..., None].expand(-1, -1, 4)), scores.gather(1, pre)
    labels, ok = labels.gather(1, pre), ok.gather(1, pre)
    keep = nms(boxes, scores, ok, labels, roi_heads.nms_thresh)
    best = scores.masked_fill(~keep, -1.0).topk(min(roi_heads.detections_per_img, scores.shape[1]), dim=1)
    at = best.indices
    return Padded(boxes.gather(1, at[..., None].expand(-1, -1, 4)), labels.gather(1, at), best.values >= 0), \
        best.values


def best_detection(roi_heads: RoIHeads, feature: torch.Tensor, stride: int, proposals: Padded,
                   image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The label (1..C-1, 0 where none) and score (-1 where none) of each image's highest-scoring
    detection, (B,) each: the first of `detections`, without its NMS, which never suppresses the best box."""
    _, scores, labels, ok = _candidates(roi_heads, feature, stride, proposals, image_size)
    best, at = scores.masked_fill(~ok, -1.0).max(dim=1)
    return torch.where(best >= 0, labels.gather(1, at[:, None])[:, 0], 0), best


def to_dicts(dets: Padded, scores: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Padded detections as torchvision's list of {"boxes", "labels", "scores"}, best first."""
    counts = dets.valid.sum(dim=1).tolist()  # one host sync for the whole batch
    parts = [t[dets.valid].split(counts) for t in (dets.boxes, dets.labels, scores)]
    return [{"boxes": bx, "labels": lb, "scores": sc} for bx, lb, sc in zip(*parts)]
