"""`energybench data info | import | verify`.
"""

from __future__ import annotations

from pathlib import Path

import click

from energybench.cli.options import echo
from energybench.core.errors import UserError


@click.group()
def data():
    """Inspect, import and verify datasets."""


@data.command("info")
@click.argument("spec", required=False)
def data_info(spec):
    """Where SPEC resolves to, its splits, sizes and classes (default: cifar10 in the data home)."""
    from energybench import data as datalib

    source = datalib.resolve_source(spec)
    splits = datalib.available_splits(spec)
    loaded = [d for d in splits.values() if not isinstance(d, UserError)]
    if not loaded:  # nothing readable: say why, once
        raise splits["train"] if "has no train split" not in str(splits["train"]) else splits["test"]
    echo(f"source: {source.kind} {source.path}")
    echo(f"data home: {datalib.data_home()}   cache: {datalib.cache_dir()}")
    for split, d in splits.items():
        if isinstance(d, UserError):
            echo(f"{split}: none ({d})")
            continue
        echo(f"{split}: {len(d)} images {tuple(d.images.shape[1:])} uint8, "
                   f"{d.num_classes} classes; {d.source.get('label')}")
    echo(f"classes: {', '.join(loaded[0].classes)}")


@data.command("import")
@click.argument("spec")
@click.option("--name", default="cifar10", show_default=True, help="dataset name in the data home")
@click.option("--download", is_flag=True, help="let torchvision download SPEC (cifar10/cifar100)")
def data_import(spec, name, download):
    """Decode SPEC into the data home as NAME.npz, so `--data NAME` (the default) finds it."""
    import re

    from energybench import data as datalib

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise UserError(f"--name must be a plain name like cifar10 (letters, digits, _ . -), got {name!r}")
    if download and spec in datalib.TORCHVISION_FOLDERS:
        spec = str(datalib.download_torchvision(spec))
    path = datalib.import_source(spec, name)
    echo(f"imported {spec} -> {path}")


@data.command("verify")
@click.argument("spec", required=False)
@click.option("--reference", type=click.Path(exists=True, path_type=Path), default=None,
              help="an .npz of exact test images to compare the first test images against")
def data_verify(spec, reference):
    """Check counts, shapes, labels and checksums of SPEC; optionally compare with exact pixels."""
    from energybench.data.verify import verify_source

    report, ok = verify_source(spec, reference)
    echo(report)
    if not ok:
        raise UserError(f"{spec or 'cifar10'} failed verification (see above)")
