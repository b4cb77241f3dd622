"""Energies of a classifier's logits (JEAT paper eq. 12-13).

For logits f(x) of shape (N, K):
    E(x, y) = -f(x)[y]                      joint energy, shape (N,)
    E(x)    = -logsumexp_k f(x)[k]          marginal energy, shape (N,)
    cross-entropy(f(x), y) = E(x, y) - E(x)

Non-finite logits are no answer (`refuse_nonfinite`): every metric and attack stops on them, or
counts those images wrong where the user asked for that.
"""

from __future__ import annotations

import numpy as np
import torch

from energybench.core.errors import UserError, option


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


NONFINITE_POLICIES = ("refuse", "wrong")


def refuse_nonfinite(metric: str, nonfinite: np.ndarray, policy: str | None = None) -> int:
    """Non-finite logits are no answer: a metric whose images got NaN or infinite logits (flags
    (N,) bool) stops with one line instead of counting them as class 0. An accuracy metric passes
    the user's policy (EvalContext.nonfinite): with 'wrong' it goes on, counts those images as
    wrong and records the returned count; other metrics (policy None) always stop."""
    count = int(np.sum(nonfinite))
    if count and policy != "wrong":
        go_on = f" or pass {option('nonfinite', 'wrong')} to count them as wrong" if policy == "refuse" else ""
        raise UserError(f"{metric}: the model returned NaN or infinite logits for {count} of "
                         f"{len(nonfinite)} images; nothing is computed from them (check its weights and "
                         f"its input normalisation{go_on})")
    return count
