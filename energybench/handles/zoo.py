"""RobustBench: zoo models in, leaderboard entries out, behind a lazy import.

robustbench 1.1.1 cannot be imported as published next to pyautoattack: its `robustbench.eval`
does `from autoattack import AutoAttack` (pyautoattack installs as `pyautoattack`), and its
`robustbench.loaders` imports `pkg_resources`, which recent setuptools no longer ship. `robustbench()`
imports it with both names supplied for the duration of the import only (`autoattack` as an alias
of pyautoattack; `pkg_resources.resource_filename` by importlib.resources), so nothing else in the
process sees them. Any failure is a one-line UserError; nothing else in energybench imports it.

Zoo models take [0, 1] NCHW images and normalise inside, as energybench's models do.
`robustbench.utils.load_model` reads `MODEL_DIR/<dataset>/<threat model>/<name>.pt` and only
downloads (from Google Drive) when that file is absent.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.resources
import re
import sys
import types
import warnings
from pathlib import Path

import torch.nn as nn

from energybench.core.errors import UserError, option
from energybench.handles.reference import PREFIX, is_zoo_name

THREAT_MODELS = ("Linf", "L2", "corruptions")
DATASETS = {"cifar10": 10, "cifar100": 100}
# RobustBench's leaderboard entry (robustbench.utils.ModelInfo; model_info/<dataset>/<threat>/*.json)
LEADERBOARD_EPS = {"Linf": "8/255", "L2": "0.5"}
LEADERBOARD_BUDGET = {"Linf": 8 / 255, "L2": 0.5}


@contextlib.contextmanager
def _import_names():
    """`autoattack` (= pyautoattack) and a minimal `pkg_resources`, only while robustbench imports."""
    added = {}
    try:
        import pyautoattack
        import pyautoattack.state

        added.update({"autoattack": pyautoattack, "autoattack.state": pyautoattack.state})
    except ImportError:
        pass
    if importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = lambda package, path: str(importlib.resources.files(package).joinpath(path))
        added["pkg_resources"] = shim
    added = {k: v for k, v in added.items() if k not in sys.modules}
    sys.modules.update(added)
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


def robustbench():
    """The robustbench package (its `utils` and `model_zoo` loaded), or a one-line UserError."""
    try:
        with _import_names(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module("robustbench")
            importlib.import_module("robustbench.utils")
            importlib.import_module("robustbench.model_zoo")
    except Exception as exc:  # ImportError, or any error raised while its modules run
        raise UserError(f"robustbench is not usable here ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); install it with "
                        f"pip install 'energybench[robustbench]'") from None
    return module


def zoo_names(dataset: str = "cifar10", threat_model: str = "Linf") -> list[str]:
    """The model names RobustBench lists for a dataset and threat model."""
    rb = robustbench()
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    return sorted(rb.model_zoo.model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat_model)])


def load_zoo_model(spec: str, threat_model: str = "Linf", model_dir: str | Path | None = None,
                   dataset: str = "cifar10") -> tuple[nn.Module, Path | None, dict]:
    """robustbench:NAME -> (model in eval mode on CPU, its weights file, provenance).

    The weights come from MODEL_DIR/<dataset>/<threat_model>/NAME.pt (default ./models, as in
    RobustBench); where that file is absent, robustbench downloads it (needs the internet)."""
    name = spec[len(PREFIX):]
    if dataset not in DATASETS:
        raise UserError(f"{option('dataset', repr(dataset))} is not one energybench evaluates; use {', '.join(DATASETS)}")
    if threat_model not in THREAT_MODELS:
        raise UserError(f"{option('threat_model', repr(threat_model))} is not a RobustBench threat model; use "
                        f"{', '.join(THREAT_MODELS)}")
    known = zoo_names(dataset, threat_model)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"{len(known)} names, e.g. {', '.join(known[:3])}"
        raise UserError(f"{name!r} is not in RobustBench's {dataset} {threat_model} zoo ({hint})")
    model_dir = Path(model_dir) if model_dir is not None else Path("models")
    weights = model_dir / dataset / threat_model / f"{name}.pt"
    from robustbench.utils import load_model

    folders = [model_dir, model_dir / dataset, model_dir / dataset / threat_model]
    absent = [f for f in folders if not f.exists()]  # robustbench creates them before downloading
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = load_model(name, model_dir=str(model_dir), dataset=dataset, threat_model=threat_model)
    except Exception as exc:
        for folder in reversed(absent):  # a refusal leaves nothing behind: no empty folders
            with contextlib.suppress(OSError):
                folder.rmdir()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = first.split(" with url:")[0]  # a connection error's URL says nothing more
        where = (f"the weights at {weights} do not load ({first[:160]})" if weights.is_file()
                 else f"{weights} is absent and could not be downloaded ({type(exc).__name__}: {first[:160]})")
        raise UserError(f"robustbench:{name}: {where}; put the model's state dict there "
                        f"(or pass {option('model_dir')})") from None
    info = {"robustbench_name": name, "dataset": dataset, "threat_model": threat_model,
            "architecture": type(model).__name__}
    return model.eval(), (weights if weights.is_file() else None), info


LEADERBOARD_METRICS = ("clean", "autoattack")  # what a RobustBench entry reports


def leaderboard_entry(records: list[dict], name: str, architecture: str, dataset: str = "cifar10",
                      threat_model: str | None = None, additional_data: bool | None = None,
                      authors: str = "", venue: str = "", link: str = "") -> dict:
    """A RobustBench leaderboard entry (the fields of robustbench.utils.ModelInfo, accuracies as
    percent strings with two decimals, as in RobustBench's model_info JSON files) from one model's
    `clean` and `autoattack` records. additional_data: whether training used data beyond the
    dataset (False for energybench runs; None, written as null, where it is not known). The
    leaderboard is the autoattack record's norm (threat_model, when given, must be it) and its eps
    must be the leaderboard's; the footnote says what was measured (images, data) so a partial
    evaluation is never mistaken for the full protocol."""
    by_metric = {r["metric"]: r for r in records}
    missing = [m for m in LEADERBOARD_METRICS if m not in by_metric]
    if missing:
        raise UserError(f"a RobustBench entry needs the clean and autoattack records; missing "
                        f"{', '.join(missing)} (add {' '.join(option('metric', m) for m in missing)})")
    clean, aa = by_metric["clean"], by_metric["autoattack"]
    eps, norm = aa["params"]["eps"], aa["params"].get("norm", "Linf")  # an L-inf protocol leaves norm out
    if threat_model is not None and threat_model != norm:
        raise UserError(f"the autoattack record is {norm}, not {threat_model}; RobustBench's {threat_model} "
                        f"leaderboard needs an autoattack record in {threat_model} ({option('norm', threat_model)})")
    if norm not in LEADERBOARD_EPS or abs(eps - LEADERBOARD_BUDGET[norm]) > 1e-9 \
            or aa["params"].get("version") != "standard":
        raise UserError(f"the autoattack record is {norm} eps {eps:.6g}, version "
                        f"{aa['params'].get('version')}; RobustBench's {norm} leaderboard "
                        f"needs the standard version at {LEADERBOARD_EPS.get(norm, '?')}")
    threat_model = norm
    data = clean["data"]["label"]
    partial = "" if aa["n"] >= 10000 else f" on the first {aa['n']} test images only (RobustBench uses all 10,000)"
    return {
        "link": link, "name": name, "authors": authors, "additional_data": additional_data,
        "number_forward_passes": 1, "dataset": dataset, "venue": venue, "architecture": architecture,
        "eps": LEADERBOARD_EPS[threat_model],
        "clean_acc": f"{100 * clean['value']:.2f}", "reported": "",
        "autoattack_acc": f"{100 * aa['value']:.2f}",
        "footnote": (f"Measured with energybench (standard AutoAttack, {norm}, pyautoattack) on {data}: clean {clean['n']} images, AutoAttack {aa['n']}"
                     f"{partial}."),
    }


def entry_name(model: dict) -> str:
    """A file-safe name for a model's leaderboard entry."""
    if model.get("robustbench_name"):
        name = model["robustbench_name"]
    elif model.get("path"):  # a checkpoint or a .pt2: its file name without folders or suffix
        stem = Path(model["path"]).stem
        name = f"{model['recipe']}-{stem}" if model.get("recipe") else stem
    else:
        name = model["name"]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_")


def architecture_name(model: dict) -> str:
    """How a leaderboard names the architecture: the zoo's class, or ours with its size."""
    if model.get("architecture"):
        return model["architecture"]
    spec = model.get("model") or {}
    if spec.get("name") == "wrn":
        kw = spec["kwargs"]
        return f"WideResNet-{kw.get('depth')}-{kw.get('widen_factor')}"
    return {"wrn-28-10": "WideResNet-28-10", "wrn-16-4": "WideResNet-16-4",
            "preact-resnet18": "PreActResNet-18", "tiny-cnn": "tiny CNN"}.get(
        spec.get("name"), f"not stated (a torch.export program; pass {option('architecture')})" if model["kind"] == "export"
        else model["kind"])
