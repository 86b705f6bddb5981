"""Detection as a task: Faster R-CNN losses on seeded digit scenes, validation, test metrics and speed.

Every scene is generated on the device from a seed: training batch i of epoch e from (seed, e, i), so a
resumed run sees exactly the batches the uninterrupted one would have; validation scenes from the run
seed; test scenes from a fixed seed, so every run is scored on the same scenes.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .. import plots
from ..data.datasets import Splits
from ..data.pipeline import steps_per_epoch, subset
from ..data.scenes import DIGIT, Scenes, centered, digit_pool, make_scenes, scene_seed
from ..device import Runtime
from ..errors import UserError
from ..metrics import classification_report, detection_metrics, misclassified
from ..models import get_spec
from ..models.boxes import Padded
from ..profile import median_seconds
from ..record import DETECTIONS

if TYPE_CHECKING:
    from ..record import RunRecord
    from ..schema import Config

TRAIN_STREAM, VAL_STREAM = 1, 2
TEST_SEED = 2026  # independent of the run seed: test scenes are the same for every run


@dataclass(frozen=True)
class DetectOptions:
    """How scenes are made and how many are trained on and evaluated; config keys (`--set test_scenes=500`)."""

    min_scale: float = 0.75       # digit patch side as a fraction of 28 px: drawn from [min_scale, max_scale]
    max_scale: float = 1.15
    scenes_per_epoch: int = 32000  # 0 = as many scenes as training digits
    val_digits: int = 0           # validation digits classified by detection (0 = all)
    val_scenes: int = 256         # validation scenes for the loss and mAP
    test_scenes: int = 1000       # test scenes for mAP, loss and speed

    def __post_init__(self) -> None:
        if not 0 < self.min_scale <= self.max_scale:
            raise UserError(f"need 0 < min_scale <= max_scale; got {self.min_scale}, {self.max_scale}")
        if min(self.val_digits, self.scenes_per_epoch) < 0 or min(self.val_scenes, self.test_scenes) < 1:
            raise UserError("scenes_per_epoch and val_digits (0 = all) must be >= 0, val_scenes and test_scenes >= 1")


def padded_targets(scenes: Scenes) -> Padded:
    """The scenes' boxes as the detector's targets; labels shift by one because class 0 is background."""
    return Padded(scenes.boxes, scenes.labels + 1, scenes.valid)  # invalid slots get label 0, background


def box_lists(scenes: Scenes) -> list[dict[str, torch.Tensor]]:
    """Per scene, its true {"boxes", "labels" (digits 0..9)}."""
    counts = scenes.valid.sum(dim=1).tolist()  # the one host sync a per-image list needs
    return [{"boxes": b, "labels": c}
            for b, c in zip(scenes.boxes[scenes.valid].split(counts), scenes.labels[scenes.valid].split(counts))]


class DetectTask:
    """Faster R-CNN losses on fresh training scenes; validation by classification and mAP on val data."""

    Options = DetectOptions

    def __init__(self, splits: Splits, cfg: Config, rt: Runtime):
        self.splits, self.cfg, self.rt = splits, cfg, rt
        self.opts = opts = DetectOptions(**cfg.task_args)
        model_args = {**get_spec(cfg.model).arg_defaults(), **cfg.model_args}
        self.canvas, self.max_digits = model_args["image_size"], model_args["max_digits"]
        if self.canvas < round(opts.max_scale * DIGIT):
            raise UserError(f"image_size={self.canvas} is smaller than the largest digit patch "
                            f"(max_scale {opts.max_scale} x 28 px); raise image_size or lower max_scale")
        self.pool = digit_pool(splits.train_x, splits.train_y)
        self.steps_per_epoch = steps_per_epoch(opts.scenes_per_epoch or len(splits.train_x), cfg.batch_size)
        n = opts.val_digits or len(splits.val_x)
        self.val_x, self.val_y = splits.val_x[:n], splits.val_y[:n]
        self.val_subset = subset(n, cfg.val_subset, seed=cfg.seed).to(rt.device)
        self.val_scenes = self.scenes(digit_pool(splits.val_x, splits.val_y), opts.val_scenes,
                                      scene_seed(cfg.seed, VAL_STREAM))

    def scenes(self, pool, count: int, seed: int) -> Scenes:
        return make_scenes(pool, count, seed=seed, canvas=self.canvas, max_digits=self.max_digits,
                           scale=(self.opts.min_scale, self.opts.max_scale))

    def sample(self) -> torch.Tensor:
        """One training sample's input, a scene (1, 1, S, S): the first validation scene, the same in every run
        of this seed, to count the forward FLOPs per scene."""
        return self.val_scenes.images[:1]

    def batches(self, epoch: int, start: int) -> Iterator[Scenes]:
        for i in range(start, self.steps_per_epoch):
            yield self.scenes(self.pool, self.cfg.batch_size, scene_seed(self.cfg.seed, TRAIN_STREAM, epoch, i))

    def loss(self, net: nn.Module, scenes: Scenes, step: int) -> torch.Tensor:
        losses = net(scenes.images, padded_targets(scenes))
        return torch.stack([v.float() for v in losses.values()]).sum()

    def validate(self, model: nn.Module, whole: bool = False) -> dict[str, float]:
        """val_accuracy: classification by detection of the first val_digits (0 = all) validation digits, or of
        the val_subset of them unless `whole`; val_loss: the training loss on the validation scenes; val_map_50:
        mAP at IoU 0.5 on them."""
        x, y = (self.val_x, self.val_y) if whole else (self.val_x[self.val_subset], self.val_y[self.val_subset])
        preds = self.classify_digits(model, x)
        dets = self.detect(model, self.val_scenes.images)
        return {"val_loss": self.detection_loss(model, self.val_scenes),
                "val_accuracy": (preds == y).float().mean().item(), "val_images": len(y),
                "val_map_50": detection_metrics(dets, box_lists(self.val_scenes))["map_50"]}

    def test(self, model: nn.Module, run: RunRecord | None = None) -> dict[str, Any]:
        """Classification by detection on every test digit (the classifiers' test images); mAP, loss and speed
        (per scene) on test_scenes scenes of test digits; detections.png in the run folder when `run` is given."""
        out = classification_metrics(self.classify_digits(model, self.splits.test_x), self.splits.test_y,
                                     self.splits.test_index)
        scenes = self.scenes(digit_pool(self.splits.test_x, self.splits.test_y), self.opts.test_scenes, TEST_SEED)
        # no separate warm-up: classification by detection has just run the same network on batches of
        # the same canvases
        self.rt.sync()
        t0 = time.perf_counter()
        dets = self.detect(model, scenes.images)
        self.rt.sync()
        seconds = time.perf_counter() - t0
        out.update(detection_metrics(dets, box_lists(scenes)))
        # in the detector's own units: its loss is the sum of the four Faster R-CNN losses, not a
        # cross-entropy, and its speed is per scene (a canvas of several digits), not per 28×28 image
        out["test_detection_loss"] = self.detection_loss(model, scenes)
        out.update({"test_scenes": len(scenes), "test_digits_in_scenes": int(scenes.valid.sum()),
                    "inference_scenes_per_second": len(scenes) / seconds,
                    "inference_batch": min(self.cfg.eval_batch_size, len(scenes)),
                    "inference_ms_per_scene": self.latency_ms(model, scenes.images)
                    if self.cfg.inference_benchmark else None})
        if run is not None:
            plots.detections(scenes.images, box_lists(scenes), dets, run.path(DETECTIONS),
                             title=f"{self.cfg.model}: test mAP@0.5 {out['map_50']:.3f}, mAP {out['map']:.3f}")
        return out

    # --- evaluation helpers ------------------------------------------------------------------------
    @torch.no_grad()
    def _eval_batches(self, model: nn.Module, images: torch.Tensor, call) -> list:
        """call(batch) on `images` in batches of eval_batch_size, the model in eval mode under the run's autocast;
        the model's mode is restored afterwards."""
        was_training = model.training
        model.eval()
        bs = self.cfg.eval_batch_size
        try:
            out = []
            for i in range(0, len(images), bs):
                with self.rt.autocast():
                    out.append(call(images[i:i + bs]))
            return out
        finally:
            model.train(was_training)

    def detect(self, model: nn.Module, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Eval-mode detections of (N, 1, S, S) canvases: one {"boxes", "labels" (digits 0..9), "scores"} each."""
        # the detector's class 0 is the background: its class k is digit k - 1
        return [{**d, "labels": d["labels"] - 1} for dets in self._eval_batches(model, images, model) for d in dets]

    def classify_digits(self, model: nn.Module, digits: torch.Tensor) -> torch.Tensor:
        """Classification by detection: each (28, 28) digit alone at native size in the canvas centre is the
        digit of its highest-scoring box (-1 = no box); model.best finds that box without the final NMS."""
        # the detector's class k is digit k - 1, and 0 (no box) becomes -1
        preds = self._eval_batches(model, digits, lambda d: model.best(centered(d, self.canvas))[0] - 1)
        return torch.cat(preds) if preds else torch.empty(0, dtype=torch.int64, device=digits.device)

    @torch.no_grad()
    def detection_loss(self, model: nn.Module, scenes: Scenes, seed: int = 0) -> float:
        """The training loss (sum of the four Faster R-CNN losses), mean over batches of `scenes`.

        The heads run in train mode, since only there do they compute losses; batch norm stays in eval
        mode so its running statistics are not touched, and the random proposal sampling is seeded and
        kept off the global generator, so this is repeatable and training is not disturbed.
        """
        was_training = model.training
        model.train()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        devices = [self.rt.device] if self.rt.device.type == "cuda" else []
        total, batches, bs = 0.0, 0, self.cfg.eval_batch_size
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for i in range(0, len(scenes), bs):
                part = scenes[i:i + bs]
                with self.rt.autocast():
                    losses = model(part.images, padded_targets(part))
                total += float(sum(v.float() for v in losses.values()))
                batches += 1
        model.train(was_training)
        return total / max(batches, 1)

    @torch.no_grad()
    def latency_ms(self, model: nn.Module, images: torch.Tensor) -> float:
        """Median eval-mode latency of one canvas (batch 1), cycling through `images`."""
        model.eval()
        with self.rt.autocast():
            return 1000 * median_seconds(lambda i: model(images[i % len(images)][None]), self.rt,
                                         budget_s=self.rt.timing_budget_s)


def classification_metrics(preds: torch.Tensor, target: torch.Tensor, index: torch.Tensor | None = None,
                           num_classes: int = 10) -> dict[str, Any]:
    """The classifier's test keys for detector predictions (-1 = no box found).

    A digit without a box is wrong: it lowers accuracy and its class's recall and F1, and it is counted
    in an explicit last column of the confusion matrix, "none" (num_classes rows × num_classes + 1
    columns), never as a made-up class, so no class's precision is charged for it. Macro-F1 averages the
    digit classes only. `no_detection_count` says how many digits had no box.
    """
    missing = preds < 0
    report = classification_report(torch.where(missing, num_classes, preds), target, num_classes=num_classes + 1)
    per_class = report["per_class"][:num_classes]  # the "none" class has no support and no precision
    wrong, wrong_count = misclassified(preds, target, index)
    return {
        "test_accuracy": report["accuracy"], "test_macro_f1": sum(p["f1"] for p in per_class) / num_classes,
        "per_class": per_class, "confusion_matrix": report["confusion_matrix"][:num_classes],
        "confusion_columns": [*map(str, range(num_classes)), "none"],
        "misclassified": wrong, "misclassified_count": wrong_count, "no_detection_count": int(missing.sum()),
        "predictions": preds.cpu(),
    }
