"""Study presets: every key a preset gives is one the model takes; the quick preset's budget and batches."""
from __future__ import annotations

from helpers import MLP

from mnistbench import models
from mnistbench.config import resolve
from mnistbench.study import presets


def test_presets_only_give_keys_a_model_takes(monkeypatch):
    monkeypatch.setitem(models.MODELS, "mlp", MLP)
    from mnistbench.models.transfer import VGG16_SPEC
    monkeypatch.setitem(models.MODELS, "vgg16", VGG16_SPEC)
    for preset in presets.names():
        for m in models.list_models():
            cfg = resolve({**presets.preset_overrides(preset, m), "model": m})  # every key valid
            assert cfg.model == m
    budget, one = presets.QUICK_BUDGET_S, {"tta": "none"}  # every preset tests each network on one view
    quick = {**one, "budget_s": budget, "val_points": 2, "val_subset": 1000}
    assert presets.preset_overrides("quick", "cnn") == quick  # no pretrained: the cnn takes no such option
    assert presets.preset_overrides("quick", "vgg16") == {**quick, "pretrained": False, "batch_size": 32}
    assert presets.preset_overrides("quick", "mlp") == quick
    assert presets.preset_overrides("standard", "cnn") == {**one, "recipe": "gpu"}
    assert presets.preset_overrides("standard", "frcnn") == {**one, "recipe": "long"}  # no gpu recipe: its long one
    assert presets.preset_overrides("standard", "mlp") == one  # neither: its default
    for preset in presets.names():  # the ViT's recipes average shifted views; no study does unless asked
        assert resolve({**presets.preset_overrides(preset, "vit"), "model": "vit"}).tta == "none"
    nb = presets.preset_overrides("notebook", "vgg16")
    assert nb["image_size"] == 224 and nb["finetune"] == "full" and nb["batch_size"] == 128


def test_split_names_the_keys_a_model_does_not_take(monkeypatch):
    monkeypatch.setitem(models.MODELS, "mlp", MLP)
    given, dropped = presets.split("cnn", presets.wanted("quick", "cnn"))
    assert dropped == {"pretrained": False} and "pretrained" not in given and given["budget_s"] > 0
    assert presets.split("mlp", presets.wanted("standard", "mlp"))[1] == {"recipe": ("gpu", "long")}
    assert presets.split("cnn", {"width": 8, "patch_size": 4}) == ({"width": 8}, {"patch_size": 4})
