"""Do two models differ beyond noise? Paired tests on per-image outcomes of the same test images.

    mcnemar_exact(a, b)       per-image correctness (bool (N,)) of two models on the same images:
                              the exact (binomial) McNemar test on the discordant images, two-sided
    paired_bootstrap(a, b)    per-image scores (float (N,)) on the same images: a percentile
                              bootstrap interval of the mean difference, resampling images
    compare(a, b)             the test that fits the values' type, as a `Comparison`

Several seeds of each model are compared by pooling matched (image, seed) pairs: seed i of one
model with seed i of the other, on the same images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LEVEL = 0.05  # two-sided significance level of every comparison


def _log_binomial_pmf(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2)


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> dict:
    """a, b: bool (N,) per-image correctness of two models on the same images. Under the null
    hypothesis (equal accuracy) the images one model gets right and the other wrong split
    Binomial(n01 + n10, 1/2); p = 2 * P(X <= min(n01, n10)), capped at 1."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes of different lengths: {a.shape} vs {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n, low = only_a + only_b, min(only_a, only_b)
    if n == 0:
        p = 1.0
    else:
        logs = [_log_binomial_pmf(n, k) for k in range(low + 1)]
        top = max(logs)
        p = min(1.0, 2 * math.exp(top) * sum(math.exp(v - top) for v in logs))
    return {"test": "McNemar exact", "only_first": only_a, "only_second": only_b, "pairs": len(a), "p": p}


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = 2000, seed: int = 0,
                     level: float = LEVEL) -> dict:
    """a, b: float (N,) per-image values of two models on the same images. The (1 - level)
    percentile interval of mean(a - b) over `resamples` resamplings of the images."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if d.ndim != 1 or len(d) == 0:
        raise ValueError("paired bootstrap needs two equal-length, non-empty 1-d arrays")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 256):  # bounded memory: 256 resamples at a time
        stop = min(resamples, start + 256)
        idx = rng.integers(0, len(d), size=(stop - start, len(d)))
        means[start:stop] = d[idx].mean(1)
    low, high = np.quantile(means, [level / 2, 1 - level / 2])
    return {"test": "paired bootstrap", "difference": float(d.mean()), "low": float(low),
            "high": float(high), "pairs": len(d), "resamples": resamples}


@dataclass(frozen=True)
class Comparison:
    first: str
    second: str
    result: dict

    @property
    def significant(self) -> bool:
        r = self.result
        if r["test"] == "McNemar exact":
            return r["p"] < LEVEL
        return not (r["low"] <= 0.0 <= r["high"])

    @property
    def detail(self) -> str:
        """The test and its outcome, e.g. 'McNemar exact p = 0.0083 (142 vs 100 discordant images)'."""
        r = self.result
        if r["test"] == "McNemar exact":
            return f"McNemar exact p = {r['p']:.2g} ({r['only_first']} vs {r['only_second']} discordant images)"
        return (f"paired bootstrap 95% interval of the difference [{r['low']:.3g}, {r['high']:.3g}] "
                f"{'contains' if r['low'] <= 0.0 <= r['high'] else 'excludes'} 0")

    def describe(self) -> str:
        return f"{self.first} vs {self.second}: {self.detail}, {self.result['pairs']:,} image pairs"


def compare(first: str, a: np.ndarray, second: str, b: np.ndarray) -> Comparison:
    """McNemar for per-image correctness (bool), a paired bootstrap for per-image scores."""
    if np.asarray(a).dtype == bool:
        return Comparison(first, second, mcnemar_exact(a, b))
    return Comparison(first, second, paired_bootstrap(a, b))


def wilson_interval(p, n: int, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson score interval of accuracies p (scalar or array, in [0, 1]) measured on n images:
    (lower, upper). Unlike p ± stderr it stays inside [0, 1] and is not empty at 0% or 100%."""
    p = np.asarray(p, dtype=float)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half
