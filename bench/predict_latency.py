"""Predict latency per image of a classifier run on this CPU: PyTorch eager and onnxruntime, batch 1 and 256.

    python bench/predict_latency.py runs/cnn --data-dir ../shared/data         # exports model.onnx if absent
    python bench/predict_latency.py runs/cnn --budget 3 --json $OUT/latency.json

Times the model only (preprocessing is timed apart, on one photo-sized JPEG): real test images already
preprocessed, median of repeated calls after a warm-up (mnistbench.profile.median_seconds). PyTorch runs as
`predict` runs it (the run's precision and memory layout on this CPU) and in plain fp32, the precision of the
ONNX file. Nothing here is a test: numbers go to docs/BENCHMARKS.md (Other measurements), with the CPU lines printed
here.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mnistbench.data import images
from mnistbench.data.datasets import load_test_images
from mnistbench.data.pipeline import normalize
from mnistbench.device import Runtime
from mnistbench.export import export_onnx, onnx_session
from mnistbench.profile import median_seconds
from mnistbench.record import ONNX as ONNX_FILE
from mnistbench.run import load_run_config, load_trained, runtime

BATCHES = (1, 256)


def cpu_lines() -> dict[str, str]:
    """The CPU model, its bf16/AVX flags, thread counts and library versions."""
    import onnxruntime

    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    flags = set(re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE).group(1).split()) if "flags" in text else set()
    return {"cpu": model.group(1) if model else platform.processor(),
            "flags": " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags) or "none",
            "torch_threads": str(torch.get_num_threads()), "cores": str(os.cpu_count()),
            # a busy machine makes every figure here meaningless: run it on a quiet one
            "load_average_1min": f"{os.getloadavg()[0]:.2f}", "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


def ms_per_image(call, batch: int, budget_s: float) -> float:
    """Median milliseconds per image of call(i) running one batch of `batch` images."""
    return 1000 * median_seconds(call, Runtime(torch.device("cpu")), budget_s=budget_s) / batch


def torch_timer(model: torch.nn.Module, rt: Runtime, x: torch.Tensor):
    @torch.no_grad()
    def call(_: int):
        with rt.autocast():
            return model(rt.layout(x))
    return call


def measure(run_dir: str, cfg, onnx_path: Path, test_x: np.ndarray, budget_s: float) -> list[tuple[str, int, float]]:
    """(backend, batch, ms per image) for PyTorch as `predict` runs it, PyTorch fp32 and onnxruntime."""
    as_run, fp32 = runtime(cfg, "cpu"), Runtime(torch.device("cpu"))
    session = onnx_session(onnx_path)
    name = session.get_inputs()[0].name
    rows = []
    for batch in BATCHES:
        x = normalize(torch.from_numpy(test_x[:batch]))  # (B, 1, 28, 28) in [-1, 1]
        for label, rt in ((f"torch eager ({as_run.precision}, channels_last={as_run.channels_last})", as_run),
                          ("torch eager (fp32)", fp32)):
            model = load_trained(run_dir, cfg, rt)
            rows.append((label, batch, ms_per_image(torch_timer(model, rt, x), batch, budget_s)))
        feed = {name: x.numpy()}
        rows.append(("onnxruntime (fp32)", batch,
                     ms_per_image(lambda _, feed=feed: session.run(None, feed), batch, budget_s)))
    return rows


def preprocess_ms(digit: np.ndarray, dataset: str, budget_s: float) -> float:
    """Median milliseconds to decode and preprocess a 336 x 336 JPEG of a digit (dark ink on white)."""
    jpeg = io.BytesIO()
    Image.fromarray(np.kron(255 - digit, np.ones((12, 12), np.uint8))).save(jpeg, format="JPEG", quality=85)
    data = jpeg.getvalue()
    return 1000 * median_seconds(lambda _: images.from_bytes(data, dataset), Runtime(torch.device("cpu")),
                                 budget_s=budget_s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--data-dir", default="")
    ap.add_argument("--onnx", help="the ONNX file (default RUN_DIR/model.onnx, exported when absent)")
    ap.add_argument("--budget", type=float, default=2.0, help="seconds of timing per measurement")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    cfg = load_run_config(args.run_dir)
    onnx_path = Path(args.onnx or Path(args.run_dir) / ONNX_FILE)
    if not onnx_path.exists():
        print(export_onnx(args.run_dir, out=onnx_path, data_dir=args.data_dir).describe())
    test_x = np.array(load_test_images(cfg.dataset, args.data_dir or cfg.data_dir or None)[:max(BATCHES)])
    rows = measure(args.run_dir, cfg, onnx_path, test_x, args.budget)
    prep = preprocess_ms(test_x[0], cfg.dataset, args.budget)
    info = cpu_lines()
    for k, v in info.items():
        print(f"{k:>17}: {v}")
    print(f"{'run':>17}: {args.run_dir} ({cfg.model} on {cfg.dataset})\n")
    print(f"{'backend':48s} {'batch':>5s} {'ms / image':>11s}")
    for label, batch, ms in rows:
        print(f"{label:48s} {batch:5d} {ms:11.4f}")
    print(f"{'preprocessing: decode + recipe, 336 x 336 JPEG':48s} {1:5d} {prep:11.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps({**info, "run": args.run_dir, "model": cfg.model, "preprocess_ms": prep,
                                               "rows": [{"backend": b, "batch": n, "ms_per_image": m}
                                                        for b, n, m in rows]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
