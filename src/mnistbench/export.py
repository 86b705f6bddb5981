"""A trained run outside PyTorch: its model loaded for inference, exported to ONNX and checked for parity.

`export_onnx` writes the classifier with a dynamic batch axis (torch's dynamo exporter; the TorchScript
exporter where that is unavailable), in fp32 eval mode whatever the run trained in, then runs 1,000 real
test images of the run's data set through onnxruntime and PyTorch: logits must agree within
atol 1e-4 / rtol 1e-3 with the same argmax everywhere, else the file is removed and the export fails.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .config import model_spec
from .data.datasets import load_test_images
from .data.pipeline import normalize
from .device import Runtime
from .errors import UserError, first_line
from .fsio import write_atomic
from .record import ONNX
from .run import load_run_config, load_trained
from .tasks.classify import predict as torch_logits

ATOL, RTOL = 1e-4, 1e-3       # parity: |onnx - torch| <= ATOL + RTOL * |torch|, logit by logit
CHECK_IMAGES = 1000           # real test images the parity check runs
CHECK_BATCH = 256             # not the export's example batch: the check exercises the dynamic axis
NO_DETECTOR = ("frcnn cannot be exported to ONNX: its batched detection heads run NMS until the kept set "
               "stops changing, a loop whose length depends on the data, which torch.export cannot trace "
               "(and torchvision's ONNX support covers only its stock per-image FasterRCNN); "
               "predict with --backend torch")


def onnx_session(path: str | os.PathLike, device: torch.device | None = None):
    """An onnxruntime InferenceSession for the ONNX file at `path` (CUDA when asked for and available)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("onnxruntime is not installed; pip install 'mnistbench[onnx]'") from None
    if not Path(path).is_file():
        raise UserError(f"{path}: no such ONNX file; write it with: mnistbench export RUN_DIR (or pass --onnx FILE)")
    wanted = ["CUDAExecutionProvider"] if device is not None and device.type == "cuda" else []
    providers = [p for p in wanted if p in ort.get_available_providers()] + ["CPUExecutionProvider"]
    try:
        return ort.InferenceSession(str(path), providers=providers)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise UserError(f"{path}: not an ONNX model onnxruntime can run ({first_line(e)})") from None


def onnx_logits(session, x: np.ndarray, batch_size: int) -> np.ndarray:
    """fp32 logits (N, 10) of uint8 images (N, 28, 28) through an ONNX session, in batches."""
    name = session.get_inputs()[0].name
    outs = [session.run(None, {name: normalize(torch.from_numpy(x[i:i + batch_size])).numpy()})[0]
            for i in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, 10), np.float32)


def to_onnx(model: nn.Module) -> tuple[bytes, str]:
    """The serialised ONNX model of a classifier (input "images" (batch, 1, 28, 28) -> "logits" (batch, 10))
    and the exporter that made it: "dynamo", or "torchscript" where the dynamo exporter is missing or fails."""
    example = (torch.zeros(2, 1, 28, 28),)  # batch 2: a batch of 1 could be specialised away
    names = {"input_names": ["images"], "output_names": ["logits"]}
    try:
        program = torch.onnx.export(model, example, dynamo=True, verbose=False, **names,
                                    dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
        return program.model_proto.SerializeToString(), "dynamo"
    except ImportError as e:  # the dynamo exporter needs onnxscript
        raise UserError(f"the ONNX exporter needs {e.name or 'onnx and onnxscript'}; "
                        "pip install 'mnistbench[onnx]'") from None
    except Exception as e:  # noqa: BLE001 - torch < 2.5 has no dynamo=True; a model torch.export cannot trace
        first = first_line(e)
    buf = io.BytesIO()
    try:
        torch.onnx.export(model, example, buf, dynamo=False, opset_version=17, **names,
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    except Exception as e:  # noqa: BLE001 - say what both exporters said, in one line
        raise UserError(f"neither ONNX exporter could export the model (dynamo: {first}; TorchScript: "
                        f"{first_line(e)})") from None
    return buf.getvalue(), "torchscript"


@dataclass(frozen=True)
class Parity:
    """How an ONNX export's logits compare with PyTorch's on real test images."""

    images: int
    max_abs_diff: float
    argmax_disagreements: int
    within_tolerance: bool

    @property
    def ok(self) -> bool:
        return self.within_tolerance and self.argmax_disagreements == 0


def parity(model: nn.Module, path: Path, test_x: np.ndarray) -> Parity:
    """Logits of the ONNX file at `path` (onnxruntime) against `model`'s (PyTorch, fp32 CPU) on `test_x`."""
    want = torch_logits(model, torch.from_numpy(test_x), rt=Runtime(torch.device("cpu")),
                        batch_size=CHECK_BATCH).numpy()
    got = onnx_logits(onnx_session(path), test_x, CHECK_BATCH)
    return Parity(len(test_x), float(np.abs(got - want).max(initial=0.0)),
                  int((got.argmax(1) != want.argmax(1)).sum()), bool(np.allclose(got, want, atol=ATOL, rtol=RTOL)))


@dataclass(frozen=True)
class Exported:
    """What `export_onnx` wrote and how it checked."""

    path: Path
    exporter: str
    bytes: int
    parity: Parity

    def describe(self) -> str:
        """One line for the command line."""
        return (f"wrote {self.path} ({self.bytes / 1e6:.1f} MB, {self.exporter} exporter, dynamic batch); "
                f"parity with PyTorch on {self.parity.images} test images: max abs logit difference "
                f"{self.parity.max_abs_diff:.1e}, argmax identical")


def export_onnx(run_dir: str | os.PathLike, *, out: str | os.PathLike | None = None, data_dir: str = "",
                check_images: int = CHECK_IMAGES, trust_code: bool = False) -> Exported:
    """Export a classifier run's model.pt to ONNX (`out`, default <run>/model.onnx) and check it on
    `check_images` real test images; on a parity failure the file is removed and a UserError says by how much."""
    if not Path(run_dir).is_dir():
        raise UserError(f"{run_dir}: no such run folder")
    cfg = load_run_config(run_dir, trust_code=trust_code)
    if model_spec(cfg).task != "classify":
        raise UserError(NO_DETECTOR if cfg.model == "frcnn" else f"{cfg.model} runs cannot be exported to ONNX")
    path = Path(out) if out else Path(run_dir) / ONNX
    if not path.parent.is_dir():
        raise UserError(f"{path.parent}: no such folder to write {path.name} in; create it or choose another --out")
    model = load_trained(run_dir, cfg, Runtime(torch.device("cpu"))).float()  # fp32 eval, whatever it trained in
    test_x = np.array(load_test_images(cfg.dataset, data_dir or cfg.data_dir or None)[:check_images])
    data, exporter = to_onnx(model)
    write_atomic(path, lambda f: f.write(data))
    try:
        check = parity(model, path, test_x)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if not check.ok:
        path.unlink(missing_ok=True)
        raise UserError(f"the ONNX export does not match PyTorch on {check.images} test images: max abs logit "
                        f"difference {check.max_abs_diff:.2e} (allowed {ATOL:g} + {RTOL:g} x |logit|), "
                        f"{check.argmax_disagreements} argmax disagreements; {path} removed")
    return Exported(path, exporter, len(data), check)
