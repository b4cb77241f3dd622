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
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from energybench import data as datalib
from energybench.core.atomic import write_npz_atomic
from energybench.core.distributed import World, agree
from energybench.core.errors import UserError, option
from energybench.core.progress import progress, say_progress
from energybench.core.runtime import derive_seed, make_generator
from energybench.core.validation import Checked
from energybench.energy.sgld import INITS as CHAIN_INITS
from energybench.energy.sgld import SGLDConfig, make_init, sgld

MODES = {"joint": "joint", "conditional": "conditional", "marginal": "marginal"}
INITS = (*CHAIN_INITS, "buffer")  # a fresh chain (sgld.INITS), or the checkpoint's replay buffer


@dataclass(frozen=True)
class GenerationConfig(Checked):
    LIMITS = {"n_per_class": "[1, 100000]", "steps": "[0, 100000]", "step_size": "[0, 1000]",
              "noise": "[0, 10]", "batch_size": "[1, 100000]", "seed": "[0, 4294967295]"}
    CHOICES = {"mode": tuple(MODES), "init": INITS}

    n_per_class: int = 10
    mode: str = "joint"
    init: str = "class-gaussian"
    steps: int = 100
    step_size: float = 0.25
    noise: float = 0.005
    batch_size: int = 250
    seed: int = 0

    def gradient_passes(self, n: int, num_classes: int) -> float:
        """SGLD passes of the generated set (n_per_class per class, `steps` each)."""
        return self.n_per_class * num_classes * self.steps


GENERATION_VERSION = 2  # 2: each batch of samples draws from its own seed (shardable); in every cache key


@dataclass
class Samples:
    """images: float32 (N, C, H, W) in [0, 1]; labels: (N,) the class each was generated for
    (for mode 'marginal' the model's prediction); index: (N,) each sample's position in the
    whole generated set (a torchrun rank holds only its batches)."""

    images: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor | None = None

    def uint8(self) -> torch.Tensor:
        """Quantised by rounding, as IS/FID see them."""
        return (self.images * 255).round_().clamp_(0, 255).to(torch.uint8)


def generate(model, cfg: GenerationConfig, num_classes: int, device: torch.device,
             train_images: torch.Tensor | None = None, train_labels: torch.Tensor | None = None,
             buffer: dict | None = None, train_key: str | None = None, world: World = World(),
             image_shape: tuple[int, int, int] = (3, 32, 32)) -> Samples:
    """Generate cfg.n_per_class images per class, in batches of cfg.batch_size, batch b from its
    own generator (seed, b): under torchrun this rank generates batches b = rank mod size, and the
    union over ranks equals one process's set. train_* are needed for 'class-gaussian', `buffer`
    (a checkpoint's replay buffer state) for 'buffer'; `image_shape` (C, H, W) is the size a
    uniform start draws when no training images give it."""
    labels = torch.arange(num_classes).repeat_interleave(cfg.n_per_class)
    if cfg.init == "buffer":
        if not buffer:
            raise UserError("init 'buffer' needs a checkpoint with a replay buffer (jem, jeat, eb-jdat)")
        pool = buffer["images"]
        pick = torch.randint(0, len(pool), (len(labels),), generator=torch.Generator().manual_seed(cfg.seed))
        starts = pool[pick].float()
        init = None
    else:
        if cfg.init == "class-gaussian" and train_images is None:
            raise UserError(f"init 'class-gaussian' needs the training images ({option('train_data')})")
        shape_source = train_images if train_images is not None else torch.zeros(1, *image_shape)
        init = make_init(cfg.init, shape_source, train_labels if train_labels is not None
                         else torch.zeros(1, dtype=torch.long), num_classes, device, train_key)
        starts = None
    sgld_cfg = SGLDConfig(steps=cfg.steps, step_size=cfg.step_size, noise=cfg.noise,
                          target=MODES[cfg.mode])
    batch_starts = list(range(0, len(labels), cfg.batch_size))
    mine = [b for b in range(len(batch_starts)) if b % world.size == world.rank]
    out, index = [], []
    for b in progress(mine, desc=f"generating ({cfg.mode})", total=len(mine)):
        start = batch_starts[b]
        gen = make_generator(derive_seed(cfg.seed, 11, b), device)
        y = labels[start:start + cfg.batch_size].to(device)
        x0 = init.sample(y, gen) if init is not None else starts[start:start + cfg.batch_size].to(device)
        out.append(sgld(model, x0, sgld_cfg, gen, y if cfg.mode != "marginal" else None,
                        desc=f"SGLD steps, batch {b + 1} of {len(batch_starts)}").cpu())
        index.append(torch.arange(start, start + len(y)))
    images = torch.cat(out) if out else torch.zeros(0, *(shape_source.shape[1:] if starts is None else starts.shape[1:]))
    index = torch.cat(index) if index else torch.zeros(0, dtype=torch.long)
    labels = labels[index]
    if cfg.mode == "marginal":
        with torch.no_grad():
            model.eval()
            labels = torch.cat([model(images[i:i + cfg.batch_size].to(device)).argmax(1).cpu()
                                for i in range(0, len(images), cfg.batch_size)]) if len(images) else labels
    return Samples(images, labels, index)


def training_split(loaded, train_data=None):
    """The training images a model saw (for the class-conditional Gaussian, FID, memorization):
    `train_data` (any form `data.as_split` takes) or, by default, the checkpoint's own."""
    train = datalib.as_split(train_data if train_data is not None else loaded.train_source, "train",
                             "training images given in memory")
    if train is None:
        raise UserError(f"{loaded.name} does not say what it was trained on; pass {option('train_data')}")
    return train


def model_classes(loaded) -> int:
    """How many classes a LoadedModel's generator draws: its checkpoint's, else the module's (10)."""
    return loaded.checkpoint["model"]["kwargs"].get("num_classes", 10) if loaded.checkpoint \
        else getattr(loaded.model, "num_classes", 10)


def model_image_shape(loaded) -> tuple[int, int, int]:
    """(C, H, W) a LoadedModel takes: its checkpoint's training images' (meta.image_shape), an
    exported program's fixed input, else CIFAR's (3, 32, 32)."""
    meta = loaded.checkpoint["meta"] if loaded.checkpoint is not None else {}
    shape = meta.get("image_shape") or getattr(loaded.model, "input_shape", None) or (3, 32, 32)
    return tuple(int(v) for v in shape)


def generate_for(loaded, cfg: GenerationConfig, device, train_data: str | None = None,
                 train=None, world: World = World(), image_shape: tuple[int, int, int] | None = None) -> Samples:
    """Generate with `loaded`'s model (energybench.handles.checkpoint.LoadedModel); `train` (the training
    split, if already loaded) or `train_data` (its spec; default the checkpoint's) feeds the
    class-conditional Gaussian."""
    num_classes = model_classes(loaded)
    buffer = None
    train_images = train_labels = train_key = None
    if cfg.init == "buffer" and loaded.checkpoint is not None:
        state = loaded.checkpoint.get("recipe_state", {})
        state = state["per_rank"][0] if "per_rank" in state else state
        buffer = state.get("replay_buffer")
        stripped = [w for w in loaded.checkpoint["meta"].get("shipped_without") or [] if "replay buffer" in str(w)]
        if not buffer and stripped:
            raise UserError(f"init 'buffer': {loaded.name} is a {loaded.checkpoint['recipe']} checkpoint whose "
                            f"replay buffer was stripped when it was shipped (meta.shipped_without); use its "
                            f"training run's last.pt, or {option('init', 'class-gaussian')}")
    if cfg.init == "class-gaussian":
        train = train if train is not None else training_split(loaded, train_data)
        train_images, train_labels = train.images, train.labels
        train_key = json.dumps(train.source, sort_keys=True)
    return generate(loaded.model, cfg, num_classes, device, train_images, train_labels, buffer,
                    train_key, world, image_shape or model_image_shape(loaded))


def generate_to_file(loaded, cfg: GenerationConfig, device, path: Path, meta: dict, train=None,
                     world: World = World(), purpose: str = "", image_shape: tuple[int, int, int] | None = None) -> Samples:
    """The samples of `cfg`, saved at `path` under `meta` (what they belong to) and reused when
    they are already there. Under torchrun every rank generates its batches into
    <path stem>.shard-<rank>-of-<size>.npz (kept until merged, so a rerun after a failure
    generates only what is missing), rank 0 merges them into `path`, and every rank returns the
    whole set. Before generating, one progress line says what is generated and for what
    (`purpose`, e.g. the metric's name)."""
    meta = {**meta, "generation_version": GENERATION_VERSION}
    cached = load_samples(path, meta)
    if cached is not None:
        return cached
    if world.is_main:
        total = cfg.n_per_class * model_classes(loaded)
        say_progress(f"{purpose + ': ' if purpose else ''}generating {total:,} SGLD samples ({cfg.n_per_class} per class, "
                     f"{cfg.steps} steps from {cfg.init}) into {path.name}; later metrics in this folder reuse them")
    if not world.enabled:
        samples = generate_for(loaded, cfg, device, train=train, image_shape=image_shape)
        save_samples(samples, cfg, path, meta)
        return samples
    shard_path = path.with_name(f"{path.stem}.shard-{world.rank}-of-{world.size}.npz")
    error = None
    try:
        part = load_samples(shard_path, {**meta, "rank": world.rank, "world_size": world.size})
        if part is None:
            part = generate_for(loaded, cfg, device, train=train, world=world, image_shape=image_shape)
            save_samples(part, cfg, shard_path, {**meta, "rank": world.rank, "world_size": world.size})
    except UserError as exc:
        error = exc.template
    agree(world, error)
    if world.is_main:
        parts = [load_samples(path.with_name(f"{path.stem}.shard-{r}-of-{world.size}.npz"),
                              {**meta, "rank": r, "world_size": world.size}) for r in range(world.size)]
        index = torch.cat([p.index for p in parts])
        order = torch.argsort(index)
        merged = Samples(torch.cat([p.images for p in parts])[order], torch.cat([p.labels for p in parts])[order],
                         index[order])
        save_samples(merged, cfg, path, meta)
        for r in range(world.size):
            path.with_name(f"{path.stem}.shard-{r}-of-{world.size}.npz").unlink(missing_ok=True)
    agree(world)
    return load_samples(path, meta)


def save_samples(samples: Samples, cfg: GenerationConfig, path: Path, meta: dict) -> None:
    """An .npz with images (N, H, W, C) uint8, labels, the float images, each sample's index, the
    config and `meta` (what the samples belong to), written atomically."""
    index = samples.index if samples.index is not None else torch.arange(len(samples.labels))
    write_npz_atomic(path, images=samples.uint8().permute(0, 2, 3, 1).numpy(),
                     images_float=samples.images.numpy(), labels=samples.labels.numpy(), index=index.numpy(),
                     config=json.dumps(asdict(cfg)), meta=json.dumps(meta, sort_keys=True))


def load_samples(path: Path, meta: dict | None = None) -> Samples | None:
    """Samples saved by `save_samples`, or None when the file is absent, unreadable, or was
    saved with other `meta` (then they are generated again)."""
    try:
        with np.load(path) as z:
            if meta is not None and json.loads(str(z["meta"])) != json.loads(json.dumps(meta)):
                return None
            index = torch.from_numpy(z["index"]) if "index" in z.files else None
            return Samples(torch.from_numpy(z["images_float"]), torch.from_numpy(z["labels"]), index)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None
