"""Test-time purification and the BPDA+EOT metric: purification against its Langevin update
written out, the BPDA gradient against the base classifier's gradient at the purified image,
PGD-20's record exactly when nothing is purified, and purified records kept apart and flagged."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from energybench.attacks.bpda import bpda_eot
from energybench.attacks.pgd import PGDConfig
from energybench.core.errors import UserError
from energybench.energy.energies import marginal_energy
from energybench.energy.purification import PurificationConfig, PurifiedClassifier, purify
from energybench.evaluation.runner import evaluate

REPO = Path(__file__).resolve().parents[3]


def tiny_classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(64, 3)).eval()


def test_purification_is_langevin_on_the_energy_by_hand():
    model = tiny_classifier()
    x = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    cfg = PurificationConfig(steps=3, step_size=0.4, noise=0.0)
    expected = x.clone()
    for _ in range(3):
        z = expected.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(marginal_energy(model(z)).sum(), z)
        expected = expected - 0.4 * g
    torch.testing.assert_close(purify(model, x, cfg), expected)
    # the defence's prediction: with no noise every chain is the same, so the mean is one chain's
    purified = PurifiedClassifier(model, PurificationConfig(steps=3, step_size=0.4, noise=0.0, chains=4))
    with torch.no_grad():
        torch.testing.assert_close(purified(x), model(expected))


def test_purification_noise_is_seeded_and_averaged():
    model = tiny_classifier()
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    purified = PurifiedClassifier(model, PurificationConfig(steps=2, step_size=0.1, noise=0.05, chains=3))
    torch.manual_seed(5)
    with torch.no_grad():
        first = purified(x)
    torch.manual_seed(5)
    copies = x.repeat(3, 1, 1, 1)
    by_hand = model(purify(model, copies, purified.purification)).view(3, 2, -1).mean(0)
    torch.testing.assert_close(first, by_hand.detach())


def test_bpda_step_follows_the_base_gradient_at_the_purified_image():
    """One BPDA+EOT step without a random start: x + step * sign(grad of CE(mean logits) taken at
    the purified copies, averaged), projected; purification is treated as the identity backwards."""
    model = tiny_classifier()
    cfg_p = PurificationConfig(steps=2, step_size=0.3, noise=0.0, chains=2)
    purified = PurifiedClassifier(model, cfg_p)
    x = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(2)) * 0.8 + 0.1
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    xp = purify(model, x, cfg_p).requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xp), y, reduction="sum"), xp)
    step = PGDConfig(eps=8 / 255, step_size=2 / 255, steps=1, random_start=False, eot=2)
    expected = (x + 2 / 255 * g.sign()).clamp(0, 1)
    seeds = torch.arange(6)

    captured = {}
    import energybench.attacks.bpda as bpda_module

    real_project = bpda_module.project

    def spy(x_adv, *args, **kwargs):
        captured["x_adv"] = x_adv.clone()
        return real_project(x_adv, *args, **kwargs)

    bpda_module.project = spy
    try:
        bpda_eot(purified, x, y, step, seeds)
    finally:
        bpda_module.project = real_project
    torch.testing.assert_close(captured["x_adv"].clamp(0, 1), expected)


def test_without_purification_it_is_pgd20_image_for_image(exact_npz, tmp_path):
    """On the shipped adversarially trained smoke model (some images survive PGD-20)."""
    records = evaluate(REPO / "checkpoints" / "pgd-at-smoke.pt", ["pgd20", "bpda-eot"], data=str(exact_npz), n=40,
                       out_dir=tmp_path, batch_size=16, log=lambda m: None,
                       overrides={"steps": 20, "eot": 1, "any_iterate": False})
    pgd, bpda = records
    assert bpda["value"] == pgd["value"] and 0 < pgd["value"] < 1
    with np.load(tmp_path / (pgd["file"].rsplit("/", 1)[1][:-5] + ".outcomes.npz")) as a, \
            np.load(tmp_path / (bpda["file"].rsplit("/", 1)[1][:-5] + ".outcomes.npz")) as b:
        for key in ("index", "clean_correct", "adv_correct", "robust"):
            assert np.array_equal(a[key], b[key]), key


def test_purified_records_are_their_own_and_plain_pgd_is_flagged(trained_run, exact_npz, tmp_path):
    purification = PurificationConfig(steps=2, chains=3)
    kwargs = dict(data=str(exact_npz), n=16, out_dir=tmp_path, batch_size=16, log=lambda m: None)
    plain = evaluate(trained_run / "last.pt", ["clean"], **kwargs)
    records = evaluate(trained_run / "last.pt", ["clean", "pgd20", "bpda-eot"], purification=purification,
                       overrides={"steps": 3, "eot": 2}, **kwargs)
    clean, pgd, bpda = records
    assert clean["file"] != plain[0]["file"] and "purification" not in plain[0]["identity"]
    for record in records:
        assert record["identity"]["purification"] == record["model"]["purification"] == {
            "steps": 2, "step_size": 0.25, "noise": 0.005, "chains": 3}
    randomized = pgd["diagnostics"]["randomized_forward"]
    assert randomized["flag"] is True and "bpda-eot" in randomized["advice"]
    assert bpda["diagnostics"]["randomized_forward"]["flag"] is False
    again = evaluate(trained_run / "last.pt", ["clean"], purification=purification, **kwargs)
    assert again[0]["value"] == clean["value"]  # seeded per batch: the same answer, reused


def test_purification_values_need_steps():
    import energybench

    with pytest.raises(UserError, match="purify_chains.*off.*purify=STEPS"):
        energybench.evaluate(tiny_classifier(), (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), [0, 1]),
                             purify_chains=5)
    with pytest.raises(UserError, match="purify_chains must be in"):
        energybench.evaluate(tiny_classifier(), (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), [0, 1]),
                             purify=2, purify_chains=0)


def test_saved_examples_are_pgds_without_purification_and_the_breaking_iterate_with_any_iterate(
        exact_npz, tmp_path):
    """--save-adversarial on bpda-eot: with eot 1, 20 steps and only the final iterate counted,
    the saved images are PGD-20's own saved images; counting every iterate, each saved image of a
    broken image is one the model gets wrong (the iterate that broke it, though the attack walked
    on), every other is the final iterate, right, and all lie in the eps-ball."""
    from energybench.data import load_split

    ckpt = REPO / "checkpoints" / "pgd-at-smoke.pt"
    kwargs = dict(data=str(exact_npz), n=40, batch_size=16, log=lambda m: None, save_adversarial=True)
    pgd, bpda = evaluate(ckpt, ["pgd20", "bpda-eot"], out_dir=tmp_path / "final",
                         overrides={"steps": 20, "eot": 1, "any_iterate": False}, **kwargs)
    with np.load(tmp_path / "final" / pgd["extra"]["adversarial"]) as a, \
            np.load(tmp_path / "final" / bpda["extra"]["adversarial"]) as b:
        for key in ("images", "index", "adv_correct"):
            assert np.array_equal(a[key], b[key]), key

    (every,) = evaluate(ckpt, ["bpda-eot"], out_dir=tmp_path / "every", overrides={"steps": 20, "eot": 1}, **kwargs)
    saved = np.load(tmp_path / "every" / every["extra"]["adversarial"])
    test = load_split(exact_npz, "test").subset(40)
    x, y = test.images.float() / 255, test.labels
    images = torch.from_numpy(saved["images"])
    assert (images - x).abs().max() <= 8 / 255 + 1e-6 and images.min() >= 0 and images.max() <= 1
    from energybench.handles.checkpoint import load_model

    with torch.no_grad():
        right = (load_model(ckpt).model(images).argmax(1) == y).numpy()
    outcomes = np.load(tmp_path / "every" / every["extra"]["outcomes"])
    broken = outcomes["clean_correct"] & ~outcomes["robust"]
    assert broken.any() and outcomes["robust"].any()
    assert not right[broken].any() and right[outcomes["robust"]].all()
    assert np.array_equal(saved["adv_correct"], right)
    assert every["value"] <= pgd["value"]  # any iterate counted: at most PGD's final-iterate accuracy
