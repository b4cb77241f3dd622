"""What a record says about the model it measured (name, kind, recipe, file and weights digests,
parameters, classes) and the identity that keys the record.
"""

from __future__ import annotations

import torch

from energybench import data as datalib
from energybench.core.errors import UserError, option
from energybench.data import to_float
from energybench.energy.purification import purification_of
from energybench.handles.checkpoint import LoadedModel


def check_classes(loaded: LoadedModel, test: datalib.LabeledImages, device: torch.device,
                  needs_gradient: bool = True) -> None:
    """The data must have the model's classes: their number, and for a checkpoint (which stores
    its class names) the same names in the same order. The logits are checked first (`check_logits`)."""
    num_classes = check_logits(loaded, test, device, needs_gradient)
    if num_classes != test.num_classes:
        raise UserError(
            f"{loaded.name} outputs {num_classes} classes but the data has {test.num_classes}; "
            f"give the matching dataset with {option('data')}"
        )
    trained = loaded.checkpoint["meta"].get("classes") if loaded.checkpoint is not None else None
    if trained is not None and list(trained) != list(test.classes):
        first = next(i for i, (a, b) in enumerate(zip(trained, test.classes)) if a != b)
        raise UserError(
            f"{loaded.name} was trained with classes in another order or with other names than the "
            f"data's (class {first}: {trained[first]!r} vs {test.classes[first]!r}); give data with "
            f"the classes {', '.join(trained[:3])}, ... in the model's order"
        )


def record_identity(metric, loaded: LoadedModel, test: datalib.LabeledImages, seed: int,
                    batch_size: int, device: torch.device) -> dict:
    """Everything a record's number depends on; equal identities share one record file. A purified
    model (energybench.energy.purification) adds its purification; a plain one has no such key, as
    every record made before purification existed."""
    identity = {"metric": metric.name, "metric_version": metric.version, "model_sha256": loaded.sha256,
                "data": datalib.data_identity(test.source), "n": len(test), "params": metric.protocol(),
                "seed": seed, "batch_size": batch_size, "device": device.type}
    purification = purification_of(loaded.model)
    if purification is not None:
        identity["purification"] = purification.record()
    return identity


def describe_model(loaded: LoadedModel) -> dict:
    """What a record says about the evaluated model: identity, recipe and its parameters, the
    training scale (epochs, training images and their source) that tables report beside a number,
    which checkpoint of the run it is (`last`, or `best` with how it was selected), and whether
    the divergence guard rolled the run back (how often, the final learning-rate scale)."""
    ckpt = loaded.checkpoint
    info = {"path": str(loaded.path.resolve()) if loaded.path is not None else None, "name": loaded.name,
            "sha256": loaded.sha256, "kind": loaded.kind, "recipe": None, "model": None,
            "recipe_params": None, "training": None, "parameters": _parameters(loaded), **loaded.info}
    purification = purification_of(loaded.model)
    if purification is not None:
        info["purification"] = purification.record()
    if ckpt is None:
        return info
    meta, progress = ckpt.get("meta", {}), ckpt.get("progress", {})
    info.update({
        "recipe": ckpt["recipe"], "model": ckpt["model"], "recipe_params": ckpt["config"].get("params"),
        "training": {"epochs": progress.get("epoch"), "planned_epochs": ckpt["config"]["optim"]["epochs"],
                     "train_images": meta.get("num_train_images"),
                     "holdout_images": meta.get("num_holdout_images", 0),
                     "data": (meta.get("train_source") or {}).get("label"), "seed": meta.get("seed"),
                     "rollbacks": progress.get("rollbacks", 0), "lr_scale": progress.get("lr_scale", 1.0),
                     "resume_overrides": progress.get("resume_overrides", [])},
        "checkpoint": {"which": "best", **ckpt["selection"]} if "selection" in ckpt else {"which": "last"},
    })
    return info


def _parameters(loaded: LoadedModel) -> int | None:
    """Trainable parameter count, where the model has ordinary parameters (not a .pt2 graph)."""
    return None if loaded.kind == "export" else sum(p.numel() for p in loaded.model.parameters())


@torch.no_grad()
def check_logits(loaded: LoadedModel, test: datalib.LabeledImages, device, needs_gradient: bool = True) -> int:
    """The model's number of classes, from one forward of two test images, after checking what
    the metrics rely on: (N, K) floating-point logits, and where `needs_gradient` (an attack, a
    score or a sampler is asked for) a gradient to the input."""
    x = to_float(test.images[:2].to(device)).requires_grad_(True)
    with torch.enable_grad():
        out = loaded.model(x)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != len(x):
        what = f"a {type(out).__name__}" if not isinstance(out, torch.Tensor) else f"shape {tuple(out.shape)}"
        raise UserError(f"{loaded.name} must return (N, num_classes) logits for (N, C, H, W) images; it "
                        f"returned {what}")
    if not out.is_floating_point():
        raise UserError(f"{loaded.name} returns {str(out.dtype).removeprefix('torch.')} logits; logits must be "
                        f"floating point (return them before any rounding or casting to integers)")
    if needs_gradient and not out.requires_grad:
        raise UserError(f"{loaded.name} returns logits that carry no gradient to its input (computed under "
                        f"torch.no_grad or detached); remove that from its forward: attacks, scores and "
                        f"samplers need the input gradient (only clean accuracy does not)")
    return int(out.shape[1])
