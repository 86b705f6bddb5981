"""Measured model costs: inference latency and throughput, FLOPs per image, peak memory."""
from __future__ import annotations

import json
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .device import Runtime
from .fsio import cache_dir, write_json


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
def latency_ms(model: nn.Module, rt: Runtime) -> float:
    """Median batch-1 latency of a classifier in ms, timed for about rt.timing_budget_s (at least 3 calls).

    Large-batch throughput needs no timing of its own: the test pass measures it (tasks/classify.py).
    """
    model.eval()
    x = rt.layout(torch.zeros(1, 1, 28, 28, device=rt.device))
    with rt.autocast():
        return 1000 * median_seconds(lambda _: model(x), rt, budget_s=rt.timing_budget_s)


def forward_flops(model: nn.Module, sample: torch.Tensor, key: str = "") -> int | None:
    """FLOPs of one eval-mode forward pass on `sample` (a batch of one), counted by torch.utils.flop_counter
    from the shapes of its matrix products and convolutions (the same on every machine); None if it fails. The
    model's train/eval mode is restored.

    The count is a property of the architecture, so with a `key` naming it (model, options, input shape) it is
    kept in the user's cache folder and read from there next time: counting enters a torch dispatch mode,
    which imports torch._dynamo, more than a small run's whole test pass costs.
    """
    cache = cache_dir() / FLOPS_CACHE
    full_key = f"{key}|torch {torch.__version__}" if key else ""
    if full_key:
        known = _read_json(cache).get(full_key)
        if isinstance(known, int):
            return known
    flops = _count(model, sample)
    if full_key and flops is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_json(cache, {**_read_json(cache), full_key: flops})
        except OSError:  # a cache that cannot be written only means counting again next time
            pass
    return flops


FLOPS_CACHE = "flops.json"


def _count(model: nn.Module, sample: torch.Tensor) -> int | None:
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


def _read_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated (CUDA), else this process's peak resident memory, in MiB.

    On Linux the peak is VmHWM of /proc/self/status, which starts afresh in every process (one forked from a
    study's server starts at the memory it shares with that server); getrusage's ru_maxrss is a fallback
    elsewhere, since a child started by fork and exec inherits its parent's.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
