import pytest

from energybench.core.errors import UserError
from energybench.training.config import apply_overrides, to_dict, train_config_from_dict
from energybench.training.recipes import get_recipe, preset_config


def test_overrides_parse_types():
    cfg = preset_config("normal", "smoke")
    cfg = apply_overrides(cfg, [
        "optim.lr=0.2", "optim.epochs=3", "optim.milestones=0.3,0.6", "run.amp=false",
        "data.train_subset=none", "model.width=64", "model.kwargs.act=swish",
        "data.source=/tmp/x", "optim.weight_decay=1/1000", "model.batch_norm=false",
    ])
    assert cfg.optim.lr == 0.2 and cfg.optim.epochs == 3 and cfg.optim.milestones == (0.3, 0.6)
    assert cfg.run.amp is False and cfg.data.train_subset is None and cfg.data.source == "/tmp/x"
    assert cfg.model.kwargs == {"width": 64, "act": "swish", "batch_norm": False}
    assert cfg.optim.weight_decay == pytest.approx(0.001)


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=0.1", "unknown config key 'optim.lrr'; valid here: name, lr"),
    ("bogus=1", "unknown config key 'bogus'"),
    ("optim.epochs=ten", "must be an integer"),
    ("run.amp=maybe", "true or false"),
    ("optim=1", "is a section"),
    ("recipe.sigma=0.1", "unknown config key 'recipe.sigma'"),
    ("optim.lr", "must look like KEY=VALUE"),
])
def test_bad_overrides_are_rejected(override, message):
    with pytest.raises(UserError, match=message):
        apply_overrides(preset_config("normal", "smoke"), [override])


def test_dict_round_trip():
    cfg = apply_overrides(preset_config("normal", "paper"), ["model.width=2"])
    again = train_config_from_dict(to_dict(cfg), get_recipe("normal").Params)
    assert again == cfg


def test_unknown_recipe_and_preset():
    with pytest.raises(UserError, match="unknown recipe .nope.; known recipes: eb-jdat, eb-jdat-sadajem, jeat"):
        preset_config("nope", "smoke")
    with pytest.raises(UserError, match="unknown preset 'huge'"):
        preset_config("normal", "huge")
