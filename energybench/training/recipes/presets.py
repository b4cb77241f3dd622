"""Shared starting points for recipe presets: the papers' WRN-28-10 setting and a CPU smoke size."""

from __future__ import annotations

from dataclasses import replace

from energybench.training.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig


def paper_config(recipe: str, params, **sections) -> TrainConfig:
    """WRN-28-10, SGD(0.1, momentum 0.9, wd 5e-4), batch 128, 200 epochs, lr /10 at 50% and 75%;
    1,000 training images held out to pick best.pt by PGD-10 robust accuracy (Rice et al. 2020)."""
    base = dict(
        model=ModelConfig("wrn-28-10", {}),
        data=DataConfig(source=None, train_subset=None, eval_subset=1000, augment=True, holdout=1000),
        optim=OptimConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=128,
                          epochs=200, schedule="multistep", milestones=(0.5, 0.75), gamma=0.1),
        run=RunConfig(seed=0),
    )
    base.update(sections)
    return TrainConfig(recipe=recipe, params=params, **base)


def smoke_config(recipe: str, params, **sections) -> TrainConfig:
    """tiny-cnn (width 48, 0.2M parameters) on a class-balanced 5,000-image subset, 6 epochs: the
    one smoke size (`train --preset smoke`, `reproduce --preset smoke`, the shipped checkpoints)."""
    base = dict(
        model=ModelConfig("tiny-cnn", {"width": 48}),
        data=DataConfig(source=None, train_subset=5_000, eval_subset=1000, augment=True),
        optim=OptimConfig(name="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=128,
                          epochs=6, schedule="cosine", warmup_steps=0),
        run=RunConfig(seed=0, robust_eval=200),
    )
    base.update(sections)
    return TrainConfig(recipe=recipe, params=params, **base)


EBM_SMOKE_MODEL = ModelConfig("tiny-cnn", {"width": 48, "batch_norm": False, "act": "leaky_relu",
                                           "normalize": "pm1"})


def ebm_smoke_config(recipe: str, params, optim: OptimConfig) -> TrainConfig:
    """The smoke size for recipes that train an energy with SGLD negatives (jem, jeat, eb-jdat):
    as `smoke_config`, but JEM's stabilisers: no batch norm, leaky ReLU, [-1, 1] inputs, Adam
    (lr 1e-3 at this scale) with 100 warm-up steps. With batch norm and SGD 0.05 the smoke JEAT
    run diverged (energies past 1e4) four times in a row."""
    base = smoke_config(recipe, params)
    smoke_optim = replace(optim, name="adam", weight_decay=0.0, lr=1e-3, epochs=base.optim.epochs,
                          warmup_steps=100)
    return replace(base, model=EBM_SMOKE_MODEL, optim=smoke_optim)
