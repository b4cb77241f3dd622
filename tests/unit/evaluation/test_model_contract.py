"""Models that break what the metrics rely on get one line, and unusual but valid models run:
cases a red-team round found as tracebacks."""

from __future__ import annotations

import pytest
import torch
from testkit import seeded_model, synthetic_npz

import energybench
from energybench.core.errors import UserError
from energybench.data import load_split

pytestmark = pytest.mark.synthetic


class IntegerLogits(torch.nn.Module):
    def forward(self, x):
        return (x.mean((2, 3))[:, :1].repeat(1, 10) * 10).to(torch.int8)


class DetachedLogits(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3 * 32 * 32, 10)

    def forward(self, x):
        return self.linear(x.flatten(1)).detach()


class SumOfPixels(torch.nn.Module):
    """Logits from the sum of the image: autograd returns an expanded (stride-0) input gradient."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(1, 10)

    def forward(self, x):
        return self.linear(x.sum((1, 2, 3))[:, None] / x[0].numel())


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(3 * 32 * 32, 10)

    def forward(self, x):
        return self.linear(x.flatten(1))


@pytest.fixture
def data(tmp_path):
    return str(synthetic_npz(tmp_path / "data.npz"))


def test_integer_logits_are_one_line(data, tmp_path):
    with pytest.raises(UserError, match="returns int8 logits; logits must be floating point"):
        energybench.evaluate(IntegerLogits(), data, metrics=["clean"], out_dir=tmp_path / "out", device="cpu")


def test_logits_without_an_input_gradient_serve_clean_accuracy_only(data, tmp_path):
    with pytest.raises(UserError, match="carry no gradient to its input"):
        energybench.evaluate(DetachedLogits(), data, metrics=["pgd20"], out_dir=tmp_path / "out", device="cpu")
    (record,) = energybench.evaluate(DetachedLogits(), data, metrics=["clean"], out_dir=tmp_path / "out",
                                     device="cpu")
    assert record["metric"] == "clean"


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_an_expanded_input_gradient_is_attacked(data, tmp_path, norm):
    (record,) = energybench.evaluate(SumOfPixels(), data, metrics=["pgd20"], out_dir=tmp_path / norm, device="cpu",
                                     norm=norm)
    assert 0.0 <= record["value"] <= 1.0


def test_the_joint_fisher_score_of_a_linear_classifier_has_a_zero_hessian_trace(data, tmp_path):
    """E(x, y) = -w_y.x - b_y is affine in x: tr(Hessian) = 0 exactly, and 1/2 ||grad||^2 = 1/2 ||w_y||^2."""
    model = Linear()
    (record,) = energybench.evaluate(model, data, metrics=["jfs"], out_dir=tmp_path / "out", device="cpu")
    assert record["extra"]["trace_term"] == 0.0
    labels = load_split(data, "test").labels
    expected = 0.5 * model.linear.weight.detach().pow(2).sum(1)[labels].mean().item()
    assert record["extra"]["grad_term"] == pytest.approx(expected, rel=1e-5)


def test_an_out_dir_given_as_bytes_is_a_path(data, tmp_path):
    (record,) = energybench.evaluate(seeded_model(), data, metrics=["clean"], device="cpu",
                                     out_dir=str(tmp_path / "bytes").encode())
    assert (tmp_path / "bytes").is_dir() and record["file"].startswith(str(tmp_path / "bytes"))
