"""Tests for the from-scratch ViT: shapes, gradients, attention paths, permutation symmetry, size, config errors."""
import pytest
import torch
from numerics import assert_within_rounding, reduction_length, rounding_bound
from torch import nn

from mnistbench.config import FIELDS as RECIPE_KEYS
from mnistbench.errors import UserError
from mnistbench.models import vit

TINY = {"patch_size": 7, "dim": 32, "depth": 2, "heads": 4, "mlp_ratio": 2.0}


def _input(b: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, 28, 28, generator=g) * 2 - 1  # (B, 1, 28, 28) in [-1, 1]


def _permute_patches(x: torch.Tensor, p: int, perm: torch.Tensor) -> torch.Tensor:
    """Reorder the non-overlapping p x p patches of x (row-major grid order) by `perm`."""
    b, c, h, w = x.shape
    gh, gw = h // p, w // p
    patches = x.view(b, c, gh, p, gw, p).permute(0, 1, 2, 4, 3, 5).reshape(b, c, gh * gw, p, p)
    patches = patches[:, :, perm]
    return patches.view(b, c, gh, gw, p, p).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h, w)


@pytest.mark.parametrize("cfg", [{}, dict(TINY, patch_size=4)], ids=["default", "patch4"])
def test_output_shape(cfg):
    torch.manual_seed(0)
    model = vit.build(**cfg).eval()
    with torch.no_grad():
        out = model(_input(2))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = vit.build(**TINY)
    loss = nn.functional.cross_entropy(model(_input(4)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("heads", [1, 4])
def test_sdpa_matches_plain_softmax(heads):
    g = torch.Generator().manual_seed(heads)
    q, k, v = (torch.randn(2, heads, 17, 8, generator=g) for _ in range(3))  # (B, h, T, d)
    # the same sums (q.k over d = 8, softmax over T = 17, weights x v over 17) in other kernels, worst case: a score's
    # error (relative to |q|.|k| / sqrt(d)) moves its weight relatively, so the output's terms are max |v| times
    # (1 + the largest |q|.|k| / sqrt(d))
    magnitude = v.abs().max() * (1 + (q.abs() @ k.abs().transpose(-1, -2)).max() / 8 ** 0.5)
    assert_within_rounding(vit.attention(q, k, v, fused=True), vit.attention(q, k, v, fused=False), 8 + 17 + 17,
                           magnitude=magnitude.item(), worst_case=True)


@pytest.mark.parametrize("heads", [1, 4])
def test_model_attention_paths_agree(heads, monkeypatch):
    torch.manual_seed(0)
    model = vit.build(**dict(TINY, heads=heads)).eval()
    x = _input(3)
    calls = []
    real = vit.attention
    monkeypatch.setattr(vit, "attention", lambda q, k, v, *, fused: calls.append(fused) or real(q, k, v, fused=fused))
    out = {}
    with torch.no_grad():
        for path in vit.ATTENTION:
            model.set_attention(path)
            out[path] = model(x)
    # auto takes the plain path on CPU (measured faster there), sdpa and plain take their own
    assert calls == [False] * TINY["depth"] + [True] * TINY["depth"] + [False] * TINY["depth"]
    assert torch.equal(out["auto"], out["plain"])  # the same path
    # sdpa: each block's attention sums in another kernel; the network's sums (numerics.reduction_length, plus
    # attention's 8 + 17 + 17 per block) bound the logits' difference, typical case, relative to max |logit|
    k = reduction_length(model, x, backward=False) + 42 * TINY["depth"]
    assert_within_rounding(out["sdpa"], out["plain"], k)


def test_unknown_attention_is_one_clear_error():
    with pytest.raises(UserError, match="attention must be one of auto, sdpa, plain"):
        vit.build(**dict(TINY, attention="flash"))


@pytest.mark.parametrize("patch_size", [7, 4])
def test_without_positions_patch_order_does_not_matter(patch_size):
    torch.manual_seed(0)
    model = vit.build(**dict(TINY, patch_size=patch_size)).eval()
    n = (28 // patch_size) ** 2
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    x = _input(3)
    x_perm = _permute_patches(x, patch_size, perm)
    assert not torch.equal(x, x_perm)
    with torch.no_grad():
        # the 0.02 init leaves the logits nearly constant; larger weights make the check meaningful
        for q in model.parameters():
            q.normal_(std=0.3)
        model.pos.zero_()
        # permuted tokens: the same sums in another order, within the typical rounding bound of the network's sums
        # (numerics.py); a real dependence (another image, positions) moves the logits by far more than 100 x that
        dim, tokens = model.cls.shape[-1], n + 1  # per block: 2 layer norms' 2 sums of dim, attention's d + 2T
        k = reduction_length(model, x, backward=False) + (5 * dim + 2 * tokens) * len(model.blocks)
        bound = rounding_bound(k, model(x).abs().max().item())
        assert (model(x) - model(_input(3, seed=1))).abs().max() > 100 * bound
        assert_within_rounding(model(x_perm), model(x), k)
        # counter-check: with positions the CLS output does depend on where each patch is
        model.pos.normal_()
        assert (model(x_perm) - model(x)).abs().max() > 100 * rounding_bound(k, model(x).abs().max().item())


@pytest.mark.parametrize("cfg", [TINY, {"patch_size": 4, "dim": 48, "depth": 3, "heads": 6, "mlp_ratio": 4.0}, {}],
                         ids=["tiny", "patch4", "default"])
def test_parameter_count_matches_formula(cfg):
    args = {**vit.SPEC.arg_defaults(), **cfg}
    p, d, depth = args["patch_size"], args["dim"], args["depth"]
    hidden = int(d * args["mlp_ratio"])
    n = (28 // p) ** 2
    embed = (p * p * d + d) + d + (n + 1) * d  # conv weight + bias, CLS token, positions
    block = (
        2 * (2 * d)  # two LayerNorms, weight + bias each
        + (d * 3 * d + 3 * d)  # qkv
        + (d * d + d)  # output projection
        + (d * hidden + hidden) + (hidden * d + d)  # MLP
    )
    head = 2 * d + (d * 10 + 10)  # final LayerNorm, linear head
    expected = embed + depth * block + head
    assert sum(q.numel() for q in vit.build(**cfg).parameters()) == expected


@pytest.mark.parametrize("cfg, words", [
    ({"patch_size": 5}, "patch_size"),
    ({"patch_size": 14}, "patch_size"),
    ({"dim": 128, "heads": 3}, "heads=3"),
    ({"dim": 0}, "dim"),
    ({"depth": 0}, "depth"),
    ({"heads": 0}, "heads"),
    ({"mlp_ratio": 0.0}, "mlp_ratio"),
    ({"dropout": 1.0}, "dropout"),
    ({"dropout": -0.1}, "dropout"),
])
def test_invalid_config_raises_user_error(cfg, words):
    with pytest.raises(UserError, match=words):
        vit.build(**cfg)


def test_spec_is_consistent():
    spec = vit.SPEC
    assert spec.name == "vit"
    assert set(spec.arg_defaults()) == {"patch_size", "dim", "depth", "heads", "mlp_ratio", "dropout", "attention"}
    assert {"default", "long"} <= set(spec.recipes)
    for name, recipe in spec.recipes.items():
        assert set(recipe) <= set(RECIPE_KEYS), name
    assert spec.recipes["long"]["epochs"] > spec.recipes["default"]["epochs"]
