import json
from dataclasses import replace

import pytest
import torch

from energybench.attacks.pgd import PGDConfig
from energybench.core.errors import UserError
from energybench.energy.energies import joint_energy, marginal_energy
from energybench.evaluation.runner import evaluate
from energybench.training.config import apply_overrides
from energybench.training.recipes import RecipeContext, get_recipe, preset_config, recipe_names
from energybench.training.run import train

ALL = ["eb-jdat", "eb-jdat-sadajem", "jeat", "jem", "jempp", "noise", "normal", "pgd-at", "prejeat", "sadajem",
       "trades"]


def test_all_eleven_recipes_are_registered_with_both_presets():
    assert recipe_names() == ALL
    for name in ALL:
        presets = get_recipe(name).presets()
        assert set(presets) == {"paper", "smoke"}
        assert presets["paper"].model.name == "wrn-28-10"
        assert presets["smoke"].model.name == "tiny-cnn"


def tiny(name, jpeg_tar, *extra):
    cfg = preset_config(name, "smoke")
    cfg = replace(cfg, data=replace(cfg.data, source=str(jpeg_tar)))
    sets = ["data.train_subset=320", "optim.epochs=1", "data.eval_subset=100", "optim.batch_size=32",
            "run.dynamics_probe=16", "model.width=8"]
    if hasattr(cfg.params, "buffer_size"):
        sets += ["recipe.buffer_size=64"]
    return apply_overrides(cfg, sets + list(extra))


@pytest.mark.parametrize("name", ALL)
def test_each_recipe_trains_and_evaluates(name, tmp_path, jpeg_tar, exact_npz):
    ckpt = train(tiny(name, jpeg_tar), tmp_path / name, torch.device("cpu"))
    (log,) = [json.loads(x) for x in (tmp_path / name / "log.jsonl").read_text().splitlines()]
    assert all(isinstance(log[k], float) for k in ("loss", "dxE_joint", "dxE_marginal"))
    raw = torch.load(ckpt, weights_only=True)
    assert raw["recipe"] == name
    if hasattr(raw["config"]["params"], "get") and "buffer_size" in raw["config"]["params"]:
        assert raw["recipe_state"]["replay_buffer"]["images"].shape == (64, 3, 32, 32)
    (record,) = evaluate(ckpt, ["clean"], data=str(exact_npz), n=50, out_dir=tmp_path / "e",
                         log=lambda m: None)
    assert 0 <= record["value"] <= 1


def _ctx(num_classes=10):
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    return RecipeContext(num_classes, torch.device("cpu"), images, torch.arange(40) % 10, seed=0)


def test_jeat_loss_is_algorithm_1(trained_model):
    """loss = (E(x_adv,y) - E(x_adv)) + (E(x_adv) - E(x_sgld)) with x_adv, x_sgld as drawn."""
    from energybench.training.recipes.jeat import JEAT, JEATParams

    params = JEATParams(sgld_steps=2, buffer_size=16)
    recipe = JEAT(params, _ctx())
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8)
    trained_model.eval()
    state = recipe.sampler.buffer.state_dict()
    out = recipe.loss(trained_model, x, y, torch.Generator().manual_seed(0))
    # Replay the same draws to recompute the loss from its definition.
    recipe.sampler.buffer.load_state_dict(state)
    gen = torch.Generator().manual_seed(0)
    from energybench.attacks.pgd import fgsm_rs

    x_adv = fgsm_rs(trained_model, x, y, params.eps, params.step_size, "energy", gen)
    x_sgld = recipe.sampler.negatives(trained_model, 8, gen)
    with torch.no_grad():
        la, ls = trained_model(x_adv), trained_model(x_sgld)
        expected = ((joint_energy(la, y) - marginal_energy(la)).mean()
                    + marginal_energy(la).mean() - marginal_energy(ls).mean())
    torch.testing.assert_close(out.loss.detach(), expected)


@pytest.mark.parametrize("direction, sign", [("raise", 1), ("lower", -1)])
def test_eb_jdat_inner_step_direction(trained_model, direction, sign):
    from energybench.training.recipes.eb_jdat import EBJDAT, EBJDATParams

    recipe = EBJDAT(EBJDATParams(adv_direction=direction, distance_weight=0.0, buffer_size=8,
                                 sgld_init="uniform"), _ctx())
    x, y = torch.rand(16, 3, 32, 32), torch.arange(16) % 10
    x_adv = recipe.adversarial(trained_model, x, y, torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    with torch.no_grad():
        change = joint_energy(trained_model(x_adv), y).mean() - joint_energy(trained_model(x), y).mean()
    assert sign * change > 0
    with pytest.raises(UserError, match="adv_direction"):
        EBJDAT(EBJDATParams(adv_direction="up", buffer_size=8, sgld_init="uniform"), _ctx())


def test_trades_attack_increases_kl(trained_model):
    from energybench.attacks.pgd import pgd
    from energybench.training.recipes.trades import kl_to

    x, y = torch.rand(16, 3, 32, 32), torch.arange(16) % 10
    trained_model.eval()
    with torch.no_grad():
        clean = trained_model(x)
    loss_fn = kl_to(clean)
    start = x + 0.001 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    x_adv = pgd(trained_model, x, y, PGDConfig(steps=5, random_start=False), None, loss_fn, start)
    with torch.no_grad():
        assert loss_fn(trained_model(x_adv), y) > loss_fn(trained_model(start), y) + 1e-3


def test_noise_recipe_perturbs_with_sigma(trained_model):
    from energybench.training.recipes.common import add_noise

    x = torch.full((64, 3, 32, 32), 0.5)
    noisy = add_noise(x, 16 / 255, torch.Generator().manual_seed(0))
    assert (noisy - x).std().item() == pytest.approx(16 / 255, rel=0.02)


@pytest.mark.parametrize("recipe", ["jem", "jeat", "eb-jdat", "jempp", "sadajem", "eb-jdat-sadajem"])
def test_exact_resume_at_default_settings(tmp_path, jpeg_tar, recipe):
    """Default run settings (not deterministic mode, two threads) and a small replay buffer, so
    batches draw the same chain twice: a run killed and resumed ends with exactly the weights and
    buffer of an uninterrupted one, and two uninterrupted runs agree."""
    torch.set_num_threads(2)
    cfg = tiny(recipe, jpeg_tar, "optim.epochs=2", "run.checkpoint_every_steps=7", "recipe.buffer_size=40")
    assert not cfg.run.deterministic
    full = train(cfg, tmp_path / "full", torch.device("cpu"))
    again = train(cfg, tmp_path / "again", torch.device("cpu"))
    train(cfg, tmp_path / "cut", torch.device("cpu"), stop_after_steps=16)
    resumed = train(cfg, tmp_path / "cut", torch.device("cpu"), resume=True)
    runs = [torch.load(p, weights_only=True) for p in (full, again, resumed)]
    for other in runs[1:]:
        for key in runs[0]["state_dict"]:
            assert torch.equal(runs[0]["state_dict"][key], other["state_dict"][key]), key
        assert torch.equal(runs[0]["recipe_state"]["replay_buffer"]["images"],
                           other["recipe_state"]["replay_buffer"]["images"])
