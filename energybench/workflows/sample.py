"""`energybench sample`: load a model, generate balanced samples, save them and their grids."""

from __future__ import annotations

from pathlib import Path

from energybench.core.atomic import check_writable_dir
from energybench.core.distributed import World
from energybench.core.errors import option
from energybench.core.runtime import exact_float32
from energybench.core.validation import RangeError
from energybench.energy.generation import GenerationConfig, generate_to_file, training_split
from energybench.evaluation.identity import describe_model
from energybench.handles.model_handle import default_out_dir, open_model
from energybench.records.figures import model_label, save_sample_grids


def sample_model(model, n_per_class, mode, init, steps, step_size, noise, train_data,
                 out_dir, device, seed, threat_model: str = "Linf", model_dir=None,
                 world: World = World()) -> Path:
    """Generate and save samples.npz and the class grids for any model handle (a checkpoint,
    .pt2, robustbench:NAME); everything is checked before the sampling starts. Under torchrun
    the batches are split over the ranks and the merged samples.npz equals one process's."""
    try:  # every field is one of this function's arguments: the error names it as an option
        cfg = GenerationConfig(n_per_class=n_per_class, mode=mode, init=init, steps=steps,
                               step_size=step_size, noise=noise, seed=seed)
    except RangeError as exc:
        raise exc.renamed(option(exc.field)) from None
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
        samples = generate_to_file(loaded, cfg, device, out / "samples.npz",
                                   {"model": loaded.name, "sha256": loaded.sha256}, train=train, world=world)
    if not world.is_main:
        return out

    ckpt = loaded.checkpoint
    classes = ckpt["meta"].get("classes") if ckpt else (list(train.classes) if train is not None else None)
    what = {"joint": "E(x, y)", "conditional": "E(x, y) - E(x)", "marginal": "E(x)"}[mode]
    who = model_label({"model": describe_model(loaded)})
    title = f"{who}: SGLD on {what}, {steps} steps from {init}"
    save_sample_grids(samples.images, samples.labels, classes, out, title)
    return out
