"""CLI conventions: config files from --show-config, typos refused with a hint, JSON output,
and progress lines without a terminal."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch
from testkit import seeded_model, synthetic_npz

pytestmark = pytest.mark.synthetic

REPO = Path(__file__).resolve().parents[2]


def test_show_config_output_is_a_config_file(tmp_path, run_cli):
    code, shown, _ = run_cli("train", "jeat", "--show-config")
    assert code == 0
    (tmp_path / "jeat.toml").write_text(shown)
    code, again, err = run_cli("train", "--config", str(tmp_path / "jeat.toml"), "--show-config")
    assert code == 0 and again == shown, err
    import tomllib

    import yaml

    (tmp_path / "jeat.yaml").write_text(yaml.safe_dump(tomllib.loads(shown), sort_keys=False))
    code, from_yaml, _ = run_cli("train", "--config", str(tmp_path / "jeat.yaml"), "--show-config")
    assert from_yaml == shown
    code, changed, _ = run_cli("train", "--config", str(tmp_path / "jeat.toml"), "--set", "recipe.eps=4/255",
                               "--set", "optim.lr=0.01", "--show-config")
    doc = tomllib.loads(changed)
    assert doc["recipe"]["eps"] == pytest.approx(4 / 255) and doc["optim"]["lr"] == 0.01
    code, _, err = run_cli("train", "jem", "--config", str(tmp_path / "jeat.toml"))
    assert code == 2 and "a config for jeat, not jem" in err


@pytest.mark.parametrize("args, expected", [
    (["train", "jaet"], "'jaet' is not one of"),
    (["train", "jeat", "--preset", "papr"], "'papr' is not one of"),
    (["train", "jeat", "--set", "params.eps=0.1"], "set as recipe.eps"),
    (["eval", "--ckpt", "x.pt", "--metric", "pgd-20"], "'pgd-20' is not one of"),
    (["eval", "--ckpt", "x.pt", "--suite", "robustness"], "'robustness' is not one of"),
    # an existing model: a missing file is refused first (handles.reference), before the protocol values
    (["eval", "--ckpt", "{repo}/checkpoints/jem-smoke.pt", "--metric", "energy-hist", "--param", "noise_scale=0.01"],
     "is now called noise"),
    (["report", "--table", "jeat-t9"], "'jeat-t9' is not one of"),
])
def test_typos_and_old_names_are_refused_with_the_list_or_a_hint(run_cli, args, expected):
    code, _, err = run_cli(*[a.replace("{repo}", str(REPO)) for a in args])
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1


def test_list_and_eval_print_json(tmp_path, run_cli):
    code, out, _ = run_cli("list", "--json")
    listing = json.loads(out)
    assert code == 0 and "jeat" in listing["recipes"] and "autoattack" in listing["metrics"]
    # every metric's --param keys with their defaults and ranges or choices, as the protocol declares them
    from energybench.attacks.pgd import PGDConfig
    from energybench.metrics import METRICS

    params = listing["metric_params"]
    assert set(params) == set(listing["metrics"])
    for name, keys in params.items():
        assert set(keys) == {f.name for f in dataclasses.fields(METRICS.get(name).Params)}, name
    assert params["pgd20"]["steps"] == {"default": 20, "type": "int", "range": PGDConfig.LIMITS["steps"]}
    assert params["pgd20"]["norm"]["choices"] == ["Linf", "L2"] and params["autoattack"]["version"]["default"] == "standard"
    code, out, _ = run_cli("list", "metrics")
    assert "--param eps=auto, step_size=auto, steps=20, restarts=1" in out
    model = seeded_model()
    program = torch.export.export(model, (torch.rand(2, 3, 32, 32),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    torch.export.save(program, tmp_path / "m.pt2")
    data = synthetic_npz(tmp_path / "synth.npz")
    code, out, err = run_cli("eval", "--model", str(tmp_path / "m.pt2"), "--data", str(data), "--metric",
                             "clean", "--json", "--device", "cpu")
    assert code == 0, err
    (record,) = json.loads(out)
    assert record["metric"] == "clean" and record["model"]["kind"] == "export"


def test_progress_without_a_terminal_is_plain_log_lines(capsys, monkeypatch):
    from energybench.core import progress as progress_module

    monkeypatch.setenv("ENERGYBENCH_PROGRESS", "1")
    monkeypatch.setenv("ENERGYBENCH_PROGRESS_SECONDS", "0")
    bar = progress_module.progress(range(3), desc="work")
    assert isinstance(bar, progress_module.LogLines)  # pytest's stderr is not a terminal
    bar.set_postfix(loss="0.5")
    assert list(bar) == [0, 1, 2]
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("work: 1/3 (33%)") and lines[-1].startswith("work: 3/3 (100%)")
    assert "loss=0.5" in lines[-1] and "\r" not in "".join(lines)
    assert len(lines) == 3 and sum(line.startswith("work: 3/3") for line in lines) == 1  # the final line once


def test_a_terminal_that_reports_no_width_gets_plain_lines(monkeypatch):
    from energybench.core import progress as progress_module

    monkeypatch.setenv("ENERGYBENCH_PROGRESS", "1")
    monkeypatch.setattr(progress_module.sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(progress_module.sys.stderr, "fileno", lambda: 2)
    monkeypatch.setattr(progress_module.os, "get_terminal_size", lambda fd: os.terminal_size((0, 0)))
    assert isinstance(progress_module.progress(range(3), desc="work"), progress_module.LogLines)
    monkeypatch.setattr(progress_module.os, "get_terminal_size", lambda fd: os.terminal_size((80, 24)))
    assert not isinstance(progress_module.progress(range(3), desc="work"), progress_module.LogLines)


def test_autoattack_reports_each_attack_as_it_ends(monkeypatch, capsys):
    """pyautoattack's own lines (per attack and batch, with the running robust accuracy) reach
    stderr as progress while the record still collects its per-attack accuracies."""
    import logging

    from energybench.attacks.autoattack import _collect_log

    monkeypatch.setenv("ENERGYBENCH_PROGRESS", "1")
    with _collect_log() as log:
        logging.getLogger("auto-attack").info("robust accuracy after APGD-CE: 31.25% (total time 2.4 s)")
    assert log.after == {"apgd-ce": 0.3125}
    assert capsys.readouterr().err.strip() == "autoattack: robust accuracy after APGD-CE: 31.25% (total time 2.4 s)"


def test_a_long_item_gets_heartbeats_that_say_where_it_is(monkeypatch, capsys):
    """An item that keeps a progress display silent for its period gets a line from the heartbeat
    thread, with the detail the work inside it set (an attack's step)."""
    import time

    from energybench.core import progress as progress_module

    monkeypatch.setenv("ENERGYBENCH_PROGRESS", "1")
    monkeypatch.setenv("ENERGYBENCH_PROGRESS_SECONDS", "0.2")
    for _ in progress_module.progress(range(2), desc="batches"):
        progress_module.set_detail("attack step 3/20")
        time.sleep(0.8)
    lines = capsys.readouterr().err.strip().splitlines()
    beats = [line for line in lines if "working on item 1: attack step 3/20" in line]
    assert beats and all(line.startswith("batches: 0/2 (0%)") for line in beats), lines
    assert lines[-1].startswith("batches: 2/2 (100%)")


def test_a_short_period_is_kept_even_while_the_heartbeat_waits_out_a_long_one(monkeypatch, capsys):
    """The heartbeat thread is one per process: a display with a short period that starts while
    the thread waits out a long period (up to 1 s) wakes it, so its first silent item is heard."""
    import time

    from energybench.core import progress as progress_module

    monkeypatch.setenv("ENERGYBENCH_PROGRESS", "1")
    monkeypatch.setenv("ENERGYBENCH_PROGRESS_SECONDS", "30")
    for _ in progress_module.progress(range(1), desc="long"):
        time.sleep(0.1)  # the thread is running and waits in steps of a second
    capsys.readouterr()
    monkeypatch.setenv("ENERGYBENCH_PROGRESS_SECONDS", "0.2")
    for _ in progress_module.progress(range(1), desc="short"):
        progress_module.set_detail("step 1")
        time.sleep(0.5)
    lines = capsys.readouterr().err.strip().splitlines()
    assert any(line.startswith("short: 0/1 (0%)") and "working on item 1: step 1" in line for line in lines), lines


def test_an_evaluation_of_one_batch_is_not_silent(monkeypatch, capsys, exact_npz, tmp_path):
    """PGD on fewer images than one batch used to print nothing until the end: the heartbeat
    names the attack's step while it runs."""
    import time

    import torch.nn as nn

    from energybench.api import evaluate

    class Slow(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3 * 32 * 32, 10)

        def forward(self, x):
            time.sleep(0.05)
            return self.linear(x.flatten(1))

    monkeypatch.setenv("ENERGYBENCH_PROGRESS", "1")
    monkeypatch.setenv("ENERGYBENCH_PROGRESS_SECONDS", "0.3")
    evaluate(Slow(), str(exact_npz), ["pgd20"], n=8, out_dir=tmp_path, verbose=True)
    err = capsys.readouterr().err
    assert "pgd20: 0/1 (0%)" in err and "working on item 1: attack step " in err, err
