"""Model selection during training: the per-epoch robustness check (PGD-10, Rice et al. 2020) and
the rule that picks best.pt (robust accuracy for recipes that train on attacks, clean otherwise).
"""

from __future__ import annotations

from energybench.attacks.pgd import PGDConfig

# The per-epoch robustness check (model selection, Rice et al. 2020): PGD-10, 8/255, step 2/255.
SELECTION_ATTACK = PGDConfig(eps=8 / 255, step_size=2 / 255, steps=10)


def selection_attack(recipe_params) -> PGDConfig:
    """The per-epoch robustness check for a recipe: PGD-10 at L-inf 8/255, or, for a recipe
    trained against another norm (e.g. pgd-at with norm L2), PGD-10 in that norm at the recipe's
    eps with step eps / 4, so best.pt is chosen under the threat model it was trained for."""
    norm = getattr(recipe_params, "norm", "Linf")
    if norm == "Linf":
        return SELECTION_ATTACK
    return PGDConfig(eps=recipe_params.eps, step_size=recipe_params.eps / 4, steps=10, norm=norm)


def selection_rule(select_by: str, recipe_cls) -> dict:
    """How best.pt is chosen among epochs, as recorded in it: by held-out PGD-10 robust accuracy
    ('robust'), or clean accuracy ('clean'); 'auto' is robust exactly for recipes that train
    against an attack (`Recipe.trains_on_attacks`)."""
    robust = select_by == "robust" or (select_by == "auto" and recipe_cls.trains_on_attacks)
    rule = {"rule": select_by, "by": "val_robust_acc" if robust else "val_acc"}
    if robust:
        rule["attack"] = "PGD-10, eps 8/255, step 2/255, random start"
    return rule


def best_from_progress(best: dict | None) -> dict | None:
    """best.pt's record from a checkpoint's progress (older runs stored {"val_robust_acc": v})."""
    if best is None or "value" in best:
        return best
    return {"epoch": best["epoch"], "by": "val_robust_acc", "value": best["val_robust_acc"],
            "val_n": best.get("val_n")}
