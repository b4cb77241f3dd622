import pytest
import torch

from energybench.attacks.pgd import PGDConfig, fgsm_rs, parse_eps, pgd, predict
from energybench.core.errors import UserError
from energybench.models import create_model


@pytest.fixture(scope="module")
def batch(exact_test):
    return exact_test.images[:200].float() / 255, exact_test.labels[:200]


def robust_acc(model, x, y, x_adv):
    return float((predict(model, x_adv) == y).float().mean())


def test_pgd_stays_in_ball_and_image_range(trained_model, batch):
    x, y = batch
    eps = 8 / 255
    for objective in ("ce", "energy"):
        x_adv = pgd(trained_model, x, y, PGDConfig(eps=eps, steps=5, objective=objective),
                    torch.Generator().manual_seed(0))
        assert x_adv.shape == x.shape and x_adv.dtype == torch.float32
        assert (x_adv - x).abs().max() <= eps + 1e-6
        assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_pgd_is_seeded_and_restores_train_mode(trained_model, batch):
    x, y = batch
    trained_model.train()
    cfg = PGDConfig(steps=3)
    a = pgd(trained_model, x, y, cfg, torch.Generator().manual_seed(1))
    assert trained_model.training, "attack must restore the model's mode"
    trained_model.eval()
    b = pgd(trained_model, x, y, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert all(p.grad is None for p in trained_model.parameters())


def test_pgd_at_least_as_strong_as_fgsm(trained_model, batch):
    x, y = batch
    eps = 2 / 255
    gen = torch.Generator().manual_seed(0)
    acc_fgsm = robust_acc(trained_model, x, y, fgsm_rs(trained_model, x, y, eps, 1.25 * eps, generator=gen))
    acc_pgd = robust_acc(trained_model, x, y, pgd(trained_model, x, y,
                                                  PGDConfig(eps=eps, step_size=eps / 4, steps=20), gen))
    clean = robust_acc(trained_model, x, y, x)
    assert acc_pgd <= acc_fgsm <= clean
    assert acc_pgd < clean - 0.1, "PGD-20 at 2/255 should hurt a normally trained model"


def test_restarts_never_weaken_the_attack(trained_model, batch):
    x, y = batch
    eps = 1 / 255
    one = pgd(trained_model, x, y, PGDConfig(eps=eps, step_size=eps / 4, steps=5),
              torch.Generator().manual_seed(3))
    three = pgd(trained_model, x, y, PGDConfig(eps=eps, step_size=eps / 4, steps=5, restarts=3),
                torch.Generator().manual_seed(3))
    # Same seed: the first run of `three` equals `one`; later runs can only add fooled images.
    fooled_one = predict(trained_model, one) != y
    fooled_three = predict(trained_model, three) != y
    assert (fooled_three | ~fooled_one).all()
    assert (three - x).abs().max() <= eps + 1e-6


def test_energy_attack_raises_joint_energy(trained_model, batch):
    from energybench.energy.energies import joint_energy

    x, y = batch
    x_adv = pgd(trained_model, x, y, PGDConfig(steps=10, objective="energy"),
                torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = joint_energy(trained_model(x), y).mean()
        after = joint_energy(trained_model(x_adv), y).mean()
    assert after > before + 1.0


def test_fgsm_rs_is_jeat_step():
    """JEAT Algorithm 1: delta = U(-eps, eps); delta += eps * sign(grad E(x, y)); clip to
    [-eps, eps]. A linear model makes the gradient sign known, so the result is exact."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([torch.ones(12), -torch.ones(12)]))
    x = torch.full((4, 3, 2, 2), 0.5)
    y = torch.zeros(4, dtype=torch.long)
    eps = 0.1
    x_adv = fgsm_rs(model, x, y, eps, objective="energy", generator=torch.Generator().manual_seed(0))
    # E(x, y=0) = -sum(x), so sign(grad) = -1 everywhere.
    start = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 2 * eps - eps
    expected = x + (start - eps).clamp(-eps, eps)
    torch.testing.assert_close(x_adv, expected)
    assert ((x_adv - x) < 0).all()


def test_parse_eps_and_errors():
    assert parse_eps("8/255") == pytest.approx(8 / 255)
    assert parse_eps("0.5") == 0.5
    with pytest.raises(UserError, match="did you mean 8/255"):
        parse_eps("8")
    with pytest.raises(UserError, match="out of range"):
        parse_eps("-0.1")
    with pytest.raises(UserError, match="cannot read eps"):
        parse_eps("eight")
    with pytest.raises(UserError, match="objective"):
        PGDConfig(objective="dlr")


def test_pgd_agrees_with_pyautoattack_apgd_ce(trained_model, exact_test):
    """Robust accuracy of our PGD (50 steps, 2 restarts) within 2 points of pyautoattack's
    APGD-CE (100 iterations) on the same 500 exact-pixel test images, at eps 2/255 where the
    tiny model keeps a non-trivial robust accuracy."""
    from pyautoattack.autopgd_base import APGDAttack

    x, y = exact_test.images[:500].float() / 255, exact_test.labels[:500]
    eps = 2 / 255
    trained_model.eval()
    ours = robust_acc(trained_model, x, y, pgd(
        trained_model, x, y, PGDConfig(eps=eps, step_size=eps / 4, steps=50, restarts=2),
        torch.Generator().manual_seed(0)))
    apgd = APGDAttack(trained_model, n_iter=100, norm="Linf", eps=eps, loss="ce", seed=0, device="cpu")
    theirs = robust_acc(trained_model, x, y, apgd.perturb(x, y))
    clean = robust_acc(trained_model, x, y, x)
    assert 0.05 < theirs < clean, (theirs, clean)
    assert abs(ours - theirs) <= 0.02, (ours, theirs)


def test_models_accept_unit_range_inputs_and_differ_in_options():
    x = torch.rand(2, 3, 32, 32)
    for name, kwargs in [("tiny-cnn", {}), ("wrn", dict(depth=10, width=1, batch_norm=False,
                                                         act="leaky_relu", normalize="pm1")),
                         ("preact-resnet18", dict(act="swish"))]:
        out = create_model(name, **kwargs).eval()(x)
        assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_energy_pgd_metric_is_about_as_strong_as_ce_on_a_normal_model(trained_run, exact_npz, tmp_path):
    """JEAT Table 1's claim at small scale: on a normally trained classifier the energy attack
    (ascend E(x, y)) and the cross-entropy attack leave about the same accuracy."""
    from energybench.evaluation.runner import evaluate

    records = {r["metric"]: r for r in evaluate(
        trained_run / "last.pt", ["pgd20", "pgd20-energy"], data=str(exact_npz), n=300,
        out_dir=tmp_path, overrides={"eps": 2 / 255}, log=lambda m: None)}
    assert records["pgd20-energy"]["params"]["objective"] == "energy"
    assert records["pgd20-energy"]["params"]["eps"] == pytest.approx(2 / 255)
    assert abs(records["pgd20"]["value"] - records["pgd20-energy"]["value"]) < 0.08
