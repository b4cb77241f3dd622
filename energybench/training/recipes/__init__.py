"""Training recipes, registered by name; all run on the shared loop in energybench.training.trainer."""

from energybench.training.recipes import (  # noqa: F401  (registers)
    eb_jdat, eb_jdat_sadajem, jeat, jem, jempp, noise, normal, pgd_at, prejeat, sadajem, trades,
)
from energybench.training.recipes.base import RECIPES, Recipe, RecipeContext, StepOutput, register_recipe


def recipe_names() -> list[str]:
    return RECIPES.names()


def get_recipe(name: str) -> type[Recipe]:
    return RECIPES.get(name)


def preset_config(recipe: str, preset: str):
    """The named preset ('paper' or 'smoke') of a recipe as a TrainConfig."""
    from energybench.core.errors import UserError

    presets = get_recipe(recipe).presets()
    if preset not in presets:
        raise UserError(f"unknown preset {preset!r} for {recipe}; use one of {', '.join(presets)}")
    return presets[preset]


__all__ = ["RECIPES", "Recipe", "RecipeContext", "StepOutput", "register_recipe", "recipe_names",
           "get_recipe", "preset_config"]
