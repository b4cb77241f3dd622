import torch
import torch.nn.functional as F

from energybench.energy.energies import conditional_nll, joint_energy, marginal_energy


def test_cross_entropy_is_joint_minus_marginal_energy():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 10, generator=gen, dtype=torch.float64) * 5
    y = torch.randint(0, 10, (64,), generator=gen)
    ce = F.cross_entropy(logits, y, reduction="none")
    torch.testing.assert_close(conditional_nll(logits, y), ce)
    torch.testing.assert_close(joint_energy(logits, y) - marginal_energy(logits), ce)


def test_energy_definitions_and_bounds():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([2, 0])
    assert joint_energy(logits, y).tolist() == [-3.0, 0.0]
    expected = -torch.log(torch.exp(logits).sum(1))
    torch.testing.assert_close(marginal_energy(logits), expected)
    # E(x) <= E(x, y) for every y: logsumexp is at least every logit.
    for k in range(3):
        assert (marginal_energy(logits) <= joint_energy(logits, torch.full((2,), k))).all()


def test_energy_is_shift_covariant():
    """Adding c to all logits lowers both energies by c and leaves p(y|x) unchanged."""
    logits = torch.randn(8, 5, dtype=torch.float64)
    y = torch.randint(0, 5, (8,))
    torch.testing.assert_close(joint_energy(logits + 3, y), joint_energy(logits, y) - 3)
    torch.testing.assert_close(marginal_energy(logits + 3), marginal_energy(logits) - 3)
    torch.testing.assert_close(conditional_nll(logits + 3, y), conditional_nll(logits, y))
