"""`energybench sample`: load a model, generate balanced samples, save them and their grids."""

from __future__ import annotations

import json
from pathlib import Path


from energybench import data as datalib
from energybench.handle import default_out_dir, open_model
from energybench.plotting import model_label, save_sample_grids
from energybench.generation import GenerationConfig, Samples, generate, save_samples
from energybench.results import check_writable_dir
from energybench.runtime import exact_float32


def training_split(loaded, train_data=None):
    """The training images a model saw (for the class-conditional Gaussian, FID, memorization):
    `train_data` (a spec or LabeledImages) or, by default, the checkpoint's own."""
    if isinstance(train_data, datalib.LabeledImages):
        return train_data
    spec = train_data if train_data is not None else loaded.train_source
    if spec is None:
        from energybench.errors import UserError

        raise UserError(f"{loaded.name} does not say what it was trained on; pass --train-data")
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


def sample_model(model, n_per_class, mode, init, steps, step_size, noise, train_data,
                 out_dir, device, seed, threat_model: str = "Linf", model_dir=None) -> Path:
    """Generate and save samples.npz and the class grids for any model handle (a checkpoint,
    .pt2, robustbench:NAME); everything is checked before the sampling starts."""
    cfg = GenerationConfig(n_per_class=n_per_class, mode=mode, init=init, steps=steps,
                           step_size=step_size, noise=noise, seed=seed)
    loaded = open_model(model, device, threat_model=threat_model, model_dir=model_dir)
    if out_dir is not None:
        out = Path(out_dir)
    elif loaded.path is not None and loaded.kind in ("checkpoint", "export"):
        out = loaded.path.parent / f"samples-{loaded.path.stem}"
    else:
        out = Path(f"samples-{default_out_dir(loaded).name.removeprefix('eval-')}")
    check_writable_dir(out)
    train = training_split(loaded, train_data) if cfg.init == "class-gaussian" else None
    with exact_float32():
        samples = generate_for(loaded, cfg, device, train_data, train=train)
    save_samples(samples, cfg, out / "samples.npz", {"model": loaded.name, "sha256": loaded.sha256})
    from energybench.evaluation import describe_model

    ckpt = loaded.checkpoint
    classes = ckpt["meta"].get("classes") if ckpt else (list(train.classes) if train is not None else None)
    what = {"joint": "E(x, y)", "conditional": "E(x, y) - E(x)", "marginal": "E(x)"}[mode]
    who = model_label({"model": describe_model(loaded)})
    title = f"{who}: SGLD on {what}, {steps} steps from {init}"
    save_sample_grids(samples.images, samples.labels, classes, out, title)
    return out
