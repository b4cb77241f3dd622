"""What a reproduction runs: its presets (ci, smoke, paper: sizes, seeds, protocols) and the runs
the chosen tables need (one per recipe and dataset, with the evaluations their cells ask for).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from energybench.core.errors import UserError, option
from energybench.metrics import SUITES, figure_metrics
from energybench.reporting.cells import entry_protocol, entry_purification
from energybench.reporting.table_specs import load_table, run_name
from energybench.training.recipes import recipe_names


@dataclass(frozen=True)
class ReproductionPreset:
    """The scale of a reproduction."""

    name: str
    recipe_preset: str  # which preset of each recipe ("smoke" or "paper")
    train_overrides: tuple[str, ...]  # --set style, applied to every run
    test_images: dict  # metric -> first n test images ("default" for the rest; None = all)
    metric_params: dict = field(default_factory=dict)  # metric -> protocol overrides
    figures: bool = False  # sample gallery + landscape and memorization figures per run
    summary: str = ""
    checkpoint: str = "last"  # which checkpoint of each run is evaluated: last, or best (best.pt)
    seeds: int = 1  # training seeds per run (the JEAT paper repeats every experiment 5 times)

    def n_for(self, metric: str) -> int | None:
        return self.test_images.get(metric, self.test_images["default"])


PRESETS = {
    "ci": ReproductionPreset(
        "ci", "smoke",
        ("data.train_subset=1000", "optim.epochs=2", "data.eval_subset=0", "run.deterministic=true",
         "run.dynamics_probe=0"),
        {"default": 300, "autoattack": 48, "jfs": 100, "mfs": 100, "bpda-eot": 48},
        {"jfs": {"probes": 4}, "mfs": {"probes": 4}, "attack-sanity": {"max_images": 32, "square_queries": 300},
         "bpda-eot": {"steps": 5, "eot": 2}},
        summary="CPU, minutes: the regression fixture CI re-runs (1,000 images, 2 epochs)"),
    "smoke": ReproductionPreset(
        "smoke", "smoke", (),  # the recipes' smoke preset as it is: 5,000 images, 6 epochs
        {"default": 500, "autoattack": 100, "jfs": 200, "mfs": 200, "bpda-eot": 100},
        {"attack-sanity": {"max_images": 100}, "bpda-eot": {"steps": 20, "eot": 5}},
        figures=True, seeds=3,
        summary="CPU, about two hours of training and evaluation on 2 cores (tiny-cnn, 5,000 images, 6 epochs, 3 seeds)"),
    "paper": ReproductionPreset(
        "paper", "paper", (), {"default": None},
        {"autoattack": {"max_images": 10_000}, "is": {"n_per_class": 5000}, "fid": {"n_per_class": 5000},
         "attack-sanity": {"max_images": 1000}},
        figures=True, summary="GPU, days: every recipe's paper preset, full test set, 50,000 IS/FID samples, 5 seeds",
        checkpoint="best", seeds=5),
}


# the figures of each run: every metric with a figure but the attack diagnostics
FIGURE_METRICS = [name for name in figure_metrics() if name not in SUITES["diagnostics"]]


ROBUSTNESS_METRICS = ("pgd20", "pgd20-energy", "autoattack", "pgd20-ebjdat-public", "pgd20-jem-public")


GALLERY = {"n_per_class": 10, "mode": "joint", "init": "class-gaussian", "steps": 100,
           "step_size": 0.25, "noise": 0.005}


PURIFICATION_KEY = "purification"  # in an evaluation's protocol: the model is evaluated behind it


@dataclass
class RunPlan:
    """One model to train and the evaluations the tables need from it: (metric, the entry's own
    protocol values for it, e.g. the sampler a paper used for that row, and under PURIFICATION_KEY
    the test-time purification a row evaluates the model behind)."""

    name: str
    recipe: str
    dataset: str
    params: dict
    evaluations: list[tuple[str, dict]]

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(metric for metric, _ in self.evaluations))


def plan(tables: list[str], only: list[str] | None = None) -> list[RunPlan]:
    """The runs behind `tables` (optionally only those of the given recipes), in table order."""
    runs: dict[str, RunPlan] = {}
    for name in tables:
        spec = load_table(name)
        for entry in spec["entries"]:
            if entry["recipe"] is None or (only and entry["recipe"] not in only):
                continue
            key = run_name(entry)
            run = runs.setdefault(key, RunPlan(key, entry["recipe"], entry["dataset"],
                                               dict(entry.get("params", {})), []))
            if (run.recipe, run.dataset, run.params) != (entry["recipe"], entry["dataset"], entry.get("params", {})):
                raise ValueError(f"table {name}: run {key} means two different models")
            purified = {PURIFICATION_KEY: entry_purification(entry)} if entry_purification(entry) else {}
            wanted = [(m["metric"], {**entry_protocol(entry, m), **purified}) for m in spec["measures"]]
            wanted += [(m["public"]["metric"], {}) for m in spec["measures"]
                       if m.get("public") and entry["key"] in m["public"]["entries"]]
            if any(m in ROBUSTNESS_METRICS for m, _ in wanted):
                wanted.append(("attack-sanity", {}))  # the diagnostics suite behind every robustness number
            run.evaluations += [w for w in wanted if w not in run.evaluations]
    return list(runs.values())


def parse_only(only: str | None) -> list[str] | None:
    if not only:
        return None
    names = [s.strip() for s in only.split(",") if s.strip()]
    unknown = [n for n in names if n not in recipe_names()]
    if unknown:
        raise UserError(f"{option('only')}: unknown recipe(s) {', '.join(unknown)}; known: {', '.join(recipe_names())}")
    return names


def base_run_name(name: str) -> str:
    """The run a seed's folder belongs to: 'jeat-seed2' -> 'jeat'."""
    return re.sub(r"-seed\d+$", "", name)


def seeded(runs: list[RunPlan], seeds: int) -> list[tuple[RunPlan, int]]:
    """Each run once per training seed 0..seeds-1; seed k > 0 trains into `<run>-seed<k>`."""
    return [(replace(run, name=run.name if k == 0 else f"{run.name}-seed{k}"), k)
            for run in runs for k in range(seeds)]


def preset_of(preset: str, seeds: int | None) -> ReproductionPreset:
    if preset not in PRESETS:
        raise UserError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    if seeds is not None:
        if seeds < 1:
            raise UserError(f"{option('seeds')} must be at least 1, got {seeds}")
        p = replace(p, seeds=seeds)
    return p
