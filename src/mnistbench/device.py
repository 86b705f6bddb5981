"""The one place where the device, numeric precision and memory layout of a run are chosen: Runtime."""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import UserError


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def pick_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, else Apple's MPS where PyTorch reports it, else the CPU; an absent one is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but PyTorch sees no CUDA GPU; use --device cpu or auto")
    if name == "mps" and not _mps_available():
        raise UserError("--device mps asked for, but PyTorch reports no Apple MPS device; use --device cpu or auto")
    return torch.device(name)


@functools.cache
def physical_cores() -> int:
    """CPU cores without their hyper-threads (distinct (physical id, core id) pairs), else os.cpu_count()."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return os.cpu_count() or 1
    cores, phys = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            phys = value.strip()
        elif key.strip() == "core id":
            cores.add((phys, value.strip()))
    return len(cores) or os.cpu_count() or 1


def set_cpu_threads() -> int:
    """One intra-op thread per physical core (hyper-threads slow PyTorch's CPU kernels), unless the user set
    OMP_NUM_THREADS; returns the thread count in use."""
    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(physical_cores())
    return torch.get_num_threads()


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed memory instead of handing it back to the OS; True if it was set.

    By default glibc maps every block over 32 MB on its own and unmaps it on free, and trims the heap above
    128 kB, so each training step's large tensors are page-faulted in afresh (the gradient of AlexNet's first
    classifier layer is 151 MB): writing one took 48–53 ms instead of ~4. With mmap off for large blocks and
    the trim threshold at 1 GiB, AlexNet's fp32 training step of 128 took 282-325 instead of 339-376 ms and
    VGG16's command 650.4 instead of 766.0 s on a 2-core AMD EPYC with avx512_bf16 (docs/BENCHMARKS.md; the
    CNN and ViT did not change); the price is that the process keeps its peak memory. The same effect as
    preloading jemalloc or tcmalloc, without installing one. Linux with glibc only; set
    MNISTBENCH_KEEP_FREED_MEMORY=0 to keep glibc's defaults.
    """
    if not sys.platform.startswith("linux") or os.environ.get("MNISTBENCH_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False


# The instruction-set flags that decide CPU training speed here: AVX2 (every x86-64 laptop of the last decade),
# AVX-512, and native bf16 (AVX-512 BF16, AMX), without which bf16 autocast is emulated and slow.
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


@functools.cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


@functools.cache
def cpu_name() -> str:
    """The CPU's model name ("AMD EPYC", "Intel(R) Xeon(R) Platinum 8481C"), else the platform's word for it."""
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model Name", "cpu model") and value.strip():
            return " ".join(value.split())
    import platform
    return platform.processor() or platform.machine() or "unknown CPU"


@functools.cache
def cpu_flags() -> tuple[str, ...]:
    """Which of ISA_FLAGS the CPU advertises (Linux's /proc/cpuinfo; none known elsewhere)."""
    words = set()
    for line in _cpuinfo().splitlines():
        if line.split(":")[0].strip() in ("flags", "Features"):
            words.update(line.partition(":")[2].split())
    return tuple(f for f in ISA_FLAGS if f in words)


def cpu_has_native_bf16() -> bool:
    """True when the CPU advertises AVX-512 BF16 or AMX-BF16 (where bf16 autocast can pay off)."""
    return "avx512_bf16" in cpu_flags() or "amx_bf16" in cpu_flags()


def machine(device: torch.device) -> dict[str, object]:
    """What computed a run: the GPU's name and count, or the CPU's model name, threads and ISA flags."""
    if device.type == "cuda":
        return {"gpu": torch.cuda.get_device_name(device), "gpu_count": torch.cuda.device_count()}
    if device.type == "mps":
        return {"gpu": "Apple MPS", "cpu": cpu_name()}
    return {"cpu": cpu_name(), "threads": torch.get_num_threads(), "cpu_flags": list(cpu_flags())}


def machine_text(m: dict[str, object]) -> str:
    """'AMD EPYC (2 threads, avx2)' or 'NVIDIA H100 80GB HBM3 (x 1)': a machine() in words."""
    if "gpu" in m:
        return f"{m['gpu']}" + (f" (x {m['gpu_count']})" if m.get("gpu_count") else "")
    detail = [f"{m.get('threads')} threads"] + list(m.get("cpu_flags") or []) if m.get("threads") else []
    return f"{m.get('cpu', 'unknown CPU')}" + (f" ({', '.join(detail)})" if detail else "")


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """bf16 when asked for, or on 'auto' on CUDA and on CPUs that run it natively; None means fp32.

    On a CPU, 'auto' is only the starting guess: train() times both and keeps the faster (calibrate.py).
    MPS stays in fp32 on 'auto' (untested here: no Apple hardware).
    """
    if precision == "fp32":
        return None
    if precision == "bf16" or device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16
    return None


def describe(device: torch.device) -> str:
    """The device in words: 'cuda (NVIDIA H100 80GB HBM3)' or 'cpu (AMD EPYC, 2 threads, avx2)'."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "mps (Apple MPS)"
    m = machine(device)
    return "cpu (" + ", ".join([str(m["cpu"]), f"{m['threads']} threads", *m["cpu_flags"]]) + ")"


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@dataclass(frozen=True)
class Runtime:
    """Where and how a run computes, resolved once and passed down: device, autocast dtype, memory layout."""

    device: torch.device
    amp: torch.dtype | None = None  # autocast dtype; None = fp32
    channels_last: bool = False

    @classmethod
    def resolve(cls, device: str, precision: str, channels_last: bool) -> Runtime:
        """The Runtime for a config's device, precision and channels_last fields."""
        dev = pick_device(device)
        if dev.type == "cpu":
            set_cpu_threads()
            keep_freed_memory()
        return cls(dev, autocast_dtype(dev, precision), channels_last)

    @property
    def precision(self) -> str:
        """'bf16' or 'fp32', as summaries report it."""
        return "bf16" if self.amp is torch.bfloat16 else "fp32"

    @property
    def timing_budget_s(self) -> float:
        """Seconds each inference-speed measurement runs for: short on a CPU, longer where a GPU warms up."""
        return 0.1 if self.device.type == "cpu" else 1.0

    def autocast(self):
        """An autocast context for this run's dtype, or a no-op for fp32."""
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """`x` (B, C, H, W) in the run's memory layout."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """`model` moved to the device, in the run's memory layout."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def sync(self) -> None:
        """Wait for queued device work (a no-op on the CPU)."""
        synchronize(self.device)

    def describe(self) -> str:
        """The device in words."""
        return describe(self.device)
