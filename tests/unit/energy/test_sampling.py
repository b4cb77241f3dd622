import pytest
import torch

from energybench.core.errors import UserError
from energybench.energy.energies import joint_energy, marginal_energy
from energybench.energy.sgld import ClassGaussianInit, ReplayBuffer, SGLDConfig, UniformInit, sgld


class Quadratic(torch.nn.Module):
    """logits_k = -||x - c_k||^2 / 2: E(x, y) is a quadratic with its minimum at c_y."""

    def __init__(self, centres):
        super().__init__()
        self.centres = centres  # (K, D)

    def forward(self, x):
        flat = x.flatten(1)
        return -0.5 * torch.cdist(flat, self.centres).pow(2)


def test_noise_free_sgld_is_gradient_descent_on_the_chosen_energy():
    gen = torch.Generator().manual_seed(0)
    centres = torch.rand(3, 12, generator=gen)
    model = Quadratic(centres)
    x0 = torch.rand(5, 3, 2, 2, generator=gen)
    y = torch.tensor([0, 1, 2, 0, 1])
    cfg = SGLDConfig(steps=1, step_size=0.1, noise=0.0, target="joint", clamp=False)
    x1 = sgld(model, x0, cfg, torch.Generator().manual_seed(1), y)
    # grad_x E(x, y) = x - c_y
    expected = x0 - 0.1 * (x0.flatten(1) - centres[y]).view_as(x0)
    torch.testing.assert_close(x1, expected)
    many = sgld(model, x0, SGLDConfig(steps=200, step_size=0.1, noise=0.0, target="joint",
                                      clamp=False), torch.Generator(), y)
    torch.testing.assert_close(many.flatten(1), centres[y], atol=1e-4, rtol=0)


def test_sgld_noise_is_separate_from_step_size():
    model = Quadratic(torch.zeros(2, 3 * 8 * 8))
    x0 = torch.full((64, 3, 8, 8), 0.5)
    cfg = SGLDConfig(steps=1, step_size=0.0, noise=0.01, clamp=False)
    x1 = sgld(model, x0, cfg, torch.Generator().manual_seed(0))
    assert (x1 - x0).std().item() == pytest.approx(0.01, rel=0.05)


def test_sgld_lowers_energy_and_stays_in_range(trained_model):
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(32, 3, 32, 32, generator=gen)
    y = torch.arange(32) % 10
    for target in ("marginal", "joint", "conditional"):
        x = sgld(trained_model, x0, SGLDConfig(steps=10, step_size=0.05, noise=0.001,
                                               target=target), gen, y)
        assert x.min() >= 0 and x.max() <= 1 and torch.isfinite(x).all()
        with torch.no_grad():
            before, after = trained_model(x0), trained_model(x)
        if target == "marginal":
            assert marginal_energy(after).mean() < marginal_energy(before).mean()
        else:
            assert joint_energy(after, y).mean() < joint_energy(before, y).mean()
    with pytest.raises(UserError, match="needs labels"):
        sgld(trained_model, x0, SGLDConfig(target="joint"), gen)


def test_class_gaussian_fits_per_class_mean_and_covariance():
    gen = torch.Generator().manual_seed(0)
    # Two classes in 3x2x2 = 12 dims, with different means and correlated pixels.
    base = torch.randn(4000, 12, generator=gen) @ (torch.eye(12) + 0.5 * torch.ones(12, 12) / 12)
    labels = torch.arange(4000) % 2
    images = (128 + 20 * base + 40 * labels[:, None]).clamp(0, 255).to(torch.uint8)
    init = ClassGaussianInit(images.view(4000, 3, 2, 2), labels, 2, torch.device("cpu"), jitter=1e-6)
    draws = init.sample(torch.ones(20000, dtype=torch.long), torch.Generator().manual_seed(1))
    real = images[labels == 1].double() / 255
    torch.testing.assert_close(draws.flatten(1).double().mean(0), real.mean(0), atol=2e-3, rtol=0)
    emp = torch.cov(draws.flatten(1).double().T)
    torch.testing.assert_close(emp, torch.cov(real.T), atol=5e-4, rtol=0)


def test_replay_buffer_reinitialises_at_the_given_rate_and_round_trips():
    gen = torch.Generator().manual_seed(0)
    buf = ReplayBuffer(1000, UniformInit((3, 4, 4)), 10, torch.device("cpu"), 0.25, gen)
    buf.images.zero_()  # mark every chain, so fresh draws are recognisable
    x0, idx = buf.draw(4000, gen)
    fresh = (x0.flatten(1).abs().sum(1) > 0).float().mean().item()
    assert fresh == pytest.approx(0.25, abs=0.03)
    buf.write(idx, torch.ones_like(x0))
    state = buf.state_dict()
    other = ReplayBuffer(1000, UniformInit((3, 4, 4)), 10, torch.device("cpu"), 0.25,
                         torch.Generator().manual_seed(5))
    other.load_state_dict(state)
    assert torch.equal(other.images, buf.images) and torch.equal(other.labels, buf.labels)
    with pytest.raises(UserError, match="reinit probability"):
        ReplayBuffer(10, UniformInit(), 10, torch.device("cpu"), 1.5, gen)


def test_buffer_writes_keep_the_last_of_repeated_indices():
    """Against a plain Python loop (sequential assignment): repeated indices keep the last value,
    with several threads and many repeats."""
    from energybench.energy.sgld import assign_last

    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 50, (4000,), generator=gen)
    values = torch.randn(4000, 3, 8, 8, generator=gen)
    expected = torch.zeros(50, 3, 8, 8)
    for i, v in zip(idx.tolist(), values):
        expected[i] = v
    got = torch.zeros(50, 3, 8, 8)
    assign_last(got, idx, values)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("precision, expected", [("float32", torch.float32), ("bfloat16", torch.bfloat16)])
def test_attack_and_sgld_loops_follow_the_inner_precision(precision, expected):
    """Inside a bfloat16 autocast step (CPU autocast here, CUDA in training), attacks and SGLD run
    in float32 unless run.inner_precision asks for bfloat16."""
    import torch.nn.functional as F

    from energybench.attacks.pgd import PGDConfig, pgd
    from energybench.core.runtime import inner_loop_precision
    from energybench.energy.sgld import SGLDConfig, sgld
    from energybench.models import create_model

    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = create_model("tiny-cnn", width=8)

        def forward(self, x):
            out = self.inner(x)
            seen.append(out.dtype)
            return out

    model, gen = Spy(), torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16), inner_loop_precision(precision):
        pgd(model, x, y, PGDConfig(steps=2), gen,
            loss_fn=lambda logits, y: F.cross_entropy(logits.float(), y, reduction="sum"))
        sgld(model, x, SGLDConfig(steps=2), gen)
        outside = model(x).dtype
    assert set(seen[:-1]) == {expected} and outside == torch.bfloat16
