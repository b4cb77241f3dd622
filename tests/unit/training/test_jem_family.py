"""JEM++, SADA-JEM and EB-JDAT on SADA-JEM against hand computations on tiny inputs: the
proximal Langevin step against a literal first-layer Hamiltonian (YOPO) implementation, the
clipped noise-free step, SAM's weight step, each recipe's loss from its definition, and one
SAM update of the training loop against the update written out."""

from dataclasses import replace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from energybench.data import to_float
from energybench.energy.energies import marginal_energy
from energybench.energy.sgld import SGLDConfig, sgld
from energybench.training.config import apply_overrides
from energybench.training.optim import frozen_running_stats, sharpness_ascent, sharpness_restore
from energybench.training.recipes import RecipeContext, preset_config


class TwoLayer(nn.Module):
    """An affine first layer (as the WRN's conv1) and a non-linear head: (N, 3, 4, 4) -> (N, 5)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layer_one = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Sequential(nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(64, 5))
        self.layer_one_out = None

    def forward(self, x):
        out = self.layer_one(x)
        self.layer_one_out = out
        out.retain_grad()
        return self.head(out)


def yopo_reference(model, x0, outer, inner, lr, clip):
    """JEM++'s sampler as its code writes it, in the code's own units: per outer step, p is the
    gradient of sum logsumexp f(x) at the first layer's output (retain_grad), then `inner` steps
    ascend H(x, p) = sum(layer_one(x) * p) with the gradient clipped to [-clip, clip], each
    followed by a clamp to the image range."""
    x = x0.clone()
    for _ in range(outer):
        x.requires_grad_(True)
        model.layer_one_out = None
        lse = model(x).logsumexp(1).sum()
        lse.backward()
        p = model.layer_one_out.grad.detach()
        model.zero_grad()
        x = x.detach()
        for _ in range(inner):
            x.requires_grad_(True)
            h = (model.layer_one(x) * p).sum()
            (g,) = torch.autograd.grad(h, x)
            x = (x.detach() + lr * g.clamp(-clip, clip)).clamp(0, 1)
    return x.detach()


def test_proximal_langevin_equals_the_first_layer_hamiltonian_steps():
    model = TwoLayer().eval()
    x0 = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    expected = yopo_reference(model, x0, outer=3, inner=5, lr=0.05, clip=2.0)
    cfg = SGLDConfig(steps=3, step_size=0.05, noise=0.0, grad_clip=2.0, repeats=5, clamp=True)
    got = sgld(model, x0, cfg, torch.Generator().manual_seed(0))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert (got - x0).abs().max() > 0.01  # it moved


def test_clipped_step_by_hand():
    """One SADA-JEM step: x - 0.25 * clip(grad E(x), -2, 2), clamped, no noise."""
    class Scaled(nn.Module):  # logits scaled up, so that some gradient coordinates exceed the clip
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return 50 * self.inner(x)

    model = Scaled(TwoLayer()).eval()
    x0 = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    x = x0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(marginal_energy(model(x)).sum(), x)
    expected = (x0 - 0.25 * g.clamp(-2, 2)).clamp(0, 1)

    cfg = SGLDConfig(steps=1, step_size=0.25, noise=0.0, grad_clip=2.0)
    got = sgld(model, x0, cfg, torch.Generator().manual_seed(0))
    assert (g.abs() > 2).any() and (g.abs() < 2).any()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("adaptive", [False, True])
def test_sharpness_ascent_by_hand(adaptive):
    """e(w) = rho T^2 g / ||T g|| over all parameters, T = |w| (adaptive) or 1; restore is exact."""
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -1.0, 2.0], [0.1, 0.3, -0.2]]))
        model.bias.copy_(torch.tensor([0.7, -0.4]))
    model.weight.grad = torch.tensor([[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]])
    model.bias.grad = torch.tensor([-2.0, 1.0])
    w, b = model.weight.detach().clone(), model.bias.detach().clone()
    gw, gb = model.weight.grad.clone(), model.bias.grad.clone()
    tw, tb = (w.abs(), b.abs()) if adaptive else (torch.ones_like(w), torch.ones_like(b))
    norm = torch.sqrt(((tw * gw) ** 2).sum() + ((tb * gb) ** 2).sum())
    moved = sharpness_ascent(model, 0.5, adaptive)
    torch.testing.assert_close(model.weight.detach(), w + 0.5 * tw ** 2 * gw / norm)
    torch.testing.assert_close(model.bias.detach(), b + 0.5 * tb ** 2 * gb / norm)
    sharpness_restore(moved)
    assert torch.equal(model.weight.detach(), w) and torch.equal(model.bias.detach(), b)


def test_frozen_running_stats_keeps_batch_norm_statistics():
    bn = nn.BatchNorm1d(3).train()
    bn(torch.randn(8, 3))
    before = bn.running_mean.clone()
    with frozen_running_stats(bn):
        bn(torch.randn(8, 3) + 5)
    assert torch.equal(bn.running_mean, before) and bn.momentum == 0.1


def _ctx():
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    return RecipeContext(10, torch.device("cpu"), images, torch.arange(40) % 10, seed=0)


def _replayed(recipe, model, x, y):
    """(the recipe's StepOutput, its draws replayed from the same generator and buffer)."""
    state = recipe.sampler.buffer.state_dict()
    out = recipe.loss(model, x, y, torch.Generator().manual_seed(0))
    recipe.sampler.buffer.load_state_dict(state)
    return out, recipe.draws(model, x, y, torch.Generator().manual_seed(0))


def test_sadajem_loss_is_its_definition(trained_model):
    """px_weight (E(x_px) - E(x_q)) + pyx_weight CE(f(x), y); x_px are training images as they are."""
    from energybench.training.recipes.sadajem import SADAJEM, SADAJEMParams

    ctx = _ctx()
    recipe = SADAJEM(SADAJEMParams(sgld_steps=2, buffer_size=16, px_batch=8, px_weight=0.7, pyx_weight=1.3), ctx)
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8)
    trained_model.eval()
    out, drawn = _replayed(recipe, trained_model, x, y)
    train = to_float(ctx.train_images)
    for row in drawn["x_px"]:  # each row is one training image, un-augmented
        assert any(torch.equal(row, t) for t in train)
    with torch.no_grad():
        expected = (0.7 * (marginal_energy(trained_model(drawn["x_px"])).mean()
                           - marginal_energy(trained_model(drawn["x_q"])).mean())
                    + 1.3 * F.cross_entropy(trained_model(x), y))
    torch.testing.assert_close(out.loss.detach(), expected)
    torch.testing.assert_close(out.again().detach(), expected)  # SAM's second pass: same draws


def test_eb_jdat_sadajem_loss_is_its_definition(trained_model):
    from energybench.training.recipes.eb_jdat_sadajem import EBJDATSADAJEM, EBJDATSADAJEMParams

    params = EBJDATSADAJEMParams(sgld_steps=2, buffer_size=16, px_batch=8, adv_steps=2, w_pxadv=0.1,
                                 w_pyxadv=1.0)
    recipe = EBJDATSADAJEM(params, _ctx())
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8)
    trained_model.eval()
    out, drawn = _replayed(recipe, trained_model, x, y)
    assert (drawn["x_adv"] - x).abs().max() <= 8 / 255 + 1e-6
    with torch.no_grad():
        e = lambda t: marginal_energy(trained_model(t)).mean()  # noqa: E731
        expected = ((e(drawn["x_px"]) - e(drawn["x_q"])) + F.cross_entropy(trained_model(x), y)
                    + 0.1 * (e(drawn["x_px"]) - e(drawn["x_adv"]))
                    + F.cross_entropy(trained_model(drawn["x_adv"]), y))
    torch.testing.assert_close(out.loss.detach(), expected)


def test_jempp_paper_preset_is_the_public_script():
    cfg = preset_config("jempp", "paper")
    p, o = cfg.params, cfg.optim
    assert (p.sgld_steps, p.sgld_repeats, p.sgld_step_size, p.sgld_grad_clip, p.sgld_noise) == (10, 5, 0.05, 2.0, 0.0)
    assert (o.name, o.lr, o.weight_decay, o.batch_size, o.epochs, o.gamma) == ("sgd", 0.1, 4e-4, 64, 150, 0.2)
    assert [round(m * 150) for m in o.milestones] == [50, 100, 125]
    sada = preset_config("sadajem", "paper").optim
    assert (sada.sam_rho, sada.sam_adaptive, sada.batch_size, sada.epochs) == (2.0, True, 128, 200)
    assert [round(m * 200) for m in sada.milestones] == [60, 120, 180]
    eb = preset_config("eb-jdat-sadajem", "paper")
    assert (eb.optim.lr, eb.params.sgld_steps, eb.params.data_noise) == (0.01, 10, 0.015)
    assert [round(m * 200) for m in eb.optim.milestones] == [50, 100, 150]


def test_one_sam_update_of_the_loop_by_hand(tmp_path, jpeg_tar):
    """The trainer's SAM update equals: gradient at w, ascend to w + e(w), gradient of the same
    loss (same draws) there, plain SGD step from w with it."""
    from energybench.training.trainer import Trainer

    cfg = preset_config("sadajem", "smoke")
    cfg = replace(cfg, data=replace(cfg.data, source=str(jpeg_tar)))
    cfg = apply_overrides(cfg, ["data.train_subset=320", "data.eval_subset=0", "optim.batch_size=32",
                                "model.width=8", "recipe.buffer_size=64", "recipe.px_batch=16",
                                "optim.name=sgd", "optim.momentum=0", "optim.warmup_steps=0",
                                "optim.schedule=constant", "optim.lr=0.5", "optim.sam_rho=0.3",
                                "optim.sam_adaptive=false", "recipe.sgld_init=uniform"])
    trainer = Trainer(cfg, tmp_path, torch.device("cpu"))
    model, recipe = trainer.model, trainer.recipe
    x, y = to_float(trainer.images[:32]), trainer.labels[:32]
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    buffer = recipe.sampler.buffer.state_dict()
    trainer.train_step(x, y, torch.Generator().manual_seed(3))
    after = {k: v.clone() for k, v in model.state_dict().items()}

    model.load_state_dict(weights)
    recipe.sampler.buffer.load_state_dict(buffer)
    model.train()
    drawn = recipe.draws(model, x, y, torch.Generator().manual_seed(3))
    params = list(model.parameters())
    grads = torch.autograd.grad(recipe.terms(model, x, y, drawn)[0], params)
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.add_(0.3 * g / (norm + 1e-12))
    grads_there = torch.autograd.grad(recipe.terms(model, x, y, drawn)[0], params)
    expected = {name: weights[name] - 0.5 * g for (name, _), g in zip(model.named_parameters(), grads_there)}
    for name, value in expected.items():
        torch.testing.assert_close(after[name], value, rtol=1e-5, atol=1e-6)
