"""Classification on device-resident data: the training task for fit(), prediction and test metrics."""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import Splits
from ..data.pipeline import (
    TTA_VIEWS,
    augment,
    augment_translate,
    batch_indices,
    epoch_order,
    normalize,
    shifted,
    steps_per_epoch,
    subset,
)
from ..device import Runtime
from ..metrics import classification_report, misclassified
from ..profile import latency_ms

if TYPE_CHECKING:
    from ..record import RunRecord
    from ..schema import Config


@dataclass(frozen=True)
class ClassifyOptions:
    """Classification has no options beyond the Config fields."""


@dataclass(frozen=True)
class Shard:
    """Rows `rows` of the batch `idx` (indices into the training split): one torchrun rank's training batch."""

    idx: torch.Tensor
    rows: slice


class ClassifyTask:
    """Cross-entropy on seeded-permutation batches, augmented on the device."""

    Options = ClassifyOptions

    def __init__(self, splits: Splits, cfg: Config, rt: Runtime):
        self.splits, self.cfg, self.rt = splits, cfg, rt
        self.n = len(splits.train_x)
        self.steps_per_epoch = steps_per_epoch(self.n, cfg.batch_size)
        self.generator = torch.Generator(device=rt.device)
        self.val_subset = subset(len(splits.val_x), cfg.val_subset, seed=cfg.seed).to(rt.device)

    def batches(self, epoch: int, start: int) -> Iterator[torch.Tensor]:
        order = epoch_order(self.n, seed=self.cfg.seed, epoch=epoch, device=self.rt.device)
        return batch_indices(order, self.cfg.batch_size, start=start)

    def inputs(self, idx: torch.Tensor, step: int, rows: slice = slice(None)) -> torch.Tensor:
        """Normalised, augmented training images `idx[rows]`; augmentation draws depend only on (seed, step) and
        are drawn for all of `idx`, so a rank's rows of a batch get the draws one process would give them."""
        cfg = self.cfg
        if cfg.augment == "none":
            return self.rt.layout(normalize(self.splits.train_x[idx[rows]]))
        x = normalize(self.splits.train_x[idx])
        self.generator.manual_seed(cfg.seed * 1_000_003 + step)
        if cfg.augment == "translate":
            x = augment_translate(x, generator=self.generator, pixels=int(cfg.translate))
        else:
            x = augment(x, generator=self.generator, translate=cfg.translate, rotate=cfg.rotate, scale=cfg.scale)
        return self.rt.layout(x[rows])

    def sample(self) -> torch.Tensor:
        """One training sample's input, (1, 1, 28, 28), to count the forward FLOPs per sample."""
        return self.rt.layout(torch.zeros(1, 1, 28, 28, device=self.rt.device))

    def shard(self, idx: torch.Tensor, rank: int, world: int) -> Shard:
        """A torchrun rank's part of batch `idx`: every world-th image from `rank` (see distributed.py)."""
        return Shard(idx, slice(rank, None, world))

    def loss(self, net: nn.Module, batch: torch.Tensor | Shard, step: int) -> torch.Tensor:
        idx, rows = (batch.idx, batch.rows) if isinstance(batch, Shard) else (batch, slice(None))
        logits = net(self.inputs(idx, step, rows))
        return F.cross_entropy(logits.float(), self.splits.train_y[idx[rows]], label_smoothing=self.cfg.label_smoothing)

    def validate(self, model: nn.Module, whole: bool = False) -> dict[str, float]:
        """Single-view validation metrics on the val_subset images, or the whole split (no test-time
        augmentation: it would multiply the cost of every validation; whether a recipe uses it was itself
        chosen on this split, docs/BENCHMARKS.md)."""
        x, y = self.splits.val_x, self.splits.val_y
        if not whole:
            x, y = x[self.val_subset], y[self.val_subset]
        logits = predict(model, x, rt=self.rt, batch_size=self.cfg.eval_batch_size)
        return {"val_loss": F.cross_entropy(logits, y).item(),
                "val_accuracy": (logits.argmax(1) == y).float().mean().item(), "val_images": len(y)}

    def test(self, model: nn.Module, run: RunRecord | None = None) -> dict[str, Any]:
        """Test metrics, large-batch throughput (the test pass itself, timed) and, when
        configured, batch-1 latency; "predictions" holds the predicted class of every test image (train() writes
        them to their own file)."""
        out = test_metrics(model, self.splits, rt=self.rt, batch_size=self.cfg.eval_batch_size, tta=self.cfg.tta)
        if self.cfg.inference_benchmark:
            out["inference_ms_per_image"] = latency_ms(model, self.rt)
        return out


@torch.no_grad()
def _logits(model: nn.Module, images: torch.Tensor, rt: Runtime, batch_size: int) -> torch.Tensor:
    """fp32 logits (N, 10) of uint8 images (N, 28, 28), in eval mode and batches of `batch_size`."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = rt.layout(normalize(images[i:i + batch_size].to(rt.device)))
        with rt.autocast():
            out.append(model(x).float())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 10, device=rt.device)


def view_logits(logits: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, tta: str) -> torch.Tensor:
    """(N, V, classes): `logits` of uint8 images (N, 28, 28) under each test-time view of `tta` (TTA_VIEWS);
    view 0 is the image itself."""
    return torch.stack([logits(shifted(images, *shift)) for shift in TTA_VIEWS[tta]], dim=1)


def _model_views(model: nn.Module, images: torch.Tensor, rt: Runtime, batch_size: int, tta: str) -> torch.Tensor:
    return view_logits(lambda x: _logits(model, x, rt, batch_size), images, tta)


def combine(views: torch.Tensor) -> torch.Tensor:
    """(N, classes) from view_logits(): the logits of one view, else the log of the views' mean softmax."""
    if views.shape[1] == 1:
        return views[:, 0]
    return torch.logsumexp(views.log_softmax(dim=-1), dim=1) - math.log(views.shape[1])


def predict(model: nn.Module, images: torch.Tensor, *, rt: Runtime, batch_size: int = 1000,
            tta: str = "none") -> torch.Tensor:
    """fp32 logits (N, 10) for uint8 images (N, 28, 28), in eval mode and batches of `batch_size`; with
    `tta` ("shift") the log of the mean softmax over the test-time views (see combine())."""
    return combine(_model_views(model, images, rt, batch_size, tta))


def test_metrics(model: nn.Module, splits: Splits, *, rt: Runtime, batch_size: int = 1000,
                 tta: str = "none") -> dict[str, Any]:
    """Metrics on the official test set, plus the indices of misclassified test images. With `tta`, every
    metric is of the averaged views, and test_accuracy_single_view says what the image alone scored."""
    rt.sync()
    t0 = time.perf_counter()
    views = _model_views(model, splits.test_x, rt, batch_size, tta)
    rt.sync()
    seconds = time.perf_counter() - t0
    logits = combine(views)
    preds = logits.argmax(1)
    report = classification_report(preds, splits.test_y, num_classes=len(splits.info.classes))
    wrong, wrong_count = misclassified(preds, splits.test_y, splits.test_index)
    return {
        "test_accuracy": report["accuracy"], "test_macro_f1": report["macro_f1"],
        "test_loss": F.cross_entropy(logits, splits.test_y).item(),
        "per_class": report["per_class"], "confusion_matrix": report["confusion_matrix"],
        "misclassified": wrong, "misclassified_count": wrong_count, "predictions": preds.cpu(),
        "test_accuracy_single_view": (views[:, 0].argmax(1) == splits.test_y).float().mean().item()
        if views.shape[1] > 1 else None,
        # the test pass is a large-batch inference of every view of every test image: its rate is the throughput
        "inference_images_per_second": views.shape[0] * views.shape[1] / seconds if seconds > 0 else None,
        "inference_large_batch": min(batch_size, len(splits.test_x)),
    }
