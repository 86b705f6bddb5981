"""Registry-wide model checks: output shape, every trainable parameter gets a gradient, nothing NaN."""
import pytest
import torch

from mnistbench.errors import UserError
from mnistbench.models import MODELS, get_model, get_spec, list_models, no_download_options

CLASSIFIERS = [n for n in list_models() if MODELS[n].task == "classify"]


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_contract(name):
    torch.manual_seed(0)
    model = get_model(name, **no_download_options(name))
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    logits = model(x)
    assert logits.shape == (3, 10)
    assert torch.isfinite(logits).all()
    logits.logsumexp(1).sum().backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    missing = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no or non-finite gradient for {missing[:5]}"
    assert any(p.grad.abs().sum() > 0 for _, p in trainable)


@pytest.mark.parametrize("name", list_models())
def test_every_model_has_default_recipe_and_about(name):
    spec = get_spec(name)
    assert "default" in spec.recipes and spec.about
    from mnistbench.config import FIELDS, option_keys

    known = set(FIELDS).union(*option_keys(name))  # config fields, the model's options (the CNN's width), its task's
    for recipe in spec.recipes.values():
        for key in recipe:
            assert key in known, f"{name} recipe sets unknown key {key}"
        assert "precision" not in recipe, f"{name}: a recipe must not force a precision (auto measures it)"


def test_get_model_rejects_unknown_option():
    with pytest.raises(UserError, match="takes no option"):
        get_model("cnn", depth=3)
    with pytest.raises(UserError, match="registered models"):
        get_model("lenet")


def test_one_rule_builds_a_model_without_downloading_weights():
    """cli's parameter count, the study's option check and loading a trained model.pt all use this rule."""
    assert no_download_options("cnn") == get_spec("cnn").arg_defaults()  # nothing to download
    scratch = no_download_options("vgg16", {"finetune": "head"})  # head needs a pretrained start: full
    assert scratch["pretrained"] is False and scratch["finetune"] == "full"
    with torch.device("meta"):
        get_model("vgg16", **scratch)  # builds (conftest turns any download into an error)
    assert no_download_options("vgg16", {"finetune": "ful"})["finetune"] == "ful"  # a typo stays, to be refused
    local = no_download_options("alexnet", {"weights": "/w.pt", "finetune": "head"})  # a file downloads nothing
    assert local["pretrained"] is True and local["weights"] == "/w.pt" and local["finetune"] == "head"
    trained = no_download_options("alexnet", {"weights": "/w.pt"}, weights_file=False)  # model.pt replaces all
    assert trained["weights"] == "" and trained["pretrained"] is False and trained["finetune"] == "full"
    assert no_download_options("frcnn", {"pretrained": True})["pretrained"] is False
