"""`energybench train RECIPE`: train a recipe at a preset, from a config file, or resumed.
"""

from __future__ import annotations

from pathlib import Path

import click

from energybench.cli.options import echo, registry_choice
from energybench.core.errors import UserError


@click.command()
@click.argument("recipe", required=False, type=registry_choice("recipes"))
@click.option("--preset", default="smoke", show_default=True, type=registry_choice("presets"),
              help="paper or smoke")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="a TOML or YAML config (e.g. saved from --show-config); --set applies on top")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override a config value, e.g. optim.lr=0.05 or recipe.sigma=16/255 (repeatable)")
@click.option("--data", "data_spec", default=None,
              help="data spec: cifar10, a torchvision folder, an image tree or .tar.gz, an .npz")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="run folder (default runs/<recipe>-<preset>)")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N")
@click.option("--resume", is_flag=True,
              help="continue the run in --out from its last checkpoint; --set may then change "
                   "optim.lr, optim.epochs, data.eval_subset, run.checkpoint_every_steps, "
                   "run.amp, run.channels_last, run.deterministic and run.guard.*")
@click.option("--show-config", is_flag=True,
              help="print the resolved config as TOML and exit (save it and pass it to --config)")
def train(recipe, preset, config_file, overrides, data_spec, out_dir, device, resume, show_config):
    """Train RECIPE (see `energybench list recipes`) with a preset, a config file and overrides."""
    from dataclasses import replace

    from energybench.training.config import apply_overrides, dump_config, read_config_file
    from energybench.training.recipes import preset_config
    from energybench.training.run import train as run_training

    from_file: list[str] = []
    if config_file is not None:
        named, from_file = read_config_file(config_file)
        if recipe is not None and recipe != named:
            raise UserError(f"{config_file} is a config for {named}, not {recipe}; drop RECIPE or "
                            f"give a {recipe} config")
        recipe = named
        registry_choice("recipes").convert(recipe, None, None)  # a misspelt name gets the list
    if recipe is None:
        raise UserError("name a RECIPE (see `energybench list recipes`) or give --config FILE")
    cfg = preset_config(recipe, preset)
    if data_spec is not None:
        cfg = replace(cfg, data=replace(cfg.data, source=data_spec))
    cfg = apply_overrides(cfg, from_file + list(overrides))
    if show_config:
        echo(f"# energybench train {recipe} --preset {preset}: resolved config\n" + dump_config(cfg), nl=False)
        return
    from energybench.core.distributed import joined

    out_dir = out_dir or Path("runs") / f"{recipe}-{preset}"
    resume_overrides = from_file + list(overrides)
    if resume and data_spec is not None:  # the same data is no change; other data is refused
        resume_overrides.append(f"data.source={Path(data_spec).resolve() if Path(data_spec).exists() else data_spec}")
    with joined(device) as (world, dev):  # torchrun --nproc_per_node N -m energybench train ...
        path = run_training(cfg, out_dir, dev, resume=resume, world=world,
                            resume_overrides=resume_overrides if resume else None)
    if world.is_main:
        echo(f"checkpoint: {path}")
