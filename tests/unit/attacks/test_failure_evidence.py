"""Attack-failure checks raise on evidence, not on one image: incomplete optimisation's binomial
rule against scipy's binomial distribution, and the gradient-direction probe on small models whose
gradients are honest, noise or zero."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from scipy.stats import binom

from energybench.attacks import diagnostics
from energybench.attacks.broken_models import NoiseGradient

pytestmark = pytest.mark.synthetic


@pytest.mark.parametrize("count, n, rate", [(0, 32, 0.01), (1, 32, 0.01), (2, 64, 0.01), (4, 32, 0.01),
                                            (10, 300, 0.01), (30, 128, 0.05)])
def test_binomial_tail_is_scipys_survival_function(count, n, rate):
    assert diagnostics.binomial_tail(count, n, rate) == pytest.approx(binom.sf(count - 1, n, rate), rel=1e-9, abs=1e-15)


def _margins(n: int, still: int, steps: int = 20):
    """Margins (steps, N) of N surviving images: `still` of them fall steadily to the last step,
    the others fall in the first half and then stay."""
    t = torch.arange(steps, dtype=torch.float32).view(-1, 1)
    settled = (5.0 - t.clamp(max=steps // 2) * 0.2).expand(steps, n - still)
    moving = (5.0 - t * 0.2).expand(steps, still)
    m = torch.cat([moving, settled], 1)
    return m, m[-1] - 0.2 * (torch.arange(n) < still)


@pytest.mark.parametrize("n", [32, 64, 128, 300])
def test_incomplete_optimisation_needs_two_images_and_a_significant_excess(n):
    survived = torch.ones(n, dtype=torch.bool)
    for still in range(0, 12):
        margins, final = _margins(n, still)
        check = diagnostics.incomplete_optimisation(margins, final, survived)
        assert check.evidence["still_improving"] == still
        expected = still >= 2 and bool(binom.sf(still - 1, n, diagnostics.HONEST_RISING_RATE) < diagnostics.RISING_ALPHA)
        assert check.flag is expected, (n, still, check.evidence)
    one = diagnostics.incomplete_optimisation(*_margins(n, 1), survived)
    assert one.flag is False  # the old share rule raised this at n < 100: one image is no evidence


class Linear(nn.Module):
    def __init__(self, classes=10, shape=(3, 8, 8)):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(classes, int(torch.tensor(shape).prod()), generator=gen) * 0.05)

    def forward(self, x):
        return x.flatten(1) @ self.weight.T


class Flat(nn.Module):
    """Logits that do not depend on the input: every gradient is zero."""

    def forward(self, x):
        return torch.zeros(len(x), 10) + 0 * x.flatten(1)[:, :10]


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(1)
    return torch.rand(16, 3, 8, 8, generator=gen) * 0.8 + 0.1, torch.randint(0, 10, (16,), generator=gen)


@pytest.mark.parametrize("norm, step", [("Linf", 2 / 255), ("L2", 0.125)])
def test_an_honest_gradient_beats_random_steps_and_noise_does_not(batch, norm, step):
    x, y = batch
    torch.manual_seed(0)
    honest = diagnostics.gradient_direction(Linear(), x, y, step, norm, "ce", seed=3)
    assert honest.flag is False and honest.evidence["gradient_beats_every_random_step"] == 16
    noise = diagnostics.gradient_direction(NoiseGradient(Linear()), x, y, step, norm, "ce", seed=3)
    assert noise.flag is True and noise.evidence["considered"] == 16
    assert noise.as_record()["advice"]


def test_the_probe_does_not_judge_zero_gradients(batch):
    x, y = batch
    flat = diagnostics.gradient_direction(Flat(), x, y, 2 / 255, "Linf", "ce", seed=0)
    assert flat.flag is None and "fewer than" in flat.note and flat.evidence["considered"] == 0


def test_the_probes_random_steps_have_the_gradient_steps_size():
    """Each random direction, stepped as PGD steps a gradient, moves the image as far as the
    gradient's step: every pixel by exactly the step (L-inf), or the step's L2 length (L2)."""
    from energybench.attacks.pgd import ascent_step

    shape = torch.Size((4, 3, 8, 8))
    x = torch.zeros(shape)
    for norm, step in (("Linf", 2 / 255), ("L2", 0.125)):
        for d in list(diagnostics._random_directions(shape, 5, norm, 0)) + [torch.randn(shape)]:
            moved = ascent_step(x.clone(), d, step, norm) - x
            if norm == "Linf":
                assert torch.allclose(moved.abs(), torch.full(shape, step))
            else:
                assert torch.allclose(moved.flatten(1).norm(dim=1), torch.full((4,), step))
