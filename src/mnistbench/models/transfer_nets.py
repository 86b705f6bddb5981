"""VGG16 and AlexNet from torchvision, adapted to (B, 1, 28, 28) digits, with ImageNet weights or from scratch.

The network is torchvision's, untouched except for a 10-way last classifier layer (and, with
in_adapter="sum", a 1-channel first conv); an InputAdapter in front does what the notebook's
transforms did (grey to 3 channels, resize, ImageNet normalisation), batched on the model's device.
On small inputs the forward folds the average pool into the first classifier layer (`pooled_linear`):
the same function and gradients for a third less work.


The networks themselves (they import torchvision); models/transfer.py holds their specs and recipes.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm
from torchvision.models import WeightsEnum

from ..errors import UserError
from . import weights as wts


@dataclass(frozen=True)
class Backbone:
    """Facts about one torchvision classifier, kept beside it."""

    name: str
    build: Callable[..., nn.Module]  # torchvision builder: (weights=None, num_classes, dropout) -> model
    weights: WeightsEnum

    @property
    def min_image_size(self) -> int:
        return wts.min_size(self.weights)


VGG16 = Backbone("vgg16", tvm.vgg16, tvm.VGG16_Weights.IMAGENET1K_V1)
ALEXNET = Backbone("alexnet", tvm.alexnet, tvm.AlexNet_Weights.IMAGENET1K_V1)
BACKBONES = {bb.name: bb for bb in (VGG16, ALEXNET)}


class InputAdapter(nn.Module):
    """(B, 1, 28, 28) in [-1, 1] -> (B, C, S, S) as an ImageNet network expects: resize, then normalise.

    C = 3 (grey repeated; each channel normalised with its ImageNet mean/std) or C = 1 (one channel
    normalised with the mean of the three means and the mean of the three stds, for the folded first
    conv built by `sum_first_conv`).
    """

    def __init__(self, *, image_size: int, channels: int, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.image_size = image_size
        mean = torch.tensor(mean) if channels == 3 else torch.tensor(mean).mean().reshape(1)
        std = torch.tensor(std) if channels == 3 else torch.tensor(std).mean().reshape(1)
        # pixel p = (x + 1) / 2 in [0, 1]; (p - mean) / std = x * scale + shift
        self.register_buffer("scale", (0.5 / std).reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("shift", ((0.5 - mean) / std).reshape(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                              antialias=False)  # (B, 1, S, S)
        # broadcasting (B, 1, S, S) against (1, C, 1, 1) repeats the grey channel C times in the same op
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)  # (B, C, S, S)


def sum_first_conv(conv: nn.Conv2d, mean: tuple[float, ...], std: tuple[float, ...]) -> nn.Conv2d:
    """A 1-channel conv computing what `conv` computes on a grey image repeated to 3 channels.

    The 3-channel input is (p - m_c) / s_c; the 1-channel input is u = (p - m) / s with m, s the means
    of the m_c, s_c. Substituting, (p - m_c) / s_c = (s / s_c) u + (m - m_c) / s_c, so the kernel is the
    sum over channels of W_c * s / s_c and the bias gains sum(W_c * (m - m_c) / s_c). This is exact
    wherever the kernel does not overlap the zero padding; on the border it differs by that constant.
    """
    mean, std = torch.tensor(mean), torch.tensor(std)
    m, s = mean.mean(), std.mean()
    w = conv.weight.detach()  # (O, 3, k, k)
    per_channel = (s / std).reshape(1, 3, 1, 1)
    offset = ((m - mean) / std).reshape(1, 3, 1, 1)
    new = nn.Conv2d(1, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    bias=True, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_((w * per_channel).sum(1, keepdim=True))
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=w.dtype)
        new.bias.copy_(bias + (w * offset).sum((1, 2, 3)))
    return new


def _pool_matrix(h: int, w: int, out: tuple[int, int], device: torch.device) -> torch.Tensor:
    """(out_h * out_w, h * w): adaptive_avg_pool2d from an h x w map to `out` as a matrix (each pooled cell
    is a mean of input cells), read off by pooling the identity so it is torch's own definition. Built on
    every call (microseconds for these small maps): a cached tensor would leak out of ONNX export's tracing."""
    eye = torch.eye(h * w, device=device).view(h * w, 1, h, w)
    return F.adaptive_avg_pool2d(eye, out).view(h * w, -1).T


def pooled_linear(features: torch.Tensor, out: tuple[int, int], linear: nn.Linear) -> torch.Tensor:
    """linear(flatten(adaptive_avg_pool2d(features, out))) with the pooling folded into the weight.

    On small inputs the pool *enlarges* the map (AlexNet at 64 px: 1 x 1 -> 6 x 6, VGG16 at 32 px: 1 x 1 ->
    7 x 7), so the first classifier layer multiplies 36 or 49 copies of each feature. Both maps are linear:
    W (pool x) = (W P) x, with W P of the small map's size, computed once per batch. The same numbers and
    the same gradients (to float rounding; tests/test_transfer_fold.py), a third less work per image for
    AlexNet at 64 px, and faster training steps and evaluation on the CPU (docs/BENCHMARKS.md).
    """
    _, c, h, w = features.shape
    pool = _pool_matrix(h, w, out, features.device).to(linear.weight.dtype)
    weight = torch.matmul(linear.weight.view(linear.out_features, c, -1), pool)  # (O, C, h * w)
    return F.linear(features.flatten(1), weight.reshape(linear.out_features, -1), linear.bias)


class TransferNet(nn.Module):
    """InputAdapter, then a torchvision network whose `features` are the backbone and `classifier` the head.

    (B, 1, 28, 28) -> adapter -> (B, C, S, S) -> features -> avgpool -> classifier -> (B, 10)
    torchvision's forward, except that where avgpool enlarges the map, it is folded into the first
    classifier layer (`pooled_linear`); modules, parameters and state dict are torchvision's.
    """

    def __init__(self, *, adapter: InputAdapter, net: nn.Module, finetune: str, backbone_lr_scale: float,
                 weights_source: str | None):
        super().__init__()
        self.adapter, self.net = adapter, net
        self.finetune, self.backbone_lr_scale, self.weights_source = finetune, backbone_lr_scale, weights_source
        self.net.features.requires_grad_(finetune != "head")
        size = net.avgpool.output_size  # (6, 6) in AlexNet, (7, 7) in VGG16
        self.pool_out = (size, size) if isinstance(size, int) else tuple(size)
        self.first_linear = next(i for i, m in enumerate(net.classifier) if isinstance(m, nn.Linear))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net, out, first = self.net, self.pool_out, self.first_linear
        features = net.features(self.adapter(x))  # (B, C, h, w)
        # AlexNet's classifier starts with dropout, which would mask each of the pooled copies apart
        dropout = any(m.training and m.p > 0 for m in net.classifier[:first] if isinstance(m, nn.Dropout))
        if features.shape[-2] * features.shape[-1] >= out[0] * out[1] or dropout:
            return net.classifier(torch.flatten(net.avgpool(features), 1))  # torchvision's own path
        z = pooled_linear(features, out, net.classifier[first])
        return net.classifier[first + 1:](z)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer groups: one group of trainable parameters, or backbone at lr * scale and head at lr."""
        if self.finetune == "discriminative":
            return [{"params": list(self.net.features.parameters()), "lr": lr * self.backbone_lr_scale},
                    {"params": list(self.net.classifier.parameters()), "lr": lr}]
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]


def he_init(net: nn.Module) -> None:
    """Kaiming-normal weights (fan_in, ReLU) and zero biases in every conv and linear layer, the last one
    small. torchvision's AlexNet keeps PyTorch's default init, too small for 8 ReLU layers without
    normalisation: from scratch AlexNet and VGG16 reached a far lower validation accuracy after the same
    steps than with this init (docs/BENCHMARKS.md)."""
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m in layers:
        nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(m.bias)
    nn.init.normal_(layers[-1].weight, std=0.01)


def build_transfer(bb: Backbone, *, image_size: int, pretrained: bool, weights: str, in_adapter: str, finetune: str,
                   backbone_lr_scale: float, dropout: float, init: str) -> TransferNet:
    """`bb` with ImageNet weights (torchvision's, or a local file), a 10-way head and an input adapter.

    finetune "auto" is "discriminative" with pretrained weights and "full" from scratch; "head" freezes
    `features` and trains the whole `classifier` (an MLP probe, not only its last layer). From scratch,
    init "he" re-initialises every layer for ReLU (`he_init`); "torchvision" keeps torchvision's own.
    """
    if image_size < bb.min_image_size:
        raise UserError(f"{bb.name} needs image_size >= {bb.min_image_size} (smaller inputs vanish in its "
                        f"pooling layers); got {image_size}")
    state, source = wts.resolve(bb.weights, pretrained=pretrained, file=weights)
    if finetune == "auto":
        finetune = "full" if state is None else "discriminative"
    if state is None and finetune != "full":
        raise UserError(f"finetune={finetune} keeps or slows pretrained features; from scratch use finetune=full")

    net = bb.build(weights=None, num_classes=1000, dropout=dropout)
    if state is not None:
        wts.load_into(net, state, source=source)
    # classifier = [..., Linear(4096, 1000)] in both VGG16 and AlexNet
    net.classifier[-1] = nn.Linear(net.classifier[-1].in_features, 10)
    if state is None and init == "he":
        he_init(net)
    mean, std = wts.normalization(bb.weights)
    if in_adapter == "sum":
        net.features[0] = sum_first_conv(net.features[0], mean, std)
    adapter = InputAdapter(image_size=image_size, channels=1 if in_adapter == "sum" else 3, mean=mean, std=std)
    return TransferNet(adapter=adapter, net=net, finetune=finetune, backbone_lr_scale=backbone_lr_scale,
                       weights_source=source)
