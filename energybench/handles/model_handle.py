"""One model handle: whatever a user points at, opened as a `LoadedModel` every metric can run.

    runs/x/last.pt          an energybench checkpoint (its recipe, config, data and replay buffer)
    model.pt2               a torch.export program: [0, 1] NCHW images -> logits
    robustbench:NAME        a RobustBench zoo model (energybench.handles.zoo)
    an nn.Module            from Python: [0, 1] NCHW images -> logits

A model without a file is identified by its weights: `module_sha256` digests its class name and
state dict, so records of equal weights share their keys and any changed weight changes them.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from energybench.core.errors import UserError
from energybench.core.hashing import file_sha256, tensors_sha256, text_sha256
from energybench.handles.checkpoint import LoadedModel, load_model
from energybench.handles.reference import MODEL_HELP, check_model_reference, is_zoo_name



def module_sha256(module: nn.Module) -> str:
    """Digest of a module's class (qualified name) and every tensor in its state dict."""
    cls = type(module)
    head = f"{cls.__module__}.{cls.__qualname__}|"
    return text_sha256(f"{head}{tensors_sha256(module.state_dict())}")


def open_model(model, device: torch.device | str = "cpu", threat_model: str = "Linf",
               model_dir: str | os.PathLike | None = None, dataset: str = "cifar10") -> LoadedModel:
    """A model handle (see the module docstring) in eval mode on `device`.

    threat_model, model_dir and dataset choose RobustBench's zoo entry and where its weights sit."""
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, nn.Module):
        cls = type(model)
        return LoadedModel(model.to(device).eval(), "module", None, module_sha256(model), None,
                           name=f"module:{cls.__module__}.{cls.__qualname__}")
    from energybench.handles import zoo

    if is_zoo_name(model):
        net, weights, info = zoo.load_zoo_model(model, threat_model, model_dir, dataset)
        sha = file_sha256(weights) if weights is not None else module_sha256(net)
        # a zoo model was trained on its dataset: its test split (from the data home) is the default
        return LoadedModel(net.to(device).eval(), "robustbench", weights, sha, None, name=model, info=info,
                           data_spec=info["dataset"])
    if not isinstance(model, (str, os.PathLike)):
        raise UserError(f"a model is {MODEL_HELP}, or an nn.Module; got a {type(model).__name__}")
    check_model_reference(model)
    return load_model(model, device)  # named by its path


def default_out_dir(loaded: LoadedModel) -> Path:
    """Where `eval` writes records by default: runs/x/last.pt -> runs/x/eval-last/; model.pt2 ->
    eval-model/ beside it; robustbench:NAME -> eval-robustbench-NAME/ and a module ->
    eval-module-<digest>/ in the current folder."""
    if loaded.kind in ("checkpoint", "export"):
        return loaded.path.parent / f"eval-{loaded.path.stem}"
    if loaded.kind == "robustbench":
        return Path(f"eval-robustbench-{loaded.info['robustbench_name']}")
    return Path(f"eval-module-{loaded.sha256[:12]}")
