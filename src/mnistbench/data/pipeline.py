"""Batches sliced from device-resident uint8 tensors, normalised and augmented on the device."""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F


def normalize(x: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """uint8 (B, 28, 28) -> float (B, 1, 28, 28) in [-1, 1], the input every model takes."""
    return (x.unsqueeze(1).to(dtype) / 127.5 - 1.0)


# Test-time augmentation: the views whose softmax outputs are averaged, as (down, right) pixel shifts
TTA_VIEWS = {"none": ((0, 0),), "shift": ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))}


def shifted(x: torch.Tensor, down: int, right: int) -> torch.Tensor:
    """uint8 images (N, H, W) moved by whole pixels, the uncovered border filled with 0 (the background)."""
    if not down and not right:
        return x
    k = max(abs(down), abs(right))
    h, w = x.shape[-2:]
    padded = F.pad(x, (k, k, k, k))
    return padded[..., k - down:k - down + h, k - right:k - right + w]


def epoch_order(n: int, *, seed: int, epoch: int, device) -> torch.Tensor:
    """The sample order of one epoch: a permutation that depends only on (seed, epoch).

    Deriving it from (seed, epoch) instead of a running generator makes a resumed run see exactly
    the batches the uninterrupted run would have seen.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).to(device)


def subset(n: int, k: int, *, seed: int) -> torch.Tensor:
    """A fixed subset of k of n indices (all n when k is 0 or at least n), drawn from (seed) alone."""
    if not k or k >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + 7)).narrow(0, 0, k).sort()[0]


def batch_indices(order: torch.Tensor, batch_size: int, *, start: int = 0,
                  drop_last: bool = True) -> Iterator[torch.Tensor]:
    """Index tensors of consecutive batches of `order`, from batch number `start` on."""
    n = len(order)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for i in range(start * batch_size, stop, batch_size):
        yield order[i:i + batch_size]


def steps_per_epoch(n: int, batch_size: int, drop_last: bool = True) -> int:
    """Number of batches batch_indices yields for n samples."""
    return n // batch_size if drop_last and n >= batch_size else math.ceil(n / batch_size)


def augment(x: torch.Tensor, *, generator: torch.Generator, translate: float = 0.0, rotate: float = 0.0,
            scale: float = 0.0) -> torch.Tensor:
    """Random affine per image, batched on the device: shift up to `translate` pixels, rotate up to
    `rotate` degrees, scale by up to ±`scale`. `x` is (B, 1, H, W) normalised (background = -1)."""
    if not (translate or rotate or scale):
        return x
    b, _, h, w = x.shape
    params = torch.rand(b, 4, generator=generator, device=generator.device) * 2 - 1  # U(-1, 1)
    params = params.to(x.device)
    angle = params[:, 0] * math.radians(rotate)
    s = 1.0 + params[:, 1] * scale
    # affine_grid works in [-1, 1] coordinates: a shift of t pixels is 2t / size there
    tx, ty = params[:, 2] * (2 * translate / w), params[:, 3] * (2 * translate / h)
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    # pad with the background value (-1) by shifting to zero-background and back
    return F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


def augment_translate(x: torch.Tensor, *, generator: torch.Generator, pixels: int) -> torch.Tensor:
    """Random integer shift of up to `pixels` in each direction, by padding and cropping (no interpolation)."""
    if pixels <= 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (pixels,) * 4, value=-1.0)
    shifts = torch.randint(0, 2 * pixels + 1, (2, b), generator=generator, device=generator.device).to(x.device)
    rows = (torch.arange(h, device=x.device)[None, :] + shifts[0][:, None])  # (B, H)
    cols = (torch.arange(w, device=x.device)[None, :] + shifts[1][:, None])  # (B, W)
    idx_b = torch.arange(b, device=x.device)[:, None, None]
    out = padded[idx_b, :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()
