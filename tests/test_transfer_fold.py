"""TransferNet folds the average pool into the first classifier layer on small inputs: the same outputs
and gradients as torchvision's own forward, which it keeps wherever folding would not be exact or cheaper."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mnistbench.models.transfer import ALEXNET, VGG16, build_transfer, pooled_linear


def torchvision_forward(model, x):
    """What torchvision's network computes: features, avgpool, flatten, classifier."""
    return model.net(model.adapter(x))


def grads(model, logits, y):
    return torch.autograd.grad(F.cross_entropy(logits, y), [p for p in model.parameters() if p.requires_grad])


# feature maps 1 x 1 (pooled to 6 x 6 / 7 x 7: 36 / 49 copies) and 2 x 2 (AlexNet at 96 px)
@pytest.mark.parametrize("bb,size", [(ALEXNET, 64), (ALEXNET, 96), (VGG16, 32)])
def test_folded_forward_and_gradients_equal_torchvisions(bb, size):
    torch.manual_seed(0)
    model = build_transfer(bb, image_size=size, pretrained=False, dropout=0.0)
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 3, 7, 9])
    ours, theirs = model(x), torchvision_forward(model, x)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-4)
    for a, b in zip(grads(model, ours, y), grads(model, theirs, y)):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-3)
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
    want = linear(torch.flatten(F.adaptive_avg_pool2d(features, (out, out)), 1))
    assert torch.allclose(pooled_linear(features, (out, out), linear), want, atol=1e-5)


def test_active_dropout_before_the_layer_keeps_torchvisions_path():
    # AlexNet's classifier starts with dropout: in training it masks each pooled copy apart, so no fold
    torch.manual_seed(0)
    model = build_transfer(ALEXNET, image_size=64, pretrained=False, dropout=0.5).train()
    x = torch.randn(4, 1, 28, 28)
    torch.manual_seed(1)
    ours = model(x)
    torch.manual_seed(1)
    assert torch.equal(ours, torchvision_forward(model, x))
    model.eval()  # dropout off: folded, same numbers
    assert torch.allclose(model(x), torchvision_forward(model, x), atol=1e-5, rtol=1e-4)


def test_the_fold_under_inference_mode_then_training():
    torch.manual_seed(0)
    model = build_transfer(ALEXNET, image_size=64, pretrained=False, dropout=0.0)
    x = torch.randn(2, 1, 28, 28)
    with torch.inference_mode():
        before = model(x)
    logits = model(x)
    assert torch.equal(before, logits.detach())
    assert all(torch.isfinite(g).all() for g in grads(model, logits, torch.tensor([1, 2])))
