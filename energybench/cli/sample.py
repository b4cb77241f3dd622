"""`energybench sample`: draw SGLD samples from an energy model into an image grid.
"""

from __future__ import annotations

from pathlib import Path

import click

from energybench.cli.options import POSITIVE, SEED, FiniteFloat, echo, model_options
from energybench.handles.reference import check_model_reference


@click.command()
@model_options
@click.option("--n-per-class", type=POSITIVE, default=10, show_default=True)
@click.option("--mode", default="joint", show_default=True,
              type=click.Choice(["joint", "conditional", "marginal"]),
              help="joint (eq. 17, E(x,y)), conditional (eq. 16, E(x,y)-E(x)), marginal (E(x))")
@click.option("--init", "init", default="class-gaussian", show_default=True,
              type=click.Choice(["uniform", "class-gaussian", "buffer"]),
              help="uniform, class-gaussian (fitted on the training data) or buffer (checkpoint's)")
@click.option("--steps", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--step-size", type=FiniteFloat(), default=0.25, show_default=True, help="pixel units")
@click.option("--noise", type=FiniteFloat(), default=0.005, show_default=True, help="pixel units")
@click.option("--train-data", default=None, help="training data for class-gaussian (default: the checkpoint's)")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="folder for samples.npz and grid PNGs (default samples-<ckpt name>/)")
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
def sample(model_spec, threat_model, model_dir, n_per_class, mode, init, steps, step_size, noise, train_data,
           out_dir, device, seed):
    """Generate images by SGLD: samples.npz, one PNG grid per class, and grid.png/.pdf (a row per
    class, named)."""
    check_model_reference(model_spec)  # before torch loads: a mistyped path costs no wait
    from energybench.core.distributed import joined
    from energybench.workflows.sample import sample_model

    # torchrun --nproc_per_node N -m energybench sample ...: batches split over the ranks
    with joined(device) as (world, dev):
        out = sample_model(model_spec, n_per_class=n_per_class, mode=mode, init=init, steps=steps,
                           step_size=step_size, noise=noise, train_data=train_data,
                           out_dir=out_dir, device=dev, seed=seed, threat_model=threat_model,
                           model_dir=model_dir, world=world)
    if world.is_main:
        echo(f"samples: {out}")
