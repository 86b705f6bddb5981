"""TransferNet folds the average pool into the first classifier layer on small inputs: the same outputs
and gradients as torchvision's own forward, which it keeps wherever folding would not be exact or cheaper."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from numerics import assert_within_rounding, reduction_length

from mnistbench.models.transfer import build
from mnistbench.models.transfer_nets import ALEXNET, VGG16, pooled_linear


def torchvision_forward(model, x):
    """What torchvision's network computes: features, avgpool, flatten, classifier."""
    return model.net(model.adapter(x))


def grads(model, logits, y):
    return torch.autograd.grad(F.cross_entropy(logits, y), [p for p in model.parameters() if p.requires_grad])


# feature maps 1 x 1 (pooled to 6 x 6 / 7 x 7: 36 / 49 copies) and 2 x 2 (AlexNet at 96 px)
@pytest.mark.parametrize("bb,size", [(ALEXNET, 64), (ALEXNET, 96), (VGG16, 32)])
def test_folded_forward_and_gradients_equal_torchvisions(bb, size):
    torch.manual_seed(0)
    model = build(bb.name, image_size=size, pretrained=False, dropout=0.0)
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 3, 7, 9])
    # The two paths add the same products in other orders. K: every layer's fan-in and weight-gradient sum
    # along the network (~30,000 for AlexNet at 96 px). In float64 they are the same function up to the
    # worst-case bound K * eps64 * |value| (~7e-12 relative; one image keeps it quick); in float32, the
    # precision it trains in, within the typical bound sqrt(K) * eps32 * |value| (~2e-5 relative), per tensor:
    # a gradient element near zero is a cancelled sum of terms of the tensor's size (numerics.py).
    for dtype, n, worst_case in ((torch.float64, 1, True), (torch.float32, 4, False)):
        model.to(dtype)
        xd = x[:n].to(dtype)
        k = reduction_length(model, xd, torchvision_forward)
        ours, theirs = model(xd), torchvision_forward(model, xd)
        assert_within_rounding(ours, theirs, k, worst_case=worst_case, what=f"{dtype} logits")
        for i, (a, b) in enumerate(zip(grads(model, ours, y[:n]), grads(model, theirs, y[:n]))):
            assert_within_rounding(a, b, k, worst_case=worst_case, what=f"{dtype} gradient {i}")
    # the fold is what ran: the classifier's first layer never saw the pooled (B, C * 36 or 49) input
    seen = []
    first = next(m for m in model.net.classifier if isinstance(m, torch.nn.Linear))
    handle = first.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    model(x)
    torchvision_forward(model, x)
    handle.remove()
    assert seen == [(4, first.in_features)]  # only torchvision's forward called the layer


# 3 x 3 -> 7 x 7 and 5 x 5 -> 6 x 6: bins that overlap, so a pooled cell averages two or four input cells
@pytest.mark.parametrize("side,out", [(3, 7), (5, 6), (1, 7)])
def test_pooled_linear_against_pool_then_linear(side, out):
    torch.manual_seed(0)
    features, linear = torch.randn(3, 5, side, side), torch.nn.Linear(5 * out * out, 7)
    pooled = torch.flatten(F.adaptive_avg_pool2d(features, (out, out)), 1)
    want = linear(pooled)
    # one linear layer over pooled cells, each the mean of at most 4 input cells: K = fan-in + 4; each output's
    # terms, in either order, add up to at most pool(|features|) @ |W|^T + |b|. Worst case, element by element.
    terms = torch.flatten(F.adaptive_avg_pool2d(features.abs(), (out, out)), 1) @ linear.weight.abs().T
    terms = terms + linear.bias.abs()
    assert_within_rounding(pooled_linear(features, (out, out), linear), want, linear.in_features + 4,
                           magnitude=terms.detach(), worst_case=True)


def test_active_dropout_before_the_layer_keeps_torchvisions_path():
    # AlexNet's classifier starts with dropout: in training it masks each pooled copy apart, so no fold
    torch.manual_seed(0)
    model = build("alexnet", image_size=64, pretrained=False, dropout=0.5).train()
    x = torch.randn(4, 1, 28, 28)
    torch.manual_seed(1)
    ours = model(x)
    torch.manual_seed(1)
    assert torch.equal(ours, torchvision_forward(model, x))
    model.eval()  # dropout off: folded, the same numbers up to the order of the sums (as in the test above)
    assert_within_rounding(model(x), torchvision_forward(model, x), reduction_length(model, x, torchvision_forward))


def test_the_fold_under_inference_mode_then_training():
    torch.manual_seed(0)
    model = build("alexnet", image_size=64, pretrained=False, dropout=0.0)
    x = torch.randn(2, 1, 28, 28)
    with torch.inference_mode():
        before = model(x)
    logits = model(x)
    assert torch.equal(before, logits.detach())
    assert all(torch.isfinite(g).all() for g in grads(model, logits, torch.tensor([1, 2])))
