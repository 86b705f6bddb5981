"""VGG16 and AlexNet transfer models: weight resolution (offline), adapters, sizes, fine-tuning modes."""
from __future__ import annotations

import urllib.error

import pytest
import torch
import torch.nn.functional as F
import torchvision
from numerics import assert_within_rounding, rounding_bound

from mnistbench.errors import UserError
from mnistbench.models import weights as wts
from mnistbench.models.transfer import ALEXNET_SPEC, VGG16_SPEC
from mnistbench.models.transfer_nets import ALEXNET, VGG16, InputAdapter, TransferNet, sum_first_conv

ALEX_CACHE_NAME = "alexnet-owt-7be5be79.pth"
STATS = wts.normalization(ALEXNET.weights)  # ImageNet mean and std, from torchvision's metadata


def _offline(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


@pytest.fixture(autouse=True)
def no_network(tmp_path, monkeypatch):
    """Every test runs with an empty torch hub cache and a download that fails."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _offline)


@pytest.fixture(scope="module")
def alex_file(tmp_path_factory):
    """A fresh torchvision AlexNet state dict (ImageNet format, 1000-way), saved once for the module."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("weights") / "alexnet.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


def _x(b=2):
    return torch.rand(b, 1, 28, 28) * 2 - 1


def test_offline_without_cache_names_cache_file_and_ways_out(tmp_path):
    with pytest.raises(UserError) as e:
        ALEXNET_SPEC.build()
    msg = str(e.value)
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / ALEX_CACHE_NAME) in msg
    assert "--set weights=FILE" in msg and "--set pretrained=false" in msg and "\n" not in msg


def test_cache_file_follows_torch_home(tmp_path):
    assert wts.cache_file(VGG16.weights) == tmp_path / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth"


def test_cached_file_is_used_without_network(tmp_path, alex_file):
    cached = tmp_path / "torch" / "hub" / "checkpoints" / ALEX_CACHE_NAME
    cached.parent.mkdir(parents=True)
    cached.symlink_to(alex_file)
    m = ALEXNET_SPEC.build()
    assert m.weights_source == "torchvision:AlexNet_Weights.IMAGENET1K_V1"
    assert m.finetune == "discriminative"
    assert torch.equal(m.net.features[3].weight, torch.load(alex_file)["features.3.weight"])


def test_weights_file_is_loaded(alex_file):
    m = ALEXNET_SPEC.build(weights=str(alex_file))
    state = torch.load(alex_file)
    assert m.weights_source == f"file:{alex_file.resolve()}"
    for key in ("features.0.weight", "features.10.bias", "classifier.4.weight"):
        assert torch.equal(m.net.state_dict()[key], state[key])
    assert m.net.classifier[-1].out_features == 10
    assert m(_x()).shape == (2, 10)


@pytest.mark.parametrize("key", ["model", "state_dict"])
def test_weights_file_wrapped_in_a_dict(tmp_path, key):
    state = {"features.0.weight": torch.ones(2), "features.0.bias": torch.zeros(2)}
    torch.save({key: state, "epoch": 3}, tmp_path / "ckpt.pth")
    assert wts.load_file(tmp_path / "ckpt.pth").keys() == state.keys()


def test_weights_file_of_another_model_is_rejected(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(UserError, match=r"does not fit this model: missing 16: features\.0\.weight.*unexpected"):
        ALEXNET_SPEC.build(weights=str(path))


def test_mismatched_keys_and_shapes_are_listed():
    expected = {"a.weight": torch.zeros(3, 2), "a.bias": torch.zeros(3), "b.weight": torch.zeros(10, 3)}
    got = {"a.weight": torch.zeros(3, 2), "b.weight": torch.zeros(1000, 3), "extra": torch.zeros(1)}
    with pytest.raises(UserError) as e:
        wts.check_compatible(expected, got, source="file:x")
    msg = str(e.value)
    assert "missing 1: a.bias" in msg and "unexpected 1: extra" in msg
    assert "b.weight (1000, 3) (want (10, 3))" in msg
    wts.check_compatible(expected, dict(expected), source="file:x")  # exact match passes


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", "truncated"])
def test_unreadable_weights_file_is_rejected(tmp_path, alex_file, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(alex_file.read_bytes()[:100_000] if content == "truncated" else content)
    with pytest.raises(UserError, match="cannot read weights file"):
        ALEXNET_SPEC.build(weights=str(path))


def test_weights_file_without_state_dict_or_absent(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(UserError, match="holds no state dict"):
        wts.load_file(tmp_path / "list.pth")
    with pytest.raises(UserError, match="does not exist"):
        ALEXNET_SPEC.build(weights=str(tmp_path / "absent.pth"))


def test_contradictory_or_pointless_options_are_rejected(alex_file):
    with pytest.raises(UserError, match="contradict"):
        ALEXNET_SPEC.build(pretrained=False, weights=str(alex_file))
    with pytest.raises(UserError, match="from scratch use finetune=full"):
        ALEXNET_SPEC.build(pretrained=False, finetune="head")
    with pytest.raises(UserError, match="in_adapter"):
        ALEXNET_SPEC.build(pretrained=False, in_adapter="mean")


@pytest.mark.parametrize("spec,size", [(ALEXNET_SPEC, 62), (VGG16_SPEC, 31), (VGG16_SPEC, 28)])
def test_image_size_below_minimum_is_rejected(spec, size):
    with pytest.raises(UserError, match="needs image_size >= "):
        spec.build(pretrained=False, image_size=size)


def _assert_min_size_is_tight(features, size):
    assert features(torch.zeros(1, 3, size, size)).shape[-2:] == (1, 1)
    with pytest.raises(RuntimeError):  # one pixel less and a pooling layer gets an empty input
        features(torch.zeros(1, 3, size - 1, size - 1))


def test_alexnet_min_image_size_is_the_smallest_that_survives_the_features():
    _assert_min_size_is_tight(ALEXNET.build(weights=None).features, ALEXNET.min_image_size)


@pytest.mark.parametrize("size,channels", [(28, 3), (32, 3), (64, 1), (224, 3)])
def test_input_adapter_shapes_and_normalisation(size, channels):
    black = torch.full((2, 1, 28, 28), -1.0)
    out = InputAdapter(image_size=size, channels=channels, mean=STATS[0], std=STATS[1])(black)
    assert out.shape == (2, channels, size, size)
    mean = torch.tensor((0.485, 0.456, 0.406)) if channels == 3 else torch.tensor([0.449])
    std = torch.tensor((0.229, 0.224, 0.225)) if channels == 3 else torch.tensor([0.226])
    # black (-1) -> 0 -> (0 - mean) / std: a few roundings (K = 4) of values of that size, worst case
    assert_within_rounding(out[0, :, 0, 0], (0 - mean) / std, 4, worst_case=True)


@pytest.mark.parametrize("adapter,size", [("repeat", 64), ("sum", 63), ("repeat", 224), ("sum", 224)])
def test_alexnet_forward_shapes(adapter, size):
    m = ALEXNET_SPEC.build(pretrained=False, in_adapter=adapter, image_size=size).eval()
    assert m.net.features[0].in_channels == (1 if adapter == "sum" else 3)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert m(_x()).shape == (2, 10)


def test_vgg16_forward_shapes():
    m = VGG16_SPEC.build(pretrained=False).eval()  # built once: 138M parameters
    assert m.adapter.image_size == 32 and m.weights_source is None and m.finetune == "full"
    with torch.no_grad():
        _assert_min_size_is_tight(m.net.features, VGG16.min_image_size)
        assert m(_x()).shape == (2, 10)
        m.adapter = InputAdapter(image_size=224, channels=3, mean=STATS[0], std=STATS[1])
        assert m(_x(1)).shape == (1, 10)
        m.net.features[0] = sum_first_conv(m.net.features[0], *STATS)
        m.adapter = InputAdapter(image_size=48, channels=1, mean=STATS[0], std=STATS[1])
        assert m(_x()).shape == (2, 10)


def test_sum_adapter_matches_repeat_away_from_the_border():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    x = _x()
    rep = conv(InputAdapter(image_size=32, channels=3, mean=STATS[0], std=STATS[1])(x))
    one = sum_first_conv(conv, *STATS)(InputAdapter(image_size=32, channels=1, mean=STATS[0], std=STATS[1])(x))
    # away from the border: the 27 products of 3 equal channels, or 9 products of weights summed over the 3
    # channels: K = 27 + 3 roundings, worst case, of each output's sum of |terms| (the conv of |input| by |W|)
    grey = InputAdapter(image_size=32, channels=3, mean=STATS[0], std=STATS[1])(x)
    terms = F.conv2d(grey.abs(), conv.weight.abs(), conv.bias.abs(), padding=1).detach()
    inner = (..., slice(1, -1), slice(1, -1))
    assert_within_rounding(one[inner], rep[inner], 30, magnitude=terms[inner], worst_case=True)
    # the zero padding means a different grey per channel: at the border a real difference, far beyond rounding
    assert ((one - rep).abs() > 100 * rounding_bound(30, 1.0) * terms).any()


@pytest.mark.parametrize("adapter", ["repeat", "sum"])
def test_head_finetune_trains_only_the_classifier(alex_file, adapter):
    m = ALEXNET_SPEC.build(weights=str(alex_file), finetune="head", in_adapter=adapter)
    assert not any(p.requires_grad for p in m.net.features.parameters())
    torch.nn.functional.cross_entropy(m(_x()), torch.tensor([1, 2])).backward()
    assert all(p.grad is None for p in m.net.features.parameters())
    assert all(p.grad is not None for p in m.net.classifier.parameters())
    (group,) = m.param_groups(0.01)
    assert group["lr"] == 0.01 and len(group["params"]) == len(list(m.net.classifier.parameters()))


def test_discriminative_and_full_param_groups(alex_file):
    m = ALEXNET_SPEC.build(weights=str(alex_file), finetune="discriminative", backbone_lr_scale=0.2)
    backbone, head = m.param_groups(1e-3)
    assert backbone["lr"] == pytest.approx(2e-4) and head["lr"] == 1e-3  # 1e-3 x 0.2 in float64: a rounding or two
    ids = [id(p) for g in (backbone, head) for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in m.parameters())  # every parameter exactly once
    assert isinstance(m, TransferNet)
    m.finetune = "full"
    (group,) = m.param_groups(1e-3)
    assert len(group["params"]) == len(list(m.parameters()))


def test_corrupt_cached_file_is_rejected(tmp_path):
    cached = wts.cache_file(ALEXNET.weights)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"half a download")
    with pytest.raises(UserError, match=r"cannot read cached weights file .*delete it"):
        ALEXNET_SPEC.build()


@pytest.mark.parametrize("finetune", ["full", "discriminative"])
def test_short_train_on_real_data_records_the_weights_source(tmp_path, data_dir, alex_file, finetune):
    from helpers import TINY

    from mnistbench.config import resolve
    from mnistbench.run import train
    cfg = resolve({**TINY, "model": "alexnet", "weights": str(alex_file), "finetune": finetune,
                   "train_limit": 64, "batch_size": 32, "test_limit": 64, "val_size": 64,
                   "data_dir": str(data_dir), "out": str(tmp_path / "run")})
    s = train(cfg)
    assert s["weights_source"] == f"file:{alex_file.resolve()}" and s["epochs_completed"] == 1
    assert sum(map(sum, s["confusion_matrix"])) == 64 and s["flops_per_image"] > 0


@pytest.mark.parametrize("spec", [ALEXNET_SPEC, VGG16_SPEC], ids=["alexnet", "vgg16"])
def test_from_scratch_he_init_and_torchvision_init(spec):
    """From scratch, every conv/linear weight is Kaiming-normal for ReLU (std sqrt(2 / fan_in)), biases zero and
    the last layer small; init=torchvision keeps torchvision's own (AlexNet: PyTorch's default, much smaller)."""
    torch.manual_seed(0)
    he = spec.build(pretrained=False)
    layers = [m for m in he.net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    # sampling, not rounding: the std of N >= 1,728 draws (the smallest layer, VGG16's first conv) is within
    # 1 / sqrt(2N) = 1.7 % of sigma per standard error, so rel=0.1 is 5.9 of them (a chance failure ~1e-8); a
    # wrong rule (no factor 2, fan-out for fan-in) is off by 29 % or more
    for m in layers[:-1]:
        fan_in = m.weight[0].numel()
        assert m.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.1)
        assert not m.bias.any()
    assert layers[-1].weight.std().item() == pytest.approx(0.01, rel=0.1)
    torch.manual_seed(0)
    tv = spec.build(pretrained=False, init="torchvision")
    first = next(m for m in tv.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert not torch.allclose(first.weight.std(), layers[0].weight.std(), rtol=0.1)
    with pytest.raises(UserError, match="init must be one of"):
        spec.build(pretrained=False, init="xavier")
