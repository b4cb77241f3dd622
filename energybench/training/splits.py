"""The training data a run uses: a balanced subset, and the held-out images model selection reads.
"""

from __future__ import annotations

import torch

from energybench import data as datalib
from energybench.core.errors import UserError
from energybench.core.runtime import derive_seed, make_generator

HOLDOUT_STREAM = 5  # the derive_seed stream of the held-out draw (training.trainer lists the others)

def split_holdout(data: datalib.LabeledImages, n: int, seed: int
                  ) -> tuple[datalib.LabeledImages, datalib.LabeledImages | None]:
    """(training part, held-out part): n // K images of every class, drawn by a seeded permutation,
    are held out (JEM's code holds out 5,000 of 50,000 this way). n = 0 holds out nothing."""
    if n == 0:
        return data, None
    per_class = n // data.num_classes
    if per_class < 1:
        raise UserError(f"data.holdout {n} is smaller than the number of classes {data.num_classes}")
    gen = make_generator(derive_seed(seed, HOLDOUT_STREAM))
    held = []
    for c in range(data.num_classes):
        members = torch.nonzero(data.labels == c).flatten()
        if len(members) <= per_class:
            raise UserError(f"data.holdout {n} leaves no training images of class {c}; lower it")
        held.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
    held_idx = torch.cat(held).sort().values
    keep = torch.ones(len(data), dtype=torch.bool)
    keep[held_idx] = False
    keep_idx = torch.nonzero(keep).flatten()

    def part(idx, what):
        return datalib.LabeledImages(data.images[idx], data.labels[idx], data.classes,
                                     dict(data.source, holdout={"part": what, "n": len(idx), "seed": seed}))

    return part(keep_idx, "train"), part(held_idx, "held out")


def balanced_subset(data: datalib.LabeledImages, n: int | None) -> datalib.LabeledImages:
    """The first n // K images of each class, in source order (all when n is None)."""
    if n is None or n >= len(data):
        return data
    per_class = n // data.num_classes
    if per_class < 1:
        raise UserError(f"train_subset {n} is smaller than the number of classes {data.num_classes}")
    keep = torch.cat([torch.nonzero(data.labels == c).flatten()[:per_class]
                      for c in range(data.num_classes)]).sort().values
    source = dict(data.source, subset={"balanced_per_class": per_class, "n": len(keep)})
    return datalib.LabeledImages(data.images[keep], data.labels[keep], data.classes, source)
