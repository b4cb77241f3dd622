"""Energies of a classifier's logits (JEAT paper eq. 12-13).

For logits f(x) of shape (N, K):
    E(x, y) = -f(x)[y]                      joint energy, shape (N,)
    E(x)    = -logsumexp_k f(x)[k]          marginal energy, shape (N,)
    cross-entropy(f(x), y) = E(x, y) - E(x)
"""

from __future__ import annotations

import torch


def joint_energy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """E(x, y) = -f(x)[y]. logits (N, K), y (N,) int64 -> (N,)."""
    return -logits.gather(1, y.view(-1, 1)).squeeze(1)


def marginal_energy(logits: torch.Tensor) -> torch.Tensor:
    """E(x) = -logsumexp_k f(x)[k]. logits (N, K) -> (N,)."""
    return -torch.logsumexp(logits, dim=1)


def conditional_nll(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-log p(y|x) = E(x, y) - E(x), per example (N,); equals cross-entropy."""
    return joint_energy(logits, y) - marginal_energy(logits)


def logit_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - max_{k != y} z_k per example: logits (N, K), y (N,) -> (N,); < 0 when misclassified.
    Equals E(x, k*) - E(x, y) for the best other class k*."""
    true = logits.gather(1, y.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, y.view(-1, 1), float("-inf"))
    return true - others.max(1).values
