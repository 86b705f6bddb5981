"""Detection as a training task for engine.fit(), and the test metrics train() records for it.

Every scene is generated on the device from a seed: training batch i of epoch e from (seed, e, i), so a
resumed run sees exactly the batches the uninterrupted one would have; validation scenes from the run
seed; test scenes from a fixed seed, so every run is scored on the same scenes.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..config import Config
from ..data.datasets import Splits
from ..data.pipeline import steps_per_epoch
from ..device import autocast_dtype, synchronize
from ..record import RunRecord
from . import evaluate, figures
from .model import SceneOptions, scene_options
from .scenes import Scenes, digit_pool, make_scenes, padded_targets, scene_seed

TRAIN_STREAM, VAL_STREAM = 1, 2
TEST_SEED = 2026  # independent of the run seed: test scenes are the same for every run


def _scenes(pool, count: int, seed: int, opts: SceneOptions) -> Scenes:
    return make_scenes(pool, count, seed=seed, canvas=opts.canvas, max_digits=opts.max_digits, scale=opts.scale)


class DetectionTask:
    """Faster R-CNN losses on fresh training scenes; validation by classification and mAP on val data.

    An epoch is `scenes_per_epoch` scenes (0 = as many as there are training digits), each of random
    training digits.
    """

    def __init__(self, splits: Splits, cfg: Config, device: torch.device):
        self.cfg, self.device = cfg, device
        self.opts = opts = scene_options(cfg.model_args)
        self.pool = digit_pool(splits.train_x, splits.train_y)
        self.steps_per_epoch = steps_per_epoch(opts.scenes_per_epoch or len(splits.train_x), cfg.batch_size)
        self.amp = autocast_dtype(device, cfg.precision)
        n = opts.val_digits or len(splits.val_x)
        self.val_x, self.val_y = splits.val_x[:n], splits.val_y[:n]
        self.val_scenes = _scenes(digit_pool(splits.val_x, splits.val_y), opts.val_scenes,
                                  scene_seed(cfg.seed, VAL_STREAM), opts)

    def batches(self, epoch: int, start: int) -> Iterator[Scenes]:
        for i in range(start, self.steps_per_epoch):
            yield _scenes(self.pool, self.cfg.batch_size, scene_seed(self.cfg.seed, TRAIN_STREAM, epoch, i), self.opts)

    def loss(self, net: nn.Module, scenes: Scenes, step: int) -> torch.Tensor:
        losses = net(scenes.images, padded_targets(scenes))
        return torch.stack([v.float() for v in losses.values()]).sum()

    def validate(self, model: nn.Module) -> dict[str, float]:
        """val_accuracy: classification by detection of the first val_digits (0 = all) validation digits;
        val_loss: the training loss on the validation scenes; val_map_50: mAP at IoU 0.5 on them."""
        bs = self.cfg.eval_batch_size
        preds = evaluate.classify_digits(model, self.val_x, canvas=self.opts.canvas, batch_size=bs, amp=self.amp)
        dets = evaluate.detect(model, self.val_scenes.images, batch_size=bs, amp=self.amp)
        return {"val_loss": evaluate.detection_loss(model, self.val_scenes, batch_size=bs, amp=self.amp),
                "val_accuracy": (preds == self.val_y).float().mean().item(),
                "val_map_50": evaluate.detection_metrics(dets, self.val_scenes)["map_50"]}


def make_task(splits: Splits, cfg: Config, device: torch.device) -> DetectionTask:
    """The DetectionTask for train()."""
    return DetectionTask(splits, cfg, device)


def test(model: nn.Module, splits: Splits, cfg: Config, device: torch.device, run: RunRecord | None) -> dict[str, Any]:
    """Test metrics: classification by detection on every test digit, mAP on test_scenes scenes of test
    digits, the loss there, inference speed; detections.png in the run folder when `run` is given."""
    opts = scene_options(cfg.model_args)
    amp = autocast_dtype(device, cfg.precision)
    bs = cfg.eval_batch_size
    preds = evaluate.classify_digits(model, splits.test_x, canvas=opts.canvas, batch_size=bs, amp=amp)
    out: dict[str, Any] = evaluate.classification_metrics(preds, splits.test_y)
    scenes = _scenes(digit_pool(splits.test_x, splits.test_y), opts.test_scenes, TEST_SEED, opts)
    evaluate.detect(model, scenes.images[:bs], batch_size=bs, amp=amp)  # warm-up, not timed
    synchronize(device)
    t0 = time.perf_counter()
    dets = evaluate.detect(model, scenes.images, batch_size=bs, amp=amp)
    synchronize(device)
    seconds = time.perf_counter() - t0
    out.update(evaluate.detection_metrics(dets, scenes))
    out["test_loss"] = evaluate.detection_loss(model, scenes, batch_size=bs, amp=amp)
    latency = (evaluate.latency_ms(model, scenes.images, amp=amp, budget_s=0.5 if device.type == "cpu" else 1.0)
               if cfg.inference_benchmark else None)
    out.update({"test_scenes": len(scenes), "test_digits_in_scenes": int(scenes.valid.sum()),
                "inference_images_per_second": len(scenes) / seconds, "inference_batch": min(bs, len(scenes)),
                "inference_ms_per_image": latency})
    if run is not None:
        figures.detections(scenes, dets, run.path("detections.png"),
                           title=f"{cfg.model}: test mAP@0.5 {out['map_50']:.3f}, mAP {out['map']:.3f}")
    return out
