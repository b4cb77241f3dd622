"""`energybench sample`: load a model, generate balanced samples, save them and their grids."""

from __future__ import annotations

import json
from pathlib import Path


from energybench import data as datalib
from energybench.checkpoint import load_model
from energybench.figures import save_class_grids
from energybench.generation import GenerationConfig, Samples, generate, save_samples
from energybench.results import check_writable_dir
from energybench.runtime import exact_float32


def training_split(loaded, train_data: str | None):
    """The training images a model saw (for the class-conditional Gaussian and FID)."""
    spec = train_data if train_data is not None else loaded.train_source
    if spec is None:
        from energybench.errors import UserError

        raise UserError(f"{loaded.path} does not say what it was trained on; pass --train-data")
    return datalib.load_split(spec, "train")


def generate_for(loaded, cfg: GenerationConfig, device, train_data: str | None = None,
                 train=None) -> Samples:
    """Generate with `loaded`'s model; `train` (the training split, if already loaded) or
    `train_data` (its spec; default the checkpoint's) feeds the class-conditional Gaussian."""
    num_classes = loaded.checkpoint["model"]["kwargs"].get("num_classes", 10) if loaded.checkpoint \
        else getattr(loaded.model, "num_classes", 10)
    buffer = None
    train_images = train_labels = train_key = None
    if cfg.init == "buffer" and loaded.checkpoint is not None:
        state = loaded.checkpoint.get("recipe_state", {})
        state = state["per_rank"][0] if "per_rank" in state else state
        buffer = state.get("replay_buffer")
    if cfg.init == "class-gaussian":
        train = train if train is not None else training_split(loaded, train_data)
        train_images, train_labels = train.images, train.labels
        train_key = json.dumps(train.source, sort_keys=True)
    return generate(loaded.model, cfg, num_classes, device, train_images, train_labels, buffer,
                    train_key)


def sample_model(model_path, n_per_class, mode, init, steps, step_size, noise_scale, train_data,
                 out_dir, device, seed) -> Path:
    """Generate and save samples.npz and the class grids (checked before any work is done)."""
    model_path = Path(model_path)
    cfg = GenerationConfig(n_per_class=n_per_class, mode=mode, init=init, steps=steps,
                           step_size=step_size, noise_scale=noise_scale, seed=seed)
    out = Path(out_dir) if out_dir is not None else model_path.parent / f"samples-{model_path.stem}"
    check_writable_dir(out)
    loaded = load_model(model_path, device)
    with exact_float32():
        samples = generate_for(loaded, cfg, device, train_data)
    save_samples(samples, cfg, out / "samples.npz", {"model": str(model_path), "sha256": loaded.sha256})
    classes = loaded.checkpoint["meta"].get("classes") if loaded.checkpoint else None
    save_class_grids(samples, out, classes)
    return out
