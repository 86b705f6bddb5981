"""Measured model costs: inference latency and throughput, FLOPs per image, peak memory."""
from __future__ import annotations

import resource
import statistics
import time

import torch
from torch import nn

from .device import autocast, synchronize


@torch.no_grad()
def inference_speed(model: nn.Module, device: torch.device, amp: torch.dtype | None, *, large_batch: int = 1000,
                    budget_s: float = 1.0, channels_last: bool = False) -> dict[str, float]:
    """Median batch-1 latency (ms per image) and large-batch throughput (images/s), after warm-up.

    Each measurement runs for about `budget_s` seconds; inputs are already on the device.
    """
    model.eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def timed(batch: int) -> list[float]:
        x = torch.zeros(batch, 1, 28, 28, device=device).contiguous(memory_format=fmt)
        times: list[float] = []
        with autocast(device, amp):
            model(x)  # warm-up
            synchronize(device)
            start = time.perf_counter()
            while time.perf_counter() - start < budget_s or len(times) < 3:
                t = time.perf_counter()
                model(x)
                synchronize(device)
                times.append(time.perf_counter() - t)
        return times

    latency = statistics.median(timed(1))
    large = statistics.median(timed(large_batch))
    return {"inference_ms_per_image": 1000 * latency, "inference_images_per_second": large_batch / large,
            "inference_large_batch": large_batch}


def flops_per_image(model: nn.Module, device: torch.device) -> int | None:
    """FLOPs of one forward pass on one image, counted by torch.utils.flop_counter (None if it fails)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 1, 28, 28, device=device))
        return int(counter.get_total_flops())
    except Exception:  # noqa: BLE001 - an op the counter cannot trace: report unknown, not a guess
        return None


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated (CUDA), else the process's peak resident memory, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
