"""The figure of memorization: each generated image beside its nearest training images by SSIM
(JEAT Fig. 7).
"""

from __future__ import annotations

import numpy as np
import torch

from energybench.core.errors import UserError, option
from energybench.records.figures import image_grid, model_label, pyplot, reference_label


def memorization_figure(record: dict, raw: dict):
    """Each generated image (left column, class name) beside its nearest training images by SSIM."""
    if "figure_samples" not in raw:
        raise UserError(f"{record.get('file', 'the record')}'s raw data predates redrawable figures; "
                        f"run eval again with {option('force')}")
    plt = pyplot()
    samples, neighbours, ssim = raw["figure_samples"], raw["figure_neighbours"], raw["figure_ssim"]
    classes = [str(c) for c in raw["classes"]]
    rows, k = ssim.shape
    tiles = torch.from_numpy(np.concatenate([samples[:, None], neighbours], axis=1)).reshape(-1, *samples.shape[1:])
    picture = image_grid(tiles, k + 1)
    cell = picture.shape[1] / (k + 1)
    fig, ax = plt.subplots(figsize=(0.5 * (k + 1) + 0.8, 0.55 * rows + 0.5))
    ax.imshow(picture, interpolation="nearest")
    for r in range(rows):
        for j in range(k):
            ax.text((j + 1.5) * cell, (r + 1) * cell - 3, f"{ssim[r, j]:.2f}", ha="center", va="bottom",
                    fontsize=5, color="white", bbox={"facecolor": "black", "alpha": 0.6, "pad": 0.5,
                                                     "linewidth": 0})
    ax.set_yticks([(r + 0.5) * cell for r in range(rows)])
    ax.set_yticklabels([classes[int(c)] for c in raw["figure_labels"]])
    ax.set_xticks([0.5 * cell] + [(j + 1.5) * cell for j in range(k)])
    ax.set_xticklabels(["sample"] + [f"#{j + 1}" for j in range(k)])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(f"{model_label(record)}: SGLD samples and their {k} nearest training images "
                 f"(SSIM on each)\n{rows} of {record.get('n', rows):,} samples shown; training images: "
                 f"{reference_label(record)}")
    return fig
