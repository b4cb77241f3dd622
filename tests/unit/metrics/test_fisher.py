import pytest
import torch

from energybench.metrics.fisher import energy_of, fisher_terms


class SmoothNet(torch.nn.Module):
    """A small smooth (tanh) classifier on 3x4x4 inputs: its Hessians are not zero."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w1 = torch.nn.Parameter(torch.randn(48, 16, generator=gen) * 0.5)
        self.w2 = torch.nn.Parameter(torch.randn(16, 5, generator=gen))

    def forward(self, x):
        return torch.tanh(x.flatten(1) @ self.w1) @ self.w2


def reference_terms(model, x, y, kind):
    """Per-image gradient term and Hessian trace from torch.autograd.functional (no probes)."""
    grads, traces = [], []
    for xi, yi in zip(x, y):
        f = lambda z: energy_of(model(z.unsqueeze(0)), yi.view(1), kind).sum()  # noqa: E731
        g = torch.autograd.functional.jacobian(f, xi)
        h = torch.autograd.functional.hessian(f, xi).reshape(xi.numel(), xi.numel())
        grads.append(0.5 * g.pow(2).sum())
        traces.append(torch.trace(h))
    return torch.stack(grads), torch.stack(traces)


@pytest.mark.parametrize("kind", ["joint", "marginal"])
def test_exact_mode_matches_full_hessian(kind):
    model = SmoothNet().double()
    x = torch.rand(4, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3])
    g, t = fisher_terms(model, x, y, kind, probes=1, generator=None, exact=True)
    g_ref, t_ref = reference_terms(model, x, y, kind)
    torch.testing.assert_close(g, g_ref)
    torch.testing.assert_close(t, t_ref)
    assert t_ref.abs().min() > 1e-3  # the check is not vacuous


def test_hutchinson_is_unbiased_and_its_error_shrinks_with_probes():
    model = SmoothNet().double()
    x = torch.rand(64, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = torch.arange(64) % 5
    _, exact = fisher_terms(model, x, y, "marginal", 1, None, exact=True)
    errors = {}
    for probes in (4, 64):
        _, est = fisher_terms(model, x, y, "marginal", probes, torch.Generator().manual_seed(3))
        errors[probes] = (est - exact).pow(2).mean().sqrt().item()
    # Var of a Rademacher estimate falls as 1/probes: 16x the probes, ~4x smaller error.
    assert errors[64] < errors[4] / 2.5, errors
    # Averaged over images the estimate is close to the exact mean trace.
    _, est = fisher_terms(model, x, y, "marginal", 64, torch.Generator().manual_seed(4))
    assert abs(est.mean() - exact.mean()) < 0.1 * exact.abs().mean() + 1e-3


def test_relu_network_has_zero_joint_trace(trained_model, exact_test):
    """Piecewise-linear network: E(x, y) has zero Hessian almost everywhere; E(x) does not."""
    x = exact_test.images[:8].float() / 255
    y = exact_test.labels[:8]
    trained_model.eval()
    _, t_joint = fisher_terms(trained_model, x, y, "joint", 4, torch.Generator().manual_seed(0))
    _, t_marg = fisher_terms(trained_model, x, y, "marginal", 4, torch.Generator().manual_seed(0))
    assert t_joint.abs().max() < 1e-6 * (1 + t_marg.abs().max())
    assert t_marg.abs().max() > 0


def test_fisher_metrics_write_both_terms(trained_run, exact_npz, tmp_path):
    from energybench.evaluation.runner import evaluate

    records = {r["metric"]: r for r in evaluate(
        trained_run / "last.pt", ["jfs", "mfs"], data=str(exact_npz), n=32, batch_size=16,
        out_dir=tmp_path, log=lambda m: None)}
    for name in ("jfs", "mfs"):
        r = records[name]
        assert r["params"] == {"probes": 10, "exact_trace": False}
        assert r["value"] == pytest.approx(r["extra"]["grad_term"] - r["extra"]["trace_term"])
        assert r["stderr"] > 0 and r["unit"] == "score"
