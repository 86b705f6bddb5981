"""Measured model costs: inference latency and throughput, FLOPs per image, peak memory."""
from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from .device import Runtime


def median_seconds(call: Callable[[int], object], rt: Runtime, *, budget_s: float, min_calls: int = 3) -> float:
    """Median wall time of call(i) for i = 0, 1, ... over about `budget_s` seconds, after one untimed warm-up.

    The one timing loop of the package: device work is synchronised around every call.
    """
    call(0)
    rt.sync()
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < budget_s or len(times) < min_calls:
        t = time.perf_counter()
        call(len(times))
        rt.sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@torch.no_grad()
def inference_speed(model: nn.Module, rt: Runtime, *, large_batch: int | None = None) -> dict[str, float]:
    """Median batch-1 latency (ms per image) and large-batch throughput (images/s) of a classifier.

    The large batch is 256 on a CPU (throughput there is flat beyond it, and a VGG16 call of 1,000 images
    would take seconds) and 1,024 on a GPU; each timing runs for about rt.timing_budget_s.
    """
    model.eval()
    large_batch = large_batch or (256 if rt.device.type == "cpu" else 1024)

    def timer(batch: int, min_calls: int) -> float:
        x = rt.layout(torch.zeros(batch, 1, 28, 28, device=rt.device))
        with rt.autocast():
            return median_seconds(lambda _: model(x), rt, budget_s=rt.timing_budget_s, min_calls=min_calls)

    latency, large = timer(1, 3), timer(large_batch, 2)
    return {"inference_ms_per_image": 1000 * latency, "inference_images_per_second": large_batch / large,
            "inference_large_batch": large_batch}


def flops_per_image(model: nn.Module, device: torch.device) -> int | None:
    """FLOPs of one forward pass on one 28 × 28 image (None if they cannot be counted)."""
    return forward_flops(model, torch.zeros(1, 1, 28, 28, device=device))


def forward_flops(model: nn.Module, sample: torch.Tensor) -> int | None:
    """FLOPs of one eval-mode forward pass on `sample` (a batch of one), counted by torch.utils.flop_counter
    from the shapes of its matrix products and convolutions (the same on every machine); None if it fails. The
    model's train/eval mode is restored."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(sample)
        return int(counter.get_total_flops())
    except Exception:  # noqa: BLE001 - an op the counter cannot trace: report unknown, not a guess
        return None
    finally:
        model.train(was_training)


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated (CUDA), else the process's peak resident memory, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
