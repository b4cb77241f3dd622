"""Image generation by SGLD on a classifier's energies (JEAT eq. 16, 17 and Algorithm 1).

Modes:  "joint" (eq. 17, SGLD on E(x, y), the JEAT/PreJEAT procedure; default),
        "conditional" (eq. 16, on E(x, y) - E(x), the classic robust-classifier procedure),
        "marginal" (on E(x): unconditional; labels are the model's predictions afterwards).
Inits:  "uniform" (U(0, 1)), "class-gaussian" (N(mu_y, Sigma_y) fitted on the training split),
        "buffer" (the replay buffer saved in a JEM/JEAT/EB-JDAT checkpoint).
Classes are balanced: n_per_class samples for every class, generated in batches.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from energybench.errors import UserError
from energybench.progress import progress
from energybench.runtime import derive_seed, make_generator
from energybench.sampling import SGLDConfig, make_init, sgld
from energybench.validation import Checked

MODES = {"joint": "joint", "conditional": "conditional", "marginal": "marginal"}
INITS = ("uniform", "class-gaussian", "buffer")


@dataclass(frozen=True)
class GenerationConfig(Checked):
    LIMITS = {"n_per_class": "[1, inf)", "steps": "[0, inf)", "step_size": "[0, inf)",
              "noise": "[0, inf)", "batch_size": "[1, inf)", "seed": "[0, inf)"}
    CHOICES = {"mode": tuple(MODES), "init": INITS}

    n_per_class: int = 10
    mode: str = "joint"
    init: str = "class-gaussian"
    steps: int = 100
    step_size: float = 0.25
    noise: float = 0.005
    batch_size: int = 250
    seed: int = 0


@dataclass
class Samples:
    """images: float32 (N, C, H, W) in [0, 1]; labels: (N,) the class each was generated for
    (for mode 'marginal' the model's prediction)."""

    images: torch.Tensor
    labels: torch.Tensor

    def uint8(self) -> torch.Tensor:
        """Quantised by rounding, as IS/FID see them."""
        return (self.images * 255).round_().clamp_(0, 255).to(torch.uint8)


def generate(model, cfg: GenerationConfig, num_classes: int, device: torch.device,
             train_images: torch.Tensor | None = None, train_labels: torch.Tensor | None = None,
             buffer: dict | None = None, train_key: str | None = None) -> Samples:
    """Generate cfg.n_per_class images per class. train_* are needed for 'class-gaussian',
    `buffer` (a checkpoint's replay buffer state) for 'buffer'."""
    labels = torch.arange(num_classes).repeat_interleave(cfg.n_per_class)
    gen = make_generator(derive_seed(cfg.seed, 11), device)
    if cfg.init == "buffer":
        if not buffer:
            raise UserError("init 'buffer' needs a checkpoint with a replay buffer (jem, jeat, eb-jdat)")
        pool = buffer["images"]
        pick = torch.randint(0, len(pool), (len(labels),), generator=torch.Generator().manual_seed(cfg.seed))
        starts = pool[pick].float()
        init = None
    else:
        if cfg.init == "class-gaussian" and train_images is None:
            raise UserError("init 'class-gaussian' needs the training images (--train-data)")
        shape_source = train_images if train_images is not None else torch.zeros(1, 3, 32, 32)
        init = make_init(cfg.init, shape_source, train_labels if train_labels is not None
                         else torch.zeros(1, dtype=torch.long), num_classes, device, train_key)
        starts = None
    sgld_cfg = SGLDConfig(steps=cfg.steps, step_size=cfg.step_size, noise=cfg.noise,
                          target=MODES[cfg.mode])
    out = []
    batches = range(0, len(labels), cfg.batch_size)
    for start in progress(batches, desc=f"generating ({cfg.mode})", total=len(batches)):
        y = labels[start:start + cfg.batch_size].to(device)
        x0 = init.sample(y, gen) if init is not None else starts[start:start + cfg.batch_size].to(device)
        out.append(sgld(model, x0, sgld_cfg, gen, y if cfg.mode != "marginal" else None).cpu())
    images = torch.cat(out)
    if cfg.mode == "marginal":
        with torch.no_grad():
            model.eval()
            labels = torch.cat([model(images[i:i + cfg.batch_size].to(device)).argmax(1).cpu()
                                for i in range(0, len(images), cfg.batch_size)])
    return Samples(images, labels)


def save_samples(samples: Samples, cfg: GenerationConfig, path: Path, meta: dict) -> None:
    """An .npz with images (N, H, W, C) uint8, labels, the float images, the config and `meta`
    (what the samples belong to), written atomically."""
    from energybench.results import write_npz_atomic

    write_npz_atomic(path, images=samples.uint8().permute(0, 2, 3, 1).numpy(),
                     images_float=samples.images.numpy(), labels=samples.labels.numpy(),
                     config=json.dumps(asdict(cfg)), meta=json.dumps(meta, sort_keys=True))


def load_samples(path: Path, meta: dict | None = None) -> Samples | None:
    """Samples saved by `save_samples`, or None when the file is absent, unreadable, or was
    saved with other `meta` (then they are generated again)."""
    try:
        with np.load(path) as z:
            if meta is not None and json.loads(str(z["meta"])) != json.loads(json.dumps(meta)):
                return None
            return Samples(torch.from_numpy(z["images_float"]), torch.from_numpy(z["labels"]))
    except (OSError, ValueError, KeyError):
        return None
