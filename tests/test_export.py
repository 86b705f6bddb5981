"""`export`: every registered classifier to ONNX with a dynamic batch axis, checked against PyTorch on real
test images; a failed check removes the file; the detector and missing pieces are one clear line each."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from numerics import assert_within_rounding, reduction_length, rounding_bound

from mnistbench import checkpoint, export
from mnistbench.cli import main
from mnistbench.config import resolve
from mnistbench.data.datasets import load_test_images
from mnistbench.data.pipeline import normalize
from mnistbench.errors import UserError
from mnistbench.fsio import write_json
from mnistbench.models import MODELS, get_model
from mnistbench.record import CONFIG, MODEL, ONNX

CLASSIFIERS = [name for name, spec in MODELS.items() if spec.task == "classify"]
# offline: the transfer models start from scratch; their parity check runs fewer images (VGG16 is 134 M
# parameters and slow on a 2-core CPU), the small models the full 1,000
OPTIONS = {"alexnet": {"pretrained": False}, "vgg16": {"pretrained": False}}
CHECK_IMAGES = {"alexnet": 128, "vgg16": 64}


def fresh_run(folder, model: str, **options):
    """A run folder holding a freshly built (untrained) model: what export needs is config.json and model.pt."""
    cfg = resolve({"model": model, "out": str(folder), **options})
    folder.mkdir(parents=True)
    write_json(folder / CONFIG, {"config": cfg.to_dict()})
    torch.manual_seed(0)
    checkpoint.save(folder / MODEL, get_model(model, **cfg.model_args).state_dict())
    return folder


def _fresh_model(model: str) -> torch.nn.Module:
    """The network fresh_run saves for `model` (the same seed and options), in eval mode."""
    torch.manual_seed(0)
    return get_model(model, **resolve({"model": model, **OPTIONS.get(model, {})}).model_args).eval()


def test_every_registered_classifier_is_covered():
    assert {"cnn", "vit", "alexnet", "vgg16"} <= set(CLASSIFIERS)


@pytest.mark.parametrize("model", CLASSIFIERS)
def test_onnx_export_matches_pytorch_with_a_dynamic_batch(model, tmp_path, data_dir):
    run = fresh_run(tmp_path / model, model, **OPTIONS.get(model, {}))
    done = export.export_onnx(run, data_dir=str(data_dir), check_images=CHECK_IMAGES.get(model, 1000))
    assert done.path == run / ONNX and done.path.stat().st_size == done.bytes
    assert done.exporter == "dynamo" and done.parity.ok
    assert done.parity.images == CHECK_IMAGES.get(model, 1000)
    # onnxruntime and PyTorch add the same products in their own orders (and fold batch norm into the weights,
    # one more rounding each): within the typical bound sqrt(K) * eps * max |logit| for the network's forward sums
    net, checked = _fresh_model(model), load_test_images("mnist", data_dir)[:done.parity.images]
    with torch.no_grad():
        scale = net(normalize(torch.from_numpy(np.array(checked)))).abs().max().item()
    k = reduction_length(net, normalize(torch.from_numpy(np.array(checked[:1]))), backward=False) + 1
    assert done.parity.max_abs_diff <= rounding_bound(k, scale), (done.parity, rounding_bound(k, scale))
    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    session = export.onnx_session(done.path)
    assert isinstance(session.get_inputs()[0].shape[0], str)  # a named, dynamic batch axis
    together = export.onnx_logits(session, x, 3)
    # batch 1 too: the same network, another batch's blocking of the same sums
    assert_within_rounding(export.onnx_logits(session, x, 1), together, k)


def test_export_command_writes_where_asked(tmp_path, data_dir, capsys):
    run = fresh_run(tmp_path / "vit", "vit", dim=16, depth=1, heads=2)
    out = tmp_path / "elsewhere" / "vit.onnx"
    out.parent.mkdir()
    assert main(["export", str(run), "--out", str(out), "--data-dir", str(data_dir)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"wrote {out} (") and "dynamo exporter, dynamic batch" in line
    assert "parity with PyTorch on 1000 test images" in line and "argmax identical" in line
    assert out.exists() and not (run / ONNX).exists()


def test_a_failed_parity_check_removes_the_file_and_says_by_how_much(tmp_path, data_dir, monkeypatch, capsys):
    run = fresh_run(tmp_path / "cnn", "cnn", width=8)
    real = export.onnx_logits

    def off(session, x, batch_size):
        y = real(session, x, batch_size)
        y[:, 0] += 0.5  # a wrong export: class 0 boosted
        return y

    monkeypatch.setattr(export, "onnx_logits", off)
    assert main(["export", str(run), "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("mnistbench: error: the ONNX export does not match PyTorch on 1000")
    assert "max abs logit difference 5.00e-01" in err and "argmax disagreements" in err and "removed" in err
    assert not (run / ONNX).exists()


def test_the_detector_says_why_it_has_no_onnx_export(tmp_path, data_dir):
    run = fresh_run(tmp_path / "frcnn", "frcnn")
    with pytest.raises(UserError, match="frcnn cannot be exported to ONNX: .*data.*predict with --backend torch"):
        export.export_onnx(run, data_dir=str(data_dir))
    assert not (run / ONNX).exists()


def test_missing_pieces_are_one_line_each(tmp_path, data_dir, monkeypatch, capsys):
    run = fresh_run(tmp_path / "cnn", "cnn", width=8)
    (run / MODEL).unlink()
    assert main(["export", str(run), "--data-dir", str(data_dir)]) == 2
    assert "no model.pt in it" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nowhere")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the [onnx] extra were not installed
    with pytest.raises(UserError, match=r"pip install 'mnistbench\[onnx\]'"):
        export.onnx_session(tmp_path / "any.onnx")


def test_an_exporter_failure_is_one_line(tmp_path, data_dir, monkeypatch):
    run = fresh_run(tmp_path / "cnn", "cnn", width=8)

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator\nmore detail")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(UserError, match=r"^neither ONNX exporter could export the model \(dynamo: RuntimeError: "
                                        r"unsupported operator; TorchScript: RuntimeError: unsupported operator\)$"):
        export.export_onnx(run, data_dir=str(data_dir))
    assert not (run / ONNX).exists()
    with pytest.raises(UserError, match="no such folder to write x.onnx in"):
        export.export_onnx(run, out=tmp_path / "nowhere" / "x.onnx", data_dir=str(data_dir))
