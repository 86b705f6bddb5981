"""Seeded multi-digit scenes: digits of one split, scaled and placed without overlap on a blank canvas.

All random draws come from a CPU generator seeded by the caller, so a seed gives the same scenes on
every device; the digits are rendered batched on the data's device (one grid_sample for all of them)
and each box is the tight ink extent of its digit *after* placement.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import UserError

# Fraction of full intensity above which a pixel counts as ink: it drops the faint halo that
# bilinear resizing leaves around a stroke while keeping every real stroke pixel of MNIST.
DEFAULT_THRESHOLD = 0.25


def digit_boxes(images: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (N, 4) as float (x1, y1, x2, y2) in pixel-edge coordinates, and valid (N,) bool.

    `images` is (N, H, W), uint8 (0..255) or float (0..1); a pixel is ink when its intensity is above
    `threshold` (a fraction of full intensity). The box covers whole pixels: a digit whose ink spans
    columns 3..7 gets x1 = 3, x2 = 8, so a box is never empty. An image without ink gets the zero box
    and valid = False.
    """
    if images.dtype == torch.uint8:
        ink = images > round(threshold * 255)
    else:
        ink = images > threshold
    h, w = ink.shape[1:]
    rows, cols = ink.any(dim=2), ink.any(dim=1)  # (N, H), (N, W)
    valid = rows.any(dim=1)
    # argmax returns the first maximum: the first True from the front, and from the back on the flip
    y1 = rows.to(torch.uint8).argmax(dim=1)
    y2 = h - rows.flip(1).to(torch.uint8).argmax(dim=1)
    x1 = cols.to(torch.uint8).argmax(dim=1)
    x2 = w - cols.flip(1).to(torch.uint8).argmax(dim=1)
    boxes = torch.stack([x1, y1, x2, y2], dim=1).to(torch.float32)  # (N, 4)
    return boxes * valid.unsqueeze(1), valid


DIGIT = 28  # MNIST side
# Pixels between the planned ink boxes of two digits: resampling can grow an ink box by up to ~2 px a
# side, and this keeps the tight boxes measured after rendering apart.
GAP = 4.0


@dataclass(frozen=True)
class Scenes:
    """A batch of B canvases with up to K digits each; slot k of scene b is real where valid[b, k]."""

    images: torch.Tensor   # (B, 1, S, S) float32 in [0, 1], ink = 1
    boxes: torch.Tensor    # (B, K, 4) float32 (x1, y1, x2, y2) in pixel-edge coordinates; 0 where invalid
    labels: torch.Tensor   # (B, K) int64 digit class; -1 where invalid
    valid: torch.Tensor    # (B, K) bool
    sources: torch.Tensor  # (B, K) int64 index of the digit in the split it came from; -1 where invalid

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, part: slice) -> Scenes:
        """The scenes of a slice, e.g. scenes[i:i + batch]."""
        return Scenes(self.images[part], self.boxes[part], self.labels[part], self.valid[part], self.sources[part])


def scene_seed(*parts: int) -> int:
    """One 63-bit seed from a tuple of integers such as (run seed, stream, epoch, step)."""
    s = 0
    for p in parts:
        s = (s * 1_000_003 + int(p)) % (2**63 - 1)
    return s


@dataclass(frozen=True)
class DigitPool:
    """The digits of one split, with each digit's tight ink box in its own 28 x 28 frame (kept on the CPU,
    where placement is planned)."""

    x: torch.Tensor        # (N, 28, 28) uint8, on the device scenes are rendered on
    y: torch.Tensor        # (N,) int64, same device
    extents: torch.Tensor  # (N, 4) float32 (x1, y1, x2, y2) on the CPU

    def __len__(self) -> int:
        return len(self.x)


def digit_pool(x: torch.Tensor, y: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> DigitPool:
    """A DigitPool of the split (x, y); the boxes are computed once, batched on the split's device."""
    return DigitPool(x, y, digit_boxes(x, threshold)[0].cpu())


def _place(extents: torch.Tensor, wanted: torch.Tensor, sizes: torch.Tensor, canvas: int, tries: int,
           g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch rectangles (B, K, 4) as float (x, y, x + s, y + s) whose digits' ink keeps GAP px apart, and valid (B, K).

    extents (B, K, 4) are the chosen digits' boxes in their 28-px frames and sizes (B, K) their patch
    sides. Slot k of scene b (used when k < wanted[b]) tries `tries` random positions of its scaled
    ink box inside the canvas at once and takes the first one clear of the boxes already placed; slot 0
    always fits, a later slot that finds no room stays empty. The patch margins may overlap each other
    and the canvas edge: they hold no ink.
    """
    count, max_digits = sizes.shape
    ink = extents * (sizes / DIGIT)[..., None]  # (B, K, 4) ink box inside the patch
    wh = ink[..., 2:] - ink[..., :2]  # (B, K, 2)
    u = torch.rand(count, max_digits, tries, 2, generator=g)
    boxes = torch.zeros(count, max_digits, 4)
    valid = torch.zeros(count, max_digits, dtype=torch.bool)
    for k in range(max_digits):  # a loop over slots, batched over scenes
        xy = u[:, k] * (canvas - wh[:, k, None])  # (B, T, 2): the ink box lies inside the canvas
        cand = torch.cat([xy, xy + wh[:, k, None]], dim=2)[:, :, None]  # (B, T, 1, 4)
        placed = boxes[:, None, :k]  # (B, 1, k, 4)
        overlap = ((cand[..., 0] < placed[..., 2] + GAP) & (placed[..., 0] < cand[..., 2] + GAP)
                   & (cand[..., 1] < placed[..., 3] + GAP) & (placed[..., 1] < cand[..., 3] + GAP)
                   & valid[:, None, :k])
        free = ~overlap.any(dim=2)  # (B, T)
        boxes[:, k] = cand[torch.arange(count), free.to(torch.uint8).argmax(dim=1), 0]
        valid[:, k] = free.any(dim=1) & (k < wanted)
    origin = boxes[..., :2] - ink[..., :2]  # (B, K, 2) patch corner
    return torch.cat([origin, origin + sizes[..., None]], dim=2), valid


def render(digits: torch.Tensor, rects: torch.Tensor, canvas: int) -> torch.Tensor:
    """(M, 28, 28) uint8 digits resized into their (M, 4) float patches of an empty canvas: (M, S, S) in [0, 1]."""
    m = len(digits)
    s = rects[:, 2] - rects[:, 0]
    # affine_grid maps output (canvas) coordinates in [-1, 1] to input (digit) coordinates in [-1, 1]:
    # canvas edge X in [x, x + s] goes to digit edge (X - x) * 28 / s, which gives this scale and shift
    theta = torch.zeros(m, 2, 3, device=digits.device)
    theta[:, 0, 0] = theta[:, 1, 1] = canvas / s
    theta[:, 0, 2] = (canvas - 2 * rects[:, 0]) / s - 1
    theta[:, 1, 2] = (canvas - 2 * rects[:, 1]) / s - 1
    grid = F.affine_grid(theta, [m, 1, canvas, canvas], align_corners=False)
    x = digits.unsqueeze(1).to(torch.float32) / 255
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]


def make_scenes(pool: DigitPool, count: int, *, seed: int, canvas: int = 64, max_digits: int = 4,
                scale: tuple[float, float] = (0.75, 1.15), tries: int = 32,
                threshold: float = DEFAULT_THRESHOLD) -> Scenes:
    """`count` scenes of 1..max_digits digits drawn (with replacement) from `pool` only.

    Each digit is scaled to a square patch of side scale * 28 (uniform in `scale`) and placed where its
    ink keeps clear of the others, so the tight boxes never overlap. Scenes are rendered on the pool's
    device; the boxes are measured on each rendered digit. Same seed, same scenes, on any device.
    """
    if canvas < round(scale[1] * DIGIT):
        raise UserError(f"canvas {canvas} px is smaller than the largest digit patch {round(scale[1] * DIGIT)} px")
    g = torch.Generator().manual_seed(seed)
    wanted = torch.randint(1, max_digits + 1, (count,), generator=g)
    sources = torch.randint(0, len(pool), (count, max_digits), generator=g)
    sizes = DIGIT * (scale[0] + (scale[1] - scale[0]) * torch.rand(count, max_digits, generator=g))
    rects, valid = _place(pool.extents[sources], wanted, sizes, canvas, tries, g)
    dev = pool.x.device
    rects, valid, sources = rects.to(dev), valid.to(dev), sources.to(dev)
    ink = render(pool.x[sources.flatten()], rects.flatten(0, 1), canvas)  # (B*K, S, S)
    ink = ink * valid.flatten()[:, None, None]
    boxes, has_ink = digit_boxes(ink, threshold)
    valid = valid & has_ink.view(count, max_digits)
    images = ink.view(count, max_digits, canvas, canvas).amax(dim=1, keepdim=True)  # (B, 1, S, S)
    labels = torch.where(valid, pool.y[sources], -1)
    return Scenes(images, boxes.view(count, max_digits, 4) * valid[..., None], labels, valid,
                  torch.where(valid, sources, -1))


def centered(digits: torch.Tensor, canvas: int) -> torch.Tensor:
    """(N, 28, 28) uint8 digits at native size in the middle of empty canvases: (N, 1, S, S) float in [0, 1]."""
    before = (canvas - DIGIT) // 2
    after = canvas - DIGIT - before
    x = digits.unsqueeze(1).to(torch.float32) / 255
    return F.pad(x, (before, after, before, after))
