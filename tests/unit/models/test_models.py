"""Architectures against independent reference computations (torch.nn.functional, written out here)
with the same weights: residual blocks with batch norm on and off, and the parameter counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from energybench.models import create_model
from energybench.models.preact_resnet import PreActBlock
from energybench.models.wide_resnet import WideBasic


def _act(x, kind):
    return F.relu(x) if kind == "relu" else F.leaky_relu(x, 0.2)


def _bn(x, bn):
    if not hasattr(bn, "running_mean"):
        return x
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _wide_reference(block: WideBasic, x, kind):
    """out = conv2(act(bn2(conv1(act(bn1(x)))))) + shortcut(x), x itself untouched."""
    h = F.conv2d(_act(_bn(x, block.bn1), kind), block.conv1.weight, block.conv1.bias, padding=1)
    h = F.conv2d(_act(_bn(h, block.bn2), kind), block.conv2.weight, block.conv2.bias,
                 stride=block.conv2.stride, padding=1)
    s = x if isinstance(block.shortcut, torch.nn.Identity) else F.conv2d(
        x, block.shortcut.weight, block.shortcut.bias, stride=block.shortcut.stride)
    return h + s


def _preact_reference(block: PreActBlock, x, kind):
    """a = act(bn1(x)); out = conv2(act(bn2(conv1(a)))) + (conv_sc(a) or x)."""
    a = _act(_bn(x, block.bn1), kind)
    h = F.conv2d(a, block.conv1.weight, stride=block.conv1.stride, padding=1)
    h = F.conv2d(_act(_bn(h, block.bn2), kind), block.conv2.weight, padding=1)
    s = x if block.shortcut is None else F.conv2d(a, block.shortcut.weight, stride=block.shortcut.stride)
    return h + s


def _randomise_bn(block):
    for m in block.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("kind", ["relu", "leaky_relu"])
@pytest.mark.parametrize("c_in, c_out, stride", [(8, 8, 1), (8, 16, 2)])
def test_residual_blocks_match_a_reference(batch_norm, kind, c_in, c_out, stride):
    torch.manual_seed(0)
    x = torch.randn(4, c_in, 8, 8)  # negative inputs: an in-place activation would change x
    for block, reference in [(WideBasic(c_in, c_out, stride, batch_norm, kind, 0.0), _wide_reference),
                             (PreActBlock(c_in, c_out, stride, batch_norm, kind), _preact_reference)]:
        _randomise_bn(block)
        block.eval()
        with torch.no_grad():
            expected = reference(block, x.clone(), kind)
            given = x.clone()
            out = block(given)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        assert torch.equal(given, x), "the block modified its input"


def _wrn_parameters(depth: int, width: int, classes: int, batch_norm: bool) -> int:
    """Parameters of WRN-depth-width with conv biases (JEM's variant), counted by hand."""
    n = (depth - 4) // 6
    widths = [16, 16 * width, 32 * width, 64 * width]
    total = 3 * 16 * 9 + 16  # stem conv
    c_in = 16
    for stage in (1, 2, 3):
        c = widths[stage]
        for i in range(n):
            total += c_in * c * 9 + c + c * c * 9 + c  # conv1, conv2 with biases
            total += (2 * c_in + 2 * c) if batch_norm else 0  # bn1, bn2 affine
            if c_in != c or (i == 0 and stage > 1):
                total += c_in * c + c  # 1x1 shortcut
            c_in = c
    total += (2 * c_in if batch_norm else 0) + c_in * classes + classes
    return total


@pytest.mark.parametrize("batch_norm", [True, False])
def test_wrn_28_10_has_the_published_size(batch_norm):
    model = create_model("wrn-28-10", batch_norm=batch_norm)
    count = sum(p.numel() for p in model.parameters())
    assert count == _wrn_parameters(28, 10, 10, batch_norm)
    assert round(count / 1e6, 1) == 36.5  # "36.5M" (Zagoruyko & Komodakis 2016; JEM)


def test_every_model_says_what_it_is():
    """`energybench list models` shows each model's first docstring line: none may be empty."""
    from energybench.models import MODELS

    for name in MODELS.names():
        assert (MODELS.get(name).__doc__ or "").strip(), name
