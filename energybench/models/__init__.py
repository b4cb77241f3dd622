"""Model registry: `create_model(name, **kwargs)` builds a classifier taking [0, 1] NCHW images.

Every model normalises inside its forward (a `Normalize` first layer with its mean/std stored in
the state dict), so attacks and samplers always work in [0, 1] pixel units.
"""

from __future__ import annotations

import inspect
import warnings

import torch.nn as nn

from energybench.core.errors import UserError
from energybench.models import preact_resnet, tiny, wide_resnet  # noqa: F401  (registers models)
from energybench.models.registry import MODELS


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; unknown names and keyword arguments give a one-line error."""
    factory = MODELS.get(name)
    params = inspect.signature(factory).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise UserError(
            f"model {name!r} takes no option(s) {', '.join(unknown)}; it takes: {', '.join(params)}"
        )
    try:
        with warnings.catch_warnings():  # torch warns about initialising zero-size layers: refused below
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            model = factory(**kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:  # e.g. width='wide'
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot build model {name!r} from {kwargs} ({first}); check its options") from None
    empty = [n for n, p in model.named_parameters() if p.numel() == 0]
    if empty:  # e.g. width=0: a layer with no weights, which fails only at the first forward
        raise UserError(f"model {name!r} built from {kwargs} has layers with no weights ({empty[0]}); "
                        f"sizes such as width must be at least 1")
    model.energybench_spec = {"name": name, "kwargs": dict(kwargs)}
    return model


__all__ = ["create_model", "MODELS"]
