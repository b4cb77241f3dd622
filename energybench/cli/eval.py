"""`energybench eval`: run metrics on any model and write their records and a summary.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from energybench.cli.options import POSITIVE, SEED, cli_text, echo, model_options, registry_choice
from energybench.core.errors import SomeNotComputed, UserError
from energybench.core.validation import key_value
from energybench.handles.reference import check_model_reference


@click.command("eval")
@model_options
@click.option("--data", "data_spec", default=None,
              help="test data (default: the data the checkpoint was trained on)")
@click.option("--n", "--images", "n", type=POSITIVE, default=None,
              help="evaluate the first N test images (default all); under torchrun write --images "
                   "(torchrun reads --n as its own --nnodes / --nproc-per-node)")
@click.option("--suite", "suites", multiple=True, type=registry_choice("suites"),
              help="metric suite(s), repeatable")
@click.option("--metric", "metrics", multiple=True, type=registry_choice("metrics"),
              help="single metric(s), repeatable")
@click.option("--eps", "eps", multiple=True, help="attack budget: L-inf as a pixel fraction (8/255), L2 as a "
              "length in pixel units (0.5); default: the norm's standard budget; one per run")
@click.option("--norm", type=click.Choice(["Linf", "L2"], case_sensitive=False), default=None,
              help="threat model of the attack metrics (default Linf; a RobustBench model: its "
                   "--threat-model)")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="records folder (default eval-<ckpt name>/ beside the checkpoint)")
@click.option("--device", default="auto", show_default=True)
@click.option("--batch-size", type=POSITIVE, default=256, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--force", is_flag=True, help="recompute metrics that are already recorded")
@click.option("--inception-weights", default=None,
              help="torch-fidelity Inception weights for is/fid: a path, or 'download' when online")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="override a metric protocol value, e.g. step_size=1/255, n_per_class=5000 or "
                   "probes=20 (repeatable)")
@click.option("--train-data", default=None,
              help="training data for metrics that need it (class-Gaussian SGLD init, FID, "
                   "memorization) when the model does not name its own (.pt2, RobustBench)")
@click.option("--format", "fmt", default="summary", show_default=True,
              type=click.Choice(["summary", "json", "robustbench"]),
              help="print a summary table, the records as JSON, or also write a RobustBench "
                   "leaderboard entry (needs the clean and autoattack metrics)")
@click.option("--json", "fmt", flag_value="json", help="same as --format json")
@click.option("--name", "entry_name_", default=None, help="with --format robustbench: the entry's name "
              "(default: the model file's name)")
@click.option("--authors", default="", help="with --format robustbench: the entry's authors")
@click.option("--venue", default="", help="with --format robustbench: where the model was published")
@click.option("--architecture", default=None, help="with --format robustbench: the architecture "
              "(default: the model's, e.g. WideResNet-28-10)")
@click.option("--link", default="", help="with --format robustbench: a link to the paper or code")
@click.option("--nonfinite", type=click.Choice(["refuse", "wrong"]), default="refuse", show_default=True,
              help="images whose logits are NaN or infinite: stop the metric (refuse), or count them "
                   "as wrong in clean, PGD and AutoAttack accuracy (the record says how many)")
@click.option("--yes", is_flag=True, help="start without asking an evaluation estimated at over 24 hours, "
              "or one at an L-inf eps beyond 16/255 (on a terminal it asks; in a script it is refused "
              "without this)")
@click.option("--save-adversarial", is_flag=True,
              help="write the attack metrics' (PGD, autoattack, bpda-eot) adversarial examples beside their records (<record>.adversarial.npz: "
                   "images as float32 in [0, 1], exactly as attacked, with each image's index); a record "
                   "kept without them is computed again")
@click.option("--purify", "purify", type=click.IntRange(min=0), default=0, metavar="STEPS",
              help="evaluate the model behind test-time purification: STEPS Langevin steps on its energy "
                   "E(x) before it classifies (--param purify_step_size=0.25, purify_noise=0.005, "
                   "purify_chains=150: the logits of that many purifications averaged); recorded in every "
                   "record; attack it with --metric bpda-eot")
def eval_cmd(model_spec, threat_model, model_dir, data_spec, n, suites, metrics, eps, norm, out_dir, device,
             batch_size, seed, force, inception_weights, params, train_data, fmt, entry_name_, authors, venue,
             architecture, link, nonfinite, yes, save_adversarial, purify):
    """Evaluate a model; one JSON record per metric, then a summary table."""
    import json

    if len(eps) > 1:
        raise UserError(f"--eps given {len(eps)} times ({', '.join(eps)}); give one budget per run (a curve "
                        f"over budgets is --metric robust-curve with --param eps_grid=...)")
    eps = eps[0] if eps else None
    check_model_reference(model_spec)  # before torch loads: a mistyped path costs no wait

    from energybench.core.atomic import write_json_atomic, write_text_atomic
    from energybench.core.distributed import joined
    from energybench.evaluation.protocol import check_param_keys, split_purification
    from energybench.evaluation.runner import evaluate
    from energybench.metrics import resolve_metrics
    from energybench.records.collection import folder_summary
    from energybench.records.text import format_summary

    names = resolve_metrics(list(suites), list(metrics))
    entry_fields = {"--name": entry_name_, "--authors": authors, "--venue": venue, "--architecture": architecture,
                    "--link": link}
    given = [flag for flag, value in entry_fields.items() if value]
    if given and fmt != "robustbench":
        raise UserError(f"{', '.join(given)} describe a RobustBench entry; add --format robustbench")
    if fmt == "robustbench":
        from energybench.handles.zoo import LEADERBOARD_METRICS

        missing = [m for m in LEADERBOARD_METRICS if m not in names]
        if missing:
            raise UserError(f"--format robustbench needs the clean and autoattack metrics; add "
                            f"--metric {' --metric '.join(missing)}")
    raw = dict(key_value(item, "--param", "n_per_class=50") for item in params)
    purification, raw = split_purification(purify, raw)
    check_param_keys(names, raw)
    overrides = {**raw, "eps": eps if eps is not None else raw.get("eps"), "norm": norm or raw.get("norm"),
                 "inception_weights": inception_weights}
    refused: dict[str, str] = {}
    # torchrun --nproc_per_node N -m energybench eval ...: images split over the ranks
    with joined(device) as (world, dev):
        say = (lambda m: echo(m, err=True)) if world.is_main else (lambda m: None)
        records = evaluate(model_spec, names, data=data_spec, n=n, out_dir=out_dir,
                           device=dev, batch_size=batch_size, seed=seed,
                           overrides=overrides, force=force, log=say,
                           refused=refused if len(names) > 1 else None, train_data=train_data,
                           threat_model=threat_model, model_dir=model_dir, world=world,
                           nonfinite=nonfinite, confirm_long=lambda line: yes or _ask(line),
                           purification=purification, save_adversarial=save_adversarial)
    if not world.is_main:
        return
    out = Path(records[0]["file"]).parent if records else out_dir
    if records:
        table = format_summary(records)
        not_run = "".join(f"\n- {k}: not computed ({v})" for k, v in refused.items())
        write_text_atomic(cli_text(folder_summary(out, str(model_spec)) + (
            f"\nNot computed in the last run:{not_run}\n" if refused else "")), out / "summary.md")
        if fmt == "json":
            echo(json.dumps(records, indent=1))
        else:
            echo(f"\n{model_spec} on {records[0]['data']['label']}\n{table}\n\nrecords: {out}")
    if refused:
        raise SomeNotComputed(f"not computed: {', '.join(refused)} (first reason: {next(iter(refused.values()))}); "
                              f"the other metrics are recorded in {out}")
    if fmt == "robustbench":
        from energybench.handles.zoo import architecture_name, entry_name, leaderboard_entry

        model = records[0]["model"]
        name = entry_name_ or entry_name(model)
        entry = leaderboard_entry(records, name, architecture or cli_text(architecture_name(model)),
                                  threat_model=threat_model if model["kind"] == "robustbench" else None,
                                  additional_data=False if model["kind"] == "checkpoint" else None,
                                  authors=authors, venue=venue, link=link)
        path = out / f"robustbench-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name).strip('_') or 'entry'}.json"
        write_json_atomic(entry, path)
        echo(f"RobustBench leaderboard entry: {path}")


def _ask(question: str) -> bool:
    """On a terminal, the user's answer to `question` (a long run, an unusual budget); in a script, no."""
    import sys

    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    return click.confirm(cli_text(question), default=False, err=True)
