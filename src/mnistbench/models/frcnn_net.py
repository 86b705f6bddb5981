"""Faster R-CNN (torchvision) for digit scenes: small canvases, digit-shaped anchors, few proposals.

Weights: `pretrained=true` loads *ImageNet backbone* weights (MobileNetV3-Large or ResNet50), not
torchvision's COCO detectors. COCO's RPN head predicts 15 anchors per location (5 sizes x 3 ratios
made for 800-px photos); ours predicts 3 per location, sized to digits on a 64-px canvas, so the COCO
RPN head (and its 91-way box predictor) cannot load: only the backbone would transfer, and ImageNet
weights give exactly that. The default is `pretrained=false`: MNIST digits train well from scratch,
and the CPU recipe must run on a machine with no weights cached. `weights=FILE` loads a whole
detector state dict saved from this model (strict key and shape check) and takes precedence.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import MultiScaleRoIAlign

from ..errors import UserError
from . import frcnn_heads as heads
from . import weights as wts

NUM_CLASSES = 11  # background + 10 digits
BACKBONES = ("mobilenet_v3_large_fpn", "resnet50_fpn")
# torchvision's aspect ratio is height / width: digits are upright and a "1" is up to ~5x taller than wide
ASPECT_RATIOS = (1.0, 2.0, 4.0)
ANCHOR_PER_STRIDE = 1.5  # anchor side = 1.5 x the level's stride: 12 px at stride 8 covers a "1", 24 px a "0"
# FPN levels (the last is FPN's extra max-pool level). RoIAlign reads only the stride-4 level: a digit
# spans ~5 x 5 cells there, and moving RoI features from stride 8 to 4 raised validation accuracy a lot
# (docs/BENCHMARKS.md). Proposals come from the coarser levels, where anchors of 12-48 px sit.
LEVEL_STRIDES = {"mobilenet_v3_large_fpn": (4, 8, 16, 32), "resnet50_fpn": (4, 8, 16, 32, 64)}
ROI_STRIDE, MIN_RPN_STRIDE = 4, 8


def _mobilenet_fpn(*, width_mult: float, fpn_channels: int, state: Mapping | None, source: str | None) -> nn.Module:
    """MobileNetV3-Large features up to stride 16, FPN on its stride-4, 8 and 16 outputs (+ max-pool level)."""
    net = tvm.mobilenet_v3_large(weights=None, width_mult=width_mult, norm_layer=nn.BatchNorm2d)
    if state is not None:
        wts.load_into(net, state, source=source)
    features = net.features
    # blocks marked _is_cn halve the resolution: down[k] is the first block at stride 2 ** (k + 2)
    down = [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)]
    # the stride-32 blocks are dropped (IntermediateLayerGetter stops at the last returned block)
    ends = [down[int(math.log2(s)) - 1] - 1 for s in LEVEL_STRIDES["mobilenet_v3_large_fpn"][:-1]]
    return BackboneWithFPN(features, {str(i): str(k) for k, i in enumerate(ends)},
                           [features[i].out_channels for i in ends], fpn_channels)


def _resnet50_fpn(*, fpn_channels: int, state: Mapping | None, source: str | None) -> nn.Module:
    """torchvision's Faster R-CNN ResNet50-FPN backbone (layers 1-4 + max-pool level), all layers trainable."""
    net = tvm.resnet50(weights=None, norm_layer=nn.BatchNorm2d)
    if state is not None:
        wts.load_into(net, state, source=source)
    # IntermediateLayerGetter stops after layer4: avgpool and fc are dropped
    return BackboneWithFPN(net, {f"layer{k}": str(k - 1) for k in range(1, 5)}, [256, 512, 1024, 2048],
                           fpn_channels)


BACKBONE_WEIGHTS = {"mobilenet_v3_large_fpn": tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V1,
                    "resnet50_fpn": tvm.ResNet50_Weights.IMAGENET1K_V1}
# both backbones' ImageNet normalisation, read from torchvision's weights metadata
MEAN, STD = wts.normalization(BACKBONE_WEIGHTS["resnet50_fpn"])


class DigitFasterRCNN(FasterRCNN):
    """torchvision's FasterRCNN (its modules, parameters and state dict) run batched on same-size canvases.

    forward(images (B, 1, S, S) float in [0, 1], targets) returns the loss dict in train mode and a list
    of {"boxes", "labels", "scores"} per image in eval mode, labels 1..10 standing for digits 0..9.
    targets: torchvision's list of {"boxes": (N_i, 4), "labels": (N_i,)}, or the same as heads.Padded.
    Normalisation (grey repeated to 3 channels, ImageNet mean and std) is one broadcast op, and nothing
    is resized: torchvision's GeneralizedRCNNTransform (kept, with min_size = max_size = S, for
    reference) would loop over the images instead. The RPN and box-head steps run through `batched`
    rather than torchvision's per-image loops.
    """

    def __init__(self, backbone: nn.Module, *, strides: tuple[int, ...], image_size: int, max_digits: int,
                 representation_size: int):
        names = [str(k) for k in range(len(strides) - 1)] + ["pool"]  # BackboneWithFPN's output keys
        rpn_levels = [n for n, s in zip(names, strides) if s >= MIN_RPN_STRIDE]
        anchors = AnchorGenerator(sizes=tuple((ANCHOR_PER_STRIDE * s,) for s in strides if s >= MIN_RPN_STRIDE),
                                  aspect_ratios=(ASPECT_RATIOS,) * len(rpn_levels))
        # one sample per bin: a bin of a 7 x 7 grid over a digit is under one stride-4 cell
        roi_level = names[strides.index(ROI_STRIDE)]
        roi_pool = MultiScaleRoIAlign(featmap_names=[roi_level], output_size=7, sampling_ratio=1)
        c = backbone.out_channels
        super().__init__(
            backbone, num_classes=None, min_size=image_size, max_size=image_size,
            image_mean=list(MEAN), image_std=list(STD),
            rpn_anchor_generator=anchors, box_roi_pool=roi_pool,
            box_head=TwoMLPHead(c * 7 * 7, representation_size),
            box_predictor=FastRCNNPredictor(representation_size, NUM_CLASSES),
            # a canvas holds a handful of digits: a few dozen proposals and sampled RoIs are plenty
            rpn_pre_nms_top_n_train=128, rpn_pre_nms_top_n_test=64,
            rpn_post_nms_top_n_train=64, rpn_post_nms_top_n_test=32,
            rpn_batch_size_per_image=64, box_batch_size_per_image=32,
            box_detections_per_img=2 * max_digits)
        self.rpn_levels, self.roi_level = rpn_levels, roi_level
        self.image_size, self.max_digits, self.weights_source = image_size, max_digits, None
        # pixel p in [0, 1] -> (p - mean) / std = p * scale + shift, per output channel
        self.register_buffer("scale", 1 / torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", -(torch.tensor(MEAN) / torch.tensor(STD)).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | heads.Padded | None = None):
        if self.training and targets is None:
            raise ValueError("DigitFasterRCNN needs targets in train mode")
        if self.training and not isinstance(targets, heads.Padded):
            targets = heads.pad_targets(targets)
        feature, proposals, rpn_losses = self._propose(images, targets if self.training else None)
        if self.training:
            return {**heads.box_losses(self.roi_heads, feature, ROI_STRIDE, proposals, targets), **rpn_losses}
        size = tuple(images.shape[-2:])
        return heads.to_dicts(*heads.detections(self.roi_heads, feature, ROI_STRIDE, proposals, size))

    def best(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval mode: each canvas's highest-scoring detection as label (1..10, 0 where none) and score (-1
        where none), (B,) each; the same as the first of forward's detections, without the final NMS."""
        feature, proposals, _ = self._propose(images, None)
        return heads.best_detection(self.roi_heads, feature, ROI_STRIDE, proposals, tuple(images.shape[-2:]))

    def _propose(self, images: torch.Tensor, targets: heads.Padded | None):
        """The RoI level's features, the RPN's proposals and its losses (given targets)."""
        x = images * self.scale + self.shift  # (B, 1, S, S) -> (B, 3, S, S)
        size = (x.shape[-2], x.shape[-1])
        features = self.backbone(x)  # {"0": stride 4, "1": stride 8, ..., "pool"}
        levels = [features[k] for k in self.rpn_levels]
        # one image's anchors: every canvas has the same size and so the same anchors
        anchors = self.rpn.anchor_generator(ImageList(x[:1], [size]), [f[:1] for f in levels])[0]
        proposals, rpn_losses = heads.propose(self.rpn, levels, size, anchors, targets)
        return features[self.roi_level], proposals, rpn_losses


def build(*, backbone: str, pretrained: bool, weights: str, image_size: int, max_digits: int, width_mult: float,
          fpn_channels: int, representation_size: int) -> DigitFasterRCNN:
    """Faster R-CNN for `image_size`-px scenes of 1..max_digits digits.

    backbone: MobileNetV3-Large (FPN on strides 4-16; width_mult scales it) or ResNet50 (torchvision's
    Faster R-CNN layout, FPN on strides 4-32). Batch norm is ordinary and trained everywhere: torchvision
    freezes it for COCO fine-tuning at two images per GPU, our batches hold dozens of canvases.
    pretrained: ImageNet backbone weights (see the module docstring for why not COCO); weights: a
    detector state dict FILE saved from this model, loaded strictly. How scenes are made and how many
    are trained and tested on are the detection task's options (mnistbench.tasks.detect.DetectOptions).
    """
    if backbone not in BACKBONES:
        raise UserError(f"backbone must be one of {', '.join(BACKBONES)}; got {backbone!r}")
    if image_size < 28:
        raise UserError(f"frcnn needs image_size >= 28 (a digit must fit on the canvas); got {image_size}")
    if max_digits < 1 or fpn_channels < 1 or representation_size < 1 or width_mult <= 0:
        raise UserError("max_digits, fpn_channels, representation_size and width_mult must be positive")
    if pretrained and not weights and backbone == BACKBONES[0] and width_mult != 1.0:
        raise UserError("ImageNet weights exist for width_mult=1.0 only; use --set pretrained=false")
    state, source = None, None
    if pretrained and not weights:  # a detector FILE replaces the ImageNet start anyway: don't fetch it
        state = wts.load_torchvision(BACKBONE_WEIGHTS[backbone])
        source = wts.describe(BACKBONE_WEIGHTS[backbone])
    if backbone == "resnet50_fpn":
        body = _resnet50_fpn(fpn_channels=fpn_channels, state=state, source=source)
    else:
        body = _mobilenet_fpn(width_mult=width_mult, fpn_channels=fpn_channels, state=state, source=source)
    model = DigitFasterRCNN(body, strides=LEVEL_STRIDES[backbone], image_size=image_size, max_digits=max_digits,
                            representation_size=representation_size)
    if weights:
        source = f"file:{Path(weights).expanduser().resolve()}"
        wts.load_into(model, wts.load_file(weights), source=source)
    model.weights_source = source
    return model
