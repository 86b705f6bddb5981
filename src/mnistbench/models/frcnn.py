"""Faster R-CNN (torchvision) for digit scenes, as a registered model: its options, defaults and recipes.

The network (frcnn_net.py) imports torchvision, which costs more to import than a small run's training; it is
imported when the detector is built, so a run of another model never pays for it.
"""
from __future__ import annotations

from torch import nn

from .spec import ModelSpec


def build(*, backbone: str = "mobilenet_v3_large_fpn", pretrained: bool = False, weights: str = "",
          image_size: int = 64, max_digits: int = 4, width_mult: float = 1.0, fpn_channels: int = 64,
          representation_size: int = 256) -> nn.Module:
    """The digit detector: frcnn_net.build, with these options (its docstring says what each does)."""
    from . import frcnn_net

    return frcnn_net.build(backbone=backbone, pretrained=pretrained, weights=weights, image_size=image_size,
                           max_digits=max_digits, width_mult=width_mult, fpn_channels=fpn_channels,
                           representation_size=representation_size)


SPEC = ModelSpec(
    name="frcnn",
    task="detect",
    build=build,
    about="Faster R-CNN (torchvision), MobileNetV3-FPN from scratch by default, on multi-digit scenes",
    recipes={
        # CPU, fp32: an epoch is 32k scenes (the task default), sized for a 2-core CPU; RoIAlign's backward runs
        # as a grid_sample there (frcnn_heads.grid_roi_align), the faster form. Evaluation in batches of 64
        # canvases: faster per digit than batches of 1,000, which fall out of the CPU's caches. fp32 and bf16
        # steps took about the same time: precision=auto measures and keeps fp32 unless bf16 is clearly faster.
        # Times and accuracy: docs/BENCHMARKS.md.
        "default": {"epochs": 1, "batch_size": 32, "lr": 2e-3, "optimizer": "adamw", "schedule": "onecycle",
                    "warmup": 0.1, "eval_batch_size": 64},
        # GPU: epochs of as many scenes as training digits (55k); measured on an H200 (docs/BENCHMARKS.md)
        "long": {"epochs": 8, "batch_size": 256, "lr": 4e-3, "optimizer": "adamw", "schedule": "onecycle",
                 "warmup": 0.1, "scenes_per_epoch": 0, "eval_batch_size": 2000},
    },
)
