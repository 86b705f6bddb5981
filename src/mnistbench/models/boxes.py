"""Per-image boxes as padded tensors: the detector's targets and outputs (torchvision-free, so the detection task
can name them without importing torchvision)."""
from __future__ import annotations

from typing import NamedTuple

import torch


class Padded(NamedTuple):
    """Per-image boxes padded to a common count: boxes (B, N, 4), labels (B, N), valid (B, N)."""

    boxes: torch.Tensor
    labels: torch.Tensor
    valid: torch.Tensor
