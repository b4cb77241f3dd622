"""The L2 threat model beside L-inf: the attack against a closed form and pyautoattack's APGD-CE
in L2, norms carried through protocols, records, summaries, RobustBench models and training, and
L-inf records keeping the identity they had before norms existed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import energybench
from energybench.attacks.pgd import PGDConfig, parse_eps, pgd
from energybench.core.errors import UserError
from energybench.metrics import METRICS
from energybench.records.text import protocol_text, threat_model_mismatch

REFERENCE = Path(__file__).resolve().parents[2] / "reference" / "ci" / "records"


class Linear(nn.Module):
    """logits = W x + b on flattened [0, 1] images."""

    def __init__(self, d: int, k: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(k, d, generator=g))
        self.b = nn.Parameter(torch.randn(k, generator=g))

    def forward(self, x):
        return x.flatten(1) @ self.w.T + self.b


class SmallNet(nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                                  nn.Flatten(), nn.Linear(128, 10))

    def forward(self, x):
        return self.body(x)


def synthetic(n=24, seed=0):
    """uint8 CIFAR-shaped images whose class is their colour mean, labels 0..9."""
    rng = np.random.default_rng(seed)
    means = rng.integers(40, 215, size=(10, 3))
    labels = np.arange(n) % 10
    images = np.clip(means[labels][:, :, None, None] + rng.normal(0, 25, size=(n, 3, 32, 32)), 0, 255)
    return torch.from_numpy(images.astype(np.uint8)), torch.from_numpy(labels).long()


def trained_small_net(images, labels, steps=150):
    net = SmallNet()
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    x = images.float() / 255
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), labels).backward()
        opt.step()
    return net.eval()


@pytest.mark.synthetic
def test_l2_pgd_reaches_the_closed_form_on_a_linear_model():
    """Two classes, a linear model, images in the middle of [0, 1]: the smallest L2 perturbation
    that flips image i has length margin_i / ||w_y - w_other|| (the box does not bind), so
    L2 PGD at eps must fool exactly the images whose distance is below eps."""
    torch.manual_seed(1)
    d, n, eps = 3 * 8 * 8, 400, 0.5
    model = Linear(d, 2, seed=3)
    w_diff = (model.w[1] - model.w[0]).detach()
    with torch.no_grad():  # the boundary through the grey image 0.5
        model.b.copy_(-model.w.sum(1) * 0.5)
    # images spread along the boundary's normal, at signed distances in [-1, 1] from it
    along = (2 * torch.rand(n, 1) - 1) * w_diff / w_diff.norm()
    x = (0.5 + 0.02 * (2 * torch.rand(n, d) - 1) + along).view(n, 3, 8, 8)
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)  # every image starts right
    margin = (logits[:, 1] - logits[:, 0]).abs()
    distance = margin / w_diff.norm()
    x_adv = pgd(model, x, y, PGDConfig(eps=eps, norm="L2", steps=40), torch.Generator().manual_seed(0))
    with torch.no_grad():
        fooled = model(x_adv).argmax(1) != y
    clear = (distance - eps).abs() > 0.02 * eps  # leave out images within 2% of the boundary
    assert 0.2 < float((distance < eps).float().mean()) < 0.8  # both kinds are present
    assert torch.equal(fooled[clear], (distance < eps)[clear])
    assert float((x_adv - x).flatten(1).norm(dim=1).max()) <= eps + 1e-5
    assert 0.05 < float(x_adv.min()) and float(x_adv.max()) < 0.95  # the box did not bind


@pytest.mark.synthetic
def test_l2_pgd_stays_in_the_ball_and_the_box_and_linf_is_unchanged():
    images, labels = synthetic(16)
    x, net = images.float() / 255, trained_small_net(images, labels, steps=30)
    for eps in (0.1, 2.0, 40.0):
        x_adv = pgd(net, x, labels, PGDConfig(eps=eps, norm="L2", restarts=2), torch.Generator().manual_seed(0))
        assert float((x_adv - x).flatten(1).norm(dim=1).max()) <= eps * (1 + 1e-5)
        assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    # L-inf keeps its box: every pixel within eps
    x_adv = pgd(net, x, labels, PGDConfig(), torch.Generator().manual_seed(0))
    assert float((x_adv - x).abs().max()) <= 8 / 255 + 1e-6


def test_l2_pgd20_agrees_with_pyautoattack_apgd_ce_l2(trained_model, exact_test):
    """The independent reference: pyautoattack's APGD-CE in L2 (100 iterations, its own step
    schedule) on the same 500 exact-pixel test images, at L2 eps 0.25 where the tiny model keeps
    a non-trivial robust accuracy: PGD-20 (step eps / 4) within 2 points (measured: 26.6% vs 26.2%)."""
    from pyautoattack.autopgd_base import APGDAttack

    x, y = exact_test.images[:500].float() / 255, exact_test.labels[:500]
    eps = 0.25
    trained_model.eval()

    def accuracy(x_eval):
        with torch.no_grad():
            return float((trained_model(x_eval).argmax(1) == y).float().mean())

    ours = accuracy(pgd(trained_model, x, y, PGDConfig(eps=eps, norm="L2"), torch.Generator().manual_seed(0)))
    apgd = APGDAttack(trained_model, n_iter=100, norm="L2", eps=eps, loss="ce", seed=0, device="cpu")
    theirs = accuracy(apgd.perturb(x, y))
    assert 0.05 < theirs < accuracy(x), theirs
    assert abs(ours - theirs) <= 0.02, (ours, theirs)


@pytest.mark.synthetic
def test_linf_protocols_keep_the_identity_of_records_made_before_norms():
    """An L-inf protocol leaves `norm` out, so it equals the params of the committed CI reference
    records (made before the field existed) and those records are reused; L2 writes it."""
    records = [json.loads(f.read_text()) for f in sorted(REFERENCE.glob("*/*.json"))]
    checked = set()
    for record in records:
        cls = METRICS.get(record["metric"]) if record.get("metric") in METRICS else None
        if cls is None or not cls.norms:
            continue
        assert "norm" not in record["params"]
        assert cls(cls.Params(**record["params"])).protocol() == record["params"] == record["identity"]["params"]
        assert cls(cls.Params(norm="Linf", **record["params"])).protocol() == record["params"]
        checked.add(record["metric"])
    assert {"pgd20", "autoattack", "attack-sanity"} <= checked, checked
    for metric in ("pgd20", "autoattack", "robust-curve", "attack-sanity"):
        cls = METRICS.get(metric)
        protocol = cls(cls.Params(norm="L2")).protocol()
        assert protocol["norm"] == "L2" and protocol.get("eps", 0.5) == 0.5


@pytest.mark.synthetic
def test_eps_is_read_for_its_norm():
    assert parse_eps("0.5", "L2") == 0.5 and parse_eps(1.5, "L2") == 1.5
    with pytest.raises(UserError, match="pixel fraction.*L2 budget is a Euclidean length"):
        parse_eps("8/255", "L2")
    with pytest.raises(UserError, match="out of range for L2"):
        parse_eps("2000", "L2")
    with pytest.raises(UserError, match="did you mean 1.5/255"):
        parse_eps("1.5", "Linf")
    with pytest.raises(UserError, match="norm"):
        PGDConfig(norm="L1")


@pytest.mark.synthetic
def test_l2_battery_through_the_api(tmp_path):
    """pgd20, pgd20-energy, robust-curve, attack-sanity and AutoAttack in L2 from Python (eps 3:
    these easy images resist 0.5): the norm and the L2 budget in every record and summary line, the L2 grid, the unbounded L2 attack (the
    cube's diagonal) at 0%, and AutoAttack no weaker than PGD-20."""
    images, labels = synthetic(24)
    net = trained_small_net(images, labels)
    records = {r["metric"]: r for r in energybench.evaluate(
        net, data=(images, labels), metrics=["clean", "pgd20", "pgd20-energy", "robust-curve", "attack-sanity",
                                            "autoattack"],
        out_dir=tmp_path / "l2", device="cpu", norm="L2", eps=3.0, max_images=24, square_queries=100)}
    for name in ("pgd20", "pgd20-energy", "robust-curve", "attack-sanity", "autoattack"):
        assert records[name]["params"]["norm"] == "L2", name
    assert "norm" not in records["clean"]["params"]
    assert records["pgd20"]["params"]["eps"] == 3.0 and records["pgd20"]["params"]["step_size"] == 0.75
    assert protocol_text(records["pgd20"]).startswith("L2 eps 3, step 0.75")
    assert records["robust-curve"]["extra"]["eps"] == [0.0, 0.125, 0.25, 0.375, 0.5, 0.75, 1.0]
    assert records["attack-sanity"]["extra"]["accuracy"]["unbounded"] == 0.0
    assert records["autoattack"]["value"] <= records["pgd20"]["value"] + 1 / 24
    assert records["clean"]["value"] > records["pgd20"]["value"]
    # the same model in L-inf: other records beside them, nothing reused across norms
    linf = energybench.evaluate(net, data=(images, labels), metrics=["pgd20"], out_dir=tmp_path / "l2",
                                device="cpu")
    assert "norm" not in linf[0]["params"] and linf[0]["file"] != records["pgd20"]["file"]
    assert protocol_text(linf[0]).startswith("L-inf eps 8/255")


@pytest.mark.synthetic
@pytest.mark.parametrize("protocol, message", [
    ({"norm": "L2", "eps": "8/255"}, "pixel fraction"),
    ({"norm": "L2", "eps": 2000.0}, "out of range for L2"),
    ({"norm": "L1"}, "not a threat model"),
])
def test_bad_l2_input_is_one_line(tmp_path, protocol, message):
    images, labels = synthetic(8)
    with pytest.raises(UserError, match=message) as info:
        energybench.evaluate(SmallNet(), data=(images, labels), metrics=["pgd20"], out_dir=tmp_path / "x",
                             device="cpu", **protocol)
    assert "\n" not in str(info.value) and not (tmp_path / "x").exists()


@pytest.mark.synthetic
@pytest.mark.parametrize("metric, says", [("energy-hist", "energy-hist attacks in Linf only, not L2"),
                                          ("pgd20-jem-public", "pgd20-jem-public attacks in Linf only")])
def test_a_norm_a_metric_does_not_support_is_refused(tmp_path, run_cli, metric, says):
    images, labels = synthetic(8)
    data = tmp_path / "d.npz"
    np.savez(data, test_images=images.permute(0, 2, 3, 1).numpy(), test_labels=labels.numpy(),
             label_names=np.array([f"c{k}" for k in range(10)]))
    model = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(SmallNet(), (torch.rand(2, 3, 32, 32),)), model)
    code, out, err = run_cli("eval", "--model", str(model), "--data", str(data), "--metric", metric,
                             "--norm", "L2", "--out", str(tmp_path / "o"), "--device", "cpu")
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err


@pytest.fixture(scope="module")
def l2_zoo_dir(tmp_path_factory):
    """RobustBench's layout MODEL_DIR/cifar10/L2/NAME.pt for an entry of its CIFAR-10 L2 zoo
    (seeded weights; nothing is downloaded)."""
    from energybench.handles.zoo import robustbench

    robustbench()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    torch.manual_seed(0)
    net = model_dicts[BenchmarkDataset.cifar_10][ThreatModel.L2]["Ding2020MMA"]["model"]()
    root = tmp_path_factory.mktemp("zoo")
    (root / "cifar10" / "L2").mkdir(parents=True)
    torch.save({"state_dict": net.state_dict()}, root / "cifar10" / "L2" / "Ding2020MMA.pt")
    return root


@pytest.mark.synthetic
def test_a_robustbench_l2_model_is_attacked_in_l2_unless_asked_otherwise(l2_zoo_dir, tmp_path, run_cli):
    images, labels = synthetic(8)
    data = tmp_path / "d.npz"
    np.savez(data, test_images=images.permute(0, 2, 3, 1).numpy(), test_labels=labels.numpy(),
             label_names=np.array([f"c{k}" for k in range(10)]))
    common = ("--model", "robustbench:Ding2020MMA", "--threat-model", "L2", "--model-dir", str(l2_zoo_dir),
              "--data", str(data), "--n", "4", "--metric", "pgd20", "--param", "steps=2", "--device", "cpu")
    code, out, err = run_cli("eval", *common, "--out", str(tmp_path / "a"))
    assert code == 0, err
    record = next(json.loads(p.read_text()) for p in (tmp_path / "a").glob("pgd20-*.json"))
    assert record["params"]["norm"] == "L2" and record["params"]["eps"] == 0.5
    assert "L2 eps 0.5" in out and "attacked in" not in out
    code, out, err = run_cli("eval", *common, "--norm", "Linf", "--out", str(tmp_path / "b"))
    assert code == 0, err
    assert "attacked in L-inf, but Ding2020MMA is a RobustBench L2 model" in out
    assert "attacked in L-inf" in (tmp_path / "b" / "summary.md").read_text()


@pytest.mark.synthetic
def test_leaderboard_entry_follows_the_autoattack_norm():
    from energybench.handles.zoo import leaderboard_entry

    clean = {"metric": "clean", "value": 0.9, "n": 10000, "params": {}, "data": {"label": "CIFAR-10"}}
    aa = {"metric": "autoattack", "value": 0.7, "n": 10000,
          "params": {"eps": 0.5, "norm": "L2", "version": "standard"}}
    entry = leaderboard_entry([clean, aa], "m", "WRN")
    assert entry["eps"] == "0.5" and "L2" in entry["footnote"] and entry["autoattack_acc"] == "70.00"
    with pytest.raises(UserError, match="the autoattack record is L2, not Linf"):
        leaderboard_entry([clean, aa], "m", "WRN", threat_model="Linf")
    aa_linf = {**aa, "params": {"eps": 8 / 255, "version": "standard"}}  # an L-inf record leaves norm out
    assert leaderboard_entry([clean, aa_linf], "m", "WRN")["eps"] == "8/255"


@pytest.mark.synthetic
def test_threat_model_mismatch_is_named_only_for_zoo_models():
    zoo = {"kind": "robustbench", "robustbench_name": "X", "threat_model": "L2"}
    assert threat_model_mismatch({"model": zoo, "params": {"eps": 8 / 255}}).startswith("attacked in L-inf")
    assert threat_model_mismatch({"model": zoo, "params": {"eps": 0.5, "norm": "L2"}}) is None
    assert threat_model_mismatch({"model": zoo, "params": {"probes": 10}}) is None
    assert threat_model_mismatch({"model": {"kind": "checkpoint"}, "params": {"eps": 0.5, "norm": "L2"}}) is None


@pytest.mark.synthetic
@pytest.mark.parametrize("recipe", ["pgd-at", "trades"])
def test_adversarial_training_attacks_in_the_recipe_norm(recipe, monkeypatch):
    """pgd-at and trades take norm: their inner examples lie in the L2 ball and use its budget
    (an L-inf attack of the same steps would reach L2 lengths near 8/255 * sqrt(3072) = 1.7)."""
    import importlib

    from energybench.training.recipes import RecipeContext, get_recipe

    cls = get_recipe(recipe)
    images, labels = synthetic(16)
    made = cls(cls.Params(norm="L2", eps=0.5, step_size=0.125),
               RecipeContext(10, torch.device("cpu"), images, labels, seed=0))
    assert made.attack.norm == "L2" and made.attack.eps == 0.5
    module = importlib.import_module(type(made).__module__)
    seen = {}

    def recording_pgd(model, x_in, y, cfg, *args, **kwargs):
        out = pgd(model, x_in, y, cfg, *args, **kwargs)
        seen["lengths"] = (out - x_in).flatten(1).norm(dim=1)
        return out

    monkeypatch.setattr(module, "pgd", recording_pgd)
    step = made.loss(SmallNet().train(), images.float() / 255, labels, torch.Generator().manual_seed(0))
    assert torch.isfinite(step.loss)
    assert float(seen["lengths"].max()) <= 0.5 + 1e-5 and float(seen["lengths"].min()) > 0.4
    with pytest.raises(UserError, match=r"eps must be in \(0, 1\], got 127.5"):
        cls.Params(norm="Linf", eps=0.5 * 255)


@pytest.mark.synthetic
def test_model_selection_attacks_in_the_norm_the_recipe_trains_for():
    from energybench.training.recipes import get_recipe
    from energybench.training.selection import SELECTION_ATTACK, selection_attack

    l2 = selection_attack(get_recipe("pgd-at").Params(norm="L2", eps=0.5, step_size=0.1))
    assert (l2.norm, l2.eps, l2.step, l2.steps) == ("L2", 0.5, 0.125, 10)
    assert selection_attack(get_recipe("trades").Params()) is SELECTION_ATTACK
    assert selection_attack(get_recipe("jeat").Params()) is SELECTION_ATTACK  # no norm: L-inf
