"""Per-epoch energy dynamics on a fixed probe batch (JEAT eq. 15, Fig. 3).

At the end of epoch t, with parameters theta_t, clean probe images x and labels y:
    x_adv_t          = energy PGD on theta_t (ascend E(x, y); eps 8/255, step 2/255, 10 steps)
    Delta_x E        = E_t(x_adv_t, y) - E_t(x, y)           what the attack adds
    Delta_theta E    = E_t(x_adv_{t-1}, y) - E_{t-1}(x_adv_{t-1}, y)
                                                             what the epoch's updates did to the
                                                             previous epoch's adversarial examples
and the same for the marginal energy E(x) on the same examples. Means over the probe batch.
"""

from __future__ import annotations

import torch

from energybench.attacks.pgd import PGDConfig, pgd
from energybench.core.runtime import eval_mode, make_generator
from energybench.energy.energies import joint_energy, marginal_energy

PROBE_ATTACK = PGDConfig(eps=8 / 255, step_size=2 / 255, steps=10, objective="energy")


class EnergyDynamics:
    def __init__(self, x: torch.Tensor, y: torch.Tensor, seed: int):
        """x: float32 (P, C, H, W) in [0, 1] probe images; y: (P,) labels."""
        self.x, self.y, self.seed = x, y, seed
        self.prev_adv: torch.Tensor | None = None
        self.prev_energy: dict[str, float] | None = None

    @torch.no_grad()
    def _energies(self, model, x) -> dict[str, float]:
        logits = model(x)
        return {"joint": float(joint_energy(logits, self.y).mean()),
                "marginal": float(marginal_energy(logits).mean())}

    def measure(self, model) -> dict[str, float]:
        """Log fields for this epoch; updates the stored adversarial probe."""
        with eval_mode(model):
            x_adv = pgd(model, self.x, self.y, PROBE_ATTACK, make_generator(self.seed, self.x.device))
            clean, adv = self._energies(model, self.x), self._energies(model, x_adv)
            out = {}
            for kind in ("joint", "marginal"):
                out[f"E_{kind}_clean"] = clean[kind]
                out[f"E_{kind}_adv"] = adv[kind]
                out[f"dxE_{kind}"] = adv[kind] - clean[kind]
            if self.prev_adv is not None:
                now = self._energies(model, self.prev_adv)
                for kind in ("joint", "marginal"):
                    out[f"dthetaE_{kind}"] = now[kind] - self.prev_energy[kind]
        self.prev_adv, self.prev_energy = x_adv, adv
        return out

    def state_dict(self) -> dict:
        if self.prev_adv is None:
            return {}
        return {"prev_adv": self.prev_adv.cpu(), "prev_energy": dict(self.prev_energy)}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.prev_adv = state["prev_adv"].to(self.x.device)
            self.prev_energy = dict(state["prev_energy"])
