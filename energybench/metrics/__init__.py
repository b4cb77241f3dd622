"""Metric registry and suites. Each metric writes one JSON record (see energybench.records.store)."""

from energybench.metrics import (  # noqa: F401  (registers)
    accuracy, attack_sanity, autoattack_metric, bpda_eot, fisher, generative, landscape, memorization,
    robust_curve, robustness,
)
from energybench.metrics.base import (
    METRICS, SUITES, EvalContext, Metric, MetricResult, register_metric, register_suite,
)

register_suite("smoke", ["clean", "pgd20"])
register_suite("robust", ["clean", "pgd20", "pgd20-energy", "autoattack"])
register_suite("generative", ["is", "fid", "kid", "precision", "recall", "memorization"])
register_suite("landscape", ["jfs", "mfs", "energy-hist", "energy-contour", "energy-dynamics"])
register_suite("diagnostics", ["attack-sanity", "robust-curve"])
register_suite("public", ["pgd20-jem-public", "pgd20-ebjdat-public"])
register_suite("purified", ["clean", "pgd20", "bpda-eot"])
register_suite("all", SUITES["robust"] + SUITES["generative"] + SUITES["landscape"])


def figure_drawer(name: str):
    """The drawer of a metric's figure (`Metric.draw`), or None for a metric without a figure or
    a name no metric has."""
    return METRICS.get(name).draw if name in METRICS else None


def figure_metrics() -> list[str]:
    """The metrics whose records come with a figure."""
    return [name for name in METRICS if METRICS.get(name).draw is not None]


def resolve_metrics(suites: list[str], metrics: list[str]) -> list[str]:
    """Metric names from --suite and --metric, in order, without repeats (default: suite smoke)."""
    from energybench.core.errors import UserError

    names: list[str] = []
    for suite in suites:
        if suite not in SUITES:
            raise UserError(f"unknown suite {suite!r}; known suites: {', '.join(sorted(SUITES))}")
        names += SUITES[suite]
    for metric in metrics:
        METRICS.get(metric)
        names.append(metric)
    if not names:
        names = list(SUITES["smoke"])
    return list(dict.fromkeys(names))


__all__ = ["METRICS", "SUITES", "EvalContext", "Metric", "MetricResult", "figure_drawer", "figure_metrics",
           "register_metric", "register_suite", "resolve_metrics"]
