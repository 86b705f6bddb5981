"""Tolerances for comparing floating-point results, derived from the computation instead of fitted to one CPU.

Two correct implementations of the same arithmetic differ only by rounding. Adding K terms in another order
(another CPU's vector width or AMX tiles, another thread count, a fused or batched kernel) moves the sum by at
most about K * eps * sum(|terms|) (the worst case; eps = torch.finfo(dtype).eps, twice the unit roundoff), and
typically by about sqrt(K) * eps * sum(|terms|), since rounding errors of either sign add like a random walk.
Each bound in the tests is one of these for the computation at hand, so it holds on any CPU, whatever order it
sums in; a real bug (a wrong weight, a missing term) is orders of magnitude larger.

Through a network the errors of its layers add up: K is then the sum of the reduction lengths along the path
(`reduction_length`), and the magnitude that of the tensor compared (its largest |value|), since every element
is a sum of terms of the sizes flowing through the network, whatever cancellation leaves of it.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def rounding_bound(k: int, magnitude: float, dtype: torch.dtype = torch.float32, *, worst_case: bool = False) -> float:
    """How far two summation orders of `k` terms whose |values| add up to `magnitude` can end apart."""
    return (k if worst_case else math.sqrt(k)) * torch.finfo(dtype).eps * float(magnitude)


def assert_within_rounding(actual: torch.Tensor, expected: torch.Tensor, k: int, *, magnitude=None,
                           worst_case: bool = False, what: str = "") -> None:
    """|actual - expected| <= rounding_bound(k, magnitude) everywhere; `magnitude` defaults to max |expected|
    (a number, or a tensor of per-element magnitudes)."""
    expected = torch.as_tensor(expected)
    if magnitude is None:
        magnitude = expected.abs().max().item()
    bound = rounding_bound(k, 1.0, expected.dtype, worst_case=worst_case) * torch.as_tensor(magnitude)
    assert_within(actual, expected, bound, f"{what} (K={k})")


def assert_within(actual, expected, bound, what: str = "") -> None:
    """|actual - expected| <= bound everywhere (a number, or a tensor of per-element bounds)."""
    gap = (torch.as_tensor(actual) - torch.as_tensor(expected)).abs()
    bound = torch.as_tensor(bound, dtype=gap.dtype).expand_as(gap)
    worst = (gap - bound).argmax()
    assert (gap <= bound).all(), (f"{what}: |difference| {gap.flatten()[worst].item():.3g} over the rounding bound "
                                  f"{bound.flatten()[worst].item():.3g}")


def reduction_length(model: nn.Module, x: torch.Tensor, forward=None, *, backward: bool = True) -> int:
    """K of one forward and backward pass of `model` on `x` (through `forward(model, x)`, default model(x)): every
    conv and linear layer's fan-in (the sums of its forward) plus, with `backward`, batch x output positions (the
    sums of its weight gradient), added over the layers."""
    total = 0

    def count(module, args, out):
        nonlocal total
        if isinstance(module, nn.Linear):
            total += module.in_features + backward * (out.numel() // out.shape[-1])
        else:
            kh, kw = module.kernel_size
            total += module.in_channels // module.groups * kh * kw + backward * (out.numel() // out.shape[1])

    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    hooks = [m.register_forward_hook(count) for m in layers]
    try:
        with torch.no_grad():
            (forward or nn.Module.__call__)(model, x)
    finally:
        for h in hooks:
            h.remove()
    return total


def roi_align_k(cells: float) -> int:
    """K of one bilinear RoIAlign read: 4 corners, plus the rounding of its sample position (a few operations on
    coordinates up to `cells` feature cells, ~24 * cells in units of the feature's size: the read moves by the
    position's error times the difference of two neighbouring cells, at most twice the largest |feature|)."""
    return 4 + math.ceil(24 * cells)
