"""The Python entry point: `energybench.evaluate(model, data, metrics=...)`.

    import energybench
    records = energybench.evaluate(my_module, (x_uint8, y), metrics=["clean", "pgd20"],
                                   out_dir="eval-mine", eps=4 / 255)
    records[1]["value"]          # robust accuracy, a fraction

It runs exactly what `energybench eval` runs (same protocols, records, caches and skips).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from energybench.core.errors import UserError, neutral_word, render_options


def argument_word(name: str, value: str | None) -> str:
    """An option as this API's argument: `n`, `data=PATH`, `force=True`, `nonfinite='wrong'`, and
    a protocol value as the keyword it is (`steps=100`)."""
    if name in ("force", "yes") and value is None:
        return f"{name}=True"
    if name == "nonfinite" and value is not None:
        return f"nonfinite={value!r}"
    return neutral_word(name, value)


def evaluate(model, data=None, metrics=("clean",), *, suites=(), n: int | None = None,
             out_dir: str | Path | None = None, device: str = "auto", batch_size: int = 256,
             seed: int = 0, train_data=None, force: bool = False, verbose: bool = False,
             threat_model: str = "Linf", model_dir: str | Path | None = None, nonfinite: str = "refuse",
             yes: bool = False, purify: int = 0, save_adversarial: bool = False, **protocol) -> list[dict]:
    """Run metrics on any model; returns one record (dict) per metric, as written to out_dir.

    Args:
        model: an nn.Module mapping [0, 1] NCHW float images to logits, a checkpoint or .pt2
            path, or "robustbench:NAME" (with threat_model and model_dir).
        data: a data spec ("cifar10", a path), a LabeledImages, or (images, labels): images
            uint8 (N, 3, H, W) or (N, H, W, 3) in [0, 255], or float (N, 3, H, W) in [0, 1]
            holding 8-bit images (any one size; CIFAR's is 32x32); labels ints (N,). Default:
            the data a checkpoint was trained on.
        metrics: metric names, as `energybench list metrics` shows them.
        suites: suite names, as `energybench list suites` shows them.
        n: the first n test images (default: all).
        out_dir: the records folder (default: eval-<name>/ beside a checkpoint, else in the
            current folder).
        device: "auto", "cpu", "cuda" or "cuda:N".
        batch_size: images per batch.
        seed: the evaluation seed (random starts, SGLD chains, probes).
        train_data: the training split (same forms as data) for class-Gaussian SGLD, FID and
            memorization when the model does not name its own.
        force: recompute metrics that are already recorded.
        verbose: print progress and plan lines.
        threat_model: a RobustBench model's threat model ("Linf" or "L2").
        model_dir: where RobustBench models are kept.
        nonfinite: "refuse" (stop on NaN/inf logits) or "wrong" (count those images wrong in the
            accuracy metrics; the record says how many).
        yes: start an evaluation estimated at over 24 hours, or at an L-inf eps beyond 16/255 (otherwise
            refused in one line, saying why).
        save_adversarial: the attack metrics (PGD, autoattack, bpda-eot) write their adversarial examples
            beside their records (<record>.adversarial.npz: images float32 (N, C, H, W) in [0, 1], index,
            adv_correct).
        purify: evaluate the model behind test-time purification, this many Langevin steps on its
            energy before it classifies (purify_step_size, purify_noise and purify_chains among
            the protocol values); recorded in every record. Attack it with the bpda-eot metric.
        **protocol: protocol values, e.g. eps=4/255, step_size=1/255, n_per_class=50, probes=20.

    Returns:
        One record per metric (the JSON written to out_dir, as a dict).

    Raises:
        UserError: bad input, or a metric that cannot run here (one line, naming this
            function's arguments).
    """
    from energybench.core.runtime import resolve_device
    from energybench.evaluation.protocol import check_param_keys, split_purification
    from energybench.evaluation.runner import evaluate as run
    from energybench.metrics import resolve_metrics

    if isinstance(out_dir, bytes):  # a path given as bytes, as os.listdir(b'.') gives them
        out_dir = os.fsdecode(out_dir)
    if isinstance(metrics, str) or isinstance(suites, str):
        raise UserError("metrics and suites are lists of names, e.g. metrics=['clean', 'pgd20']")
    # the caller's module is evaluated in eval mode and handed back in the modes it came in
    modes = [(m, m.training) for m in model.modules()] if isinstance(model, torch.nn.Module) else []
    try:
        names = resolve_metrics(list(suites), list(metrics))
        purification, protocol = split_purification(purify, protocol)
        check_param_keys(names, protocol)
        return run(model, names, data=data, n=n, out_dir=out_dir, device=resolve_device(device),
                   batch_size=batch_size, seed=seed, overrides=protocol, force=force,
                   log=(lambda message: print(render_options(message, argument_word))) if verbose else (lambda message: None), train_data=train_data,
                   threat_model=threat_model, model_dir=model_dir, nonfinite=nonfinite,
                   confirm_long=lambda line: yes, purification=purification, save_adversarial=save_adversarial)
    except UserError as exc:
        raise exc.reworded(render_options(exc.template, argument_word)) from None
    finally:
        for module, training in modes:
            module.training = training
