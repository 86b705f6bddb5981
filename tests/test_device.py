"""Process-wide CPU settings a run makes once: glibc's malloc keeps freed memory for reuse."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

# A CPU runtime, then 200 MB allocated, written and freed: prints whether mallopt was set and how much of
# the freed memory the process still holds (resident KB after the free, less before the allocation).
SCRIPT = """
import torch
from mnistbench.device import Runtime, keep_freed_memory
def rss_kb():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
Runtime.resolve('cpu', 'fp32', False)
before = rss_kb()
x = torch.ones(50_000_000)
del x
print(keep_freed_memory(), rss_kb() - before)
"""


def _held_after_free(env_value: str) -> tuple[str, int]:
    env = {**os.environ, "MNISTBENCH_KEEP_FREED_MEMORY": env_value}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    flag, held_kb = out.stdout.split()
    return flag, int(held_kb)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_a_cpu_runtime_keeps_freed_memory_for_reuse_unless_switched_off():
    flag, held = _held_after_free("1")
    assert flag == "True" and held > 150_000  # the 200 MB stay mapped: the next step's tensor reuses them
    flag, held = _held_after_free("0")
    assert flag == "False" and held < 50_000  # glibc's default: unmapped on free, page-faulted in again
