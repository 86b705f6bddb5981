"""VGG16 and AlexNet from torchvision as registered models: their options, defaults and recipes.

The networks (transfer_nets.py) import torchvision, which costs more to import than a small run's training;
they are imported when one is built, so a run of another model never pays for it.
"""
from __future__ import annotations

from functools import partial
from typing import Any

from torch import nn

from ..errors import UserError
from .spec import ModelSpec

ADAPTERS = ("repeat", "sum")
FINETUNES = ("auto", "full", "head", "discriminative")
INITS = ("he", "torchvision")
# each network's default input: the smallest torchvision's metadata allows (a >= 1x1 map after `features`: AlexNet
# 63 px, VGG16 32 px) at a round size; bigger inputs cost ~size^2 and did not pay on MNIST
DEFAULT_IMAGE_SIZE = {"vgg16": 32, "alexnet": 64}


def build(backbone: str, *, image_size: int, pretrained: bool = True, weights: str = "", in_adapter: str = "repeat",
          finetune: str = "auto", backbone_lr_scale: float = 0.1, dropout: float = 0.5, init: str = "he"
          ) -> nn.Module:
    """torchvision's `backbone` adapted to digits: transfer_nets.build_transfer, with these options (checked here,
    before torchvision is imported)."""
    if in_adapter not in ADAPTERS:
        raise UserError(f"in_adapter must be one of {ADAPTERS}; got {in_adapter!r}")
    if finetune not in FINETUNES:
        raise UserError(f"finetune must be one of {FINETUNES}; got {finetune!r}")
    if init not in INITS:
        raise UserError(f"init must be one of {INITS}; got {init!r}")
    if not 0.0 <= dropout < 1.0 or backbone_lr_scale <= 0:
        raise UserError(f"{backbone} needs 0 <= dropout < 1 and backbone_lr_scale > 0")
    from .transfer_nets import BACKBONES, build_transfer

    return build_transfer(BACKBONES[backbone], image_size=image_size, pretrained=pretrained, weights=weights,
                          in_adapter=in_adapter, finetune=finetune, backbone_lr_scale=backbone_lr_scale,
                          dropout=dropout, init=init)


def _spec(name: str, about: str, recipes: dict[str, dict[str, Any]]) -> ModelSpec:
    # binding image_size here makes the backbone's default visible in the spec's arg_defaults()
    return ModelSpec(name=name, build=partial(build, name, image_size=DEFAULT_IMAGE_SIZE[name]), about=about,
                     recipes=recipes)


# Recipes for a 2-core CPU in fp32 (bf16 only where `precision=auto` measures it faster), from scratch as
# here (no ImageNet download): dropout 0 trained faster than torchvision's 0.5 on the validation split
# (AlexNet and VGG16, the same steps; docs/BENCHMARKS.md). An AlexNet image
# at 64 px costs ~95 M multiply-adds forward, VGG16 at 32 px ~430 M, 38 M and 103 M of them in the first
# classifier layer, which the avgpool fold (pooled_linear) pays once per batch instead of once per image.
VGG16_SPEC = _spec("vgg16", "VGG16 (torchvision, ImageNet weights by default), 10-way head, 32 px input", {
    "default": {"epochs": 1, "batch_size": 128, "lr": 2e-4, "weight_decay": 0.05, "optimizer": "adamw",
                "schedule": "onecycle", "warmup": 0.1, "augment": "none", "dropout": 0.0},
    "long": {"epochs": 3, "batch_size": 128, "lr": 2e-4, "weight_decay": 0.05, "optimizer": "adamw",
             "schedule": "onecycle", "warmup": 0.1, "augment": "translate", "translate": 2},
})
# AlexNet from scratch, batch 128, dropout 0, He init, fp32: validation accuracy of one view (mean of seeds
# 0/1/2) grew from 1 to 1.4 to 1.5 epochs, and 2 epochs at batch 256 did not beat it; 1.5 is the most that
# fits the CPU bar with freed memory kept for reuse (device.keep_freed_memory). Test-time shifts raised
# validation accuracy (3 seeds) for four more forward passes per test image. Figures: docs/BENCHMARKS.md.
ALEXNET_SPEC = _spec("alexnet", "AlexNet (torchvision, ImageNet weights by default), 10-way head, 64 px input", {
    "default": {"epochs": 1.5, "batch_size": 128, "lr": 1e-3, "weight_decay": 0.05, "optimizer": "adamw",
                "schedule": "onecycle", "warmup": 0.2, "augment": "none", "dropout": 0.0, "tta": "shift"},
    "long": {"epochs": 10, "batch_size": 256, "lr": 1e-3, "weight_decay": 0.05, "optimizer": "adamw",
             "schedule": "onecycle", "warmup": 0.2, "augment": "translate", "translate": 2},
})
