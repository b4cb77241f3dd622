"""Energy landscapes: `energy-hist` (EB-JDAT Fig. 2), `energy-contour` (JEAT Fig. 2) and
`energy-dynamics` (JEAT Fig. 3, from a training run's log). Each writes its raw data beside its record; its metric's `draw` (metrics.landscape_figures) makes the figure from it."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from energybench.attacks.pgd import PGDConfig, pgd
from energybench.core.atomic import write_npz_atomic, write_text_atomic
from energybench.core.errors import UserError
from energybench.core.hashing import file_sha256
from energybench.core.runtime import derive_seed, make_generator
from energybench.core.validation import Checked
from energybench.data import to_float
from energybench.energy.energies import joint_energy, refuse_nonfinite
from energybench.energy.generation import GenerationConfig
from energybench.metrics.base import EvalContext, Metric, MetricResult, Shard, register_metric
from energybench.metrics.generative import samples_for
from energybench.metrics.landscape_figures import energy_contour, energy_dynamics, energy_hist


@torch.no_grad()
def joint_energies(model, x: torch.Tensor, y: torch.Tensor, device, batch: int = 256) -> torch.Tensor:
    """E(x, y) for (N, C, H, W) images in batches -> (N,) on CPU."""
    return torch.cat([joint_energy(model(x[i:i + batch].to(device)), y[i:i + batch].to(device)).cpu()
                      for i in range(0, len(x), batch)])


def overlap(a: np.ndarray, b: np.ndarray, bins: np.ndarray) -> float:
    """Histogram intersection of two samples' densities on shared bins, in [0, 1]."""
    ha, _ = np.histogram(a, bins=bins)
    hb, _ = np.histogram(b, bins=bins)
    return float(np.minimum(ha / max(1, ha.sum()), hb / max(1, hb.sum())).sum())


@dataclass(frozen=True)
class HistParams(GenerationConfig):
    """The generated set's SGLD protocol (GenerationConfig fields) plus the PGD-20 protocol
    (pgd_step_size None: eps / 4, as for pgd20)."""

    LIMITS = {**GenerationConfig.LIMITS, "eps": "(0, 1]", "pgd_step_size": "(0, 1]",
              "pgd_steps": "[1, 10000]", "bins": "[2, 10000]"}

    eps: float = 8 / 255
    pgd_step_size: float | None = None
    pgd_steps: int = 20
    bins: int = 60

    def attack(self) -> PGDConfig:
        return PGDConfig(eps=self.eps, step_size=self.pgd_step_size, steps=self.pgd_steps)

    def gradient_passes(self, n: int, num_classes: int) -> float:
        """The generated set's SGLD plus PGD on the n test images."""
        return super().gradient_passes(n, num_classes) + n * (self.pgd_steps + 2 / 3)

    def resolved(self) -> "HistParams":
        return replace(self, pgd_step_size=self.attack().step)


@register_metric
class EnergyHistogram(Metric):
    name = "energy-hist"
    draw = staticmethod(energy_hist)
    summary = "E(x,y) of clean, PGD-20 and generated images (EB-JDAT Fig. 2); value: mean gap adv - clean"
    Params = HistParams
    norms = ("Linf",)  # its PGD-20 is the L-inf protocol
    unit = "energy"
    incidental_params = ("batch_size", "bins")

    version = 2  # 2: samples from per-batch seeds; energies per test batch (shardable)
    shardable = True

    def prepare(self, ctx: EvalContext) -> None:
        samples_for(ctx, self.params)

    def shard(self, ctx: EvalContext) -> Shard:
        """E(x, y) of this process's clean test images and their PGD-20 examples."""
        cfg = self.params.attack()
        index, clean, adversarial = [], [], []
        for x, y, off in ctx.batches():
            adv = pgd(ctx.model, x, y, cfg, make_generator(derive_seed(ctx.seed, off), ctx.device))
            with torch.no_grad():
                clean.append(joint_energy(ctx.model(x), y).cpu())
                adversarial.append(joint_energy(ctx.model(adv), y).cpu())
            index.append(torch.arange(off, off + len(y)))
        if not index:
            return Shard({})
        return Shard({"index": torch.cat(index).numpy(), "clean": torch.cat(clean).numpy(),
                      "adversarial": torch.cat(adversarial).numpy()})

    def finish(self, ctx: EvalContext, shard: Shard) -> MetricResult:
        p = self.params
        refuse_nonfinite(self.name, ~np.isfinite(shard.columns["clean"]) | ~np.isfinite(shard.columns["adversarial"]))
        samples = samples_for(ctx, p)
        e = {"clean": shard.columns["clean"], "adversarial": shard.columns["adversarial"],
             "generated": joint_energies(ctx.model, samples.images, samples.labels, ctx.device).numpy()}
        lo = min(v.min() for v in e.values())
        hi = max(v.max() for v in e.values())
        bins = np.linspace(lo, hi, p.bins + 1)
        write_npz_atomic(ctx.artifact("npz"), **e)
        stats = {k: {"mean": float(v.mean()), "std": float(v.std()), "n": len(v)} for k, v in e.items()}
        gap_adv = stats["adversarial"]["mean"] - stats["clean"]["mean"]
        gap_gen = stats["generated"]["mean"] - stats["clean"]["mean"]
        return MetricResult(gap_adv, len(ctx.data), None, {
            "energies": stats, "gap_adv_clean": gap_adv, "gap_generated_clean": gap_gen,
            "overlap_clean_adv": overlap(e["clean"], e["adversarial"], bins),
            "overlap_clean_generated": overlap(e["clean"], e["generated"], bins),
            "figure": ctx.artifact("png").name, "raw": ctx.artifact("npz").name})


@dataclass(frozen=True)
class ContourParams(Checked):
    LIMITS = {"images": "[1, 1000]", "radius": "(0, 1]", "grid": "[3, 1001]", "flat_radius": "(0, 1]"}

    images: int = 4  # the first test images
    radius: float = 16 / 255  # L-inf extent of the grid along each direction (pixel units)
    grid: int = 21
    flat_radius: float = 8 / 255  # flatness: mean energy rise within this L-inf radius


@register_metric
class EnergyContour(Metric):
    name = "energy-contour"
    draw = staticmethod(energy_contour)
    summary = "E(x,y) around test images along two random sign directions (JEAT Fig. 2); value: mean rise within 8/255"
    Params = ContourParams
    unit = "energy"

    @torch.no_grad()
    def compute(self, ctx: EvalContext) -> MetricResult:
        p = self.params
        n = min(p.images, len(ctx.data))
        x = to_float(ctx.data.images[:n]).to(ctx.device)
        y = ctx.data.labels[:n].to(ctx.device)
        gen = make_generator(derive_seed(ctx.seed, 5), ctx.device)
        # Random Rademacher directions: each pixel moves by +-1 per unit (L-inf norm 1). The grid is
        # not clamped to [0, 1]: it maps the function around the image.
        d1 = torch.randint(0, 2, x.shape, generator=gen, device=ctx.device).float().mul_(2).sub_(1)
        d2 = torch.randint(0, 2, x.shape, generator=gen, device=ctx.device).float().mul_(2).sub_(1)
        steps = torch.linspace(-p.radius, p.radius, p.grid, device=ctx.device)
        grid = torch.zeros(n, p.grid, p.grid)
        for i, a in enumerate(steps):
            for j, b in enumerate(steps):
                grid[:, i, j] = joint_energy(ctx.model(x + a * d1 + b * d2), y).cpu()
        centre = grid[:, p.grid // 2, p.grid // 2]
        near = (steps.abs() <= p.flat_radius + 1e-9).cpu()
        rise = (grid[:, near][:, :, near] - centre[:, None, None]).mean(dim=(1, 2))
        write_npz_atomic(ctx.artifact("npz"), grid=grid.numpy(), steps=steps.cpu().numpy(),
                         labels=y.cpu().numpy(), classes=np.array(ctx.data.classes))
        return MetricResult(float(rise.mean()), n, float(rise.std() / n**0.5) if n > 1 else None, {
            "rise_per_image": rise.tolist(), "centre_energy": centre.tolist(),
            "figure": ctx.artifact("png").name, "raw": ctx.artifact("npz").name})


@dataclass(frozen=True)
class DynamicsParams:
    pass


@register_metric
class EnergyDynamicsFigure(Metric):
    name = "energy-dynamics"
    draw = staticmethod(energy_dynamics)
    summary = "JEAT Fig. 3 from the run's log: Delta_x E and Delta_theta E per epoch; value: last Delta_x E(x,y)"
    Params = DynamicsParams
    unit = "energy"

    def compute(self, ctx: EvalContext) -> MetricResult:
        if ctx.loaded.checkpoint is None:
            raise UserError(f"energy-dynamics reads a training run's log: {ctx.loaded.name} is not "
                            f"an energybench checkpoint")
        path = Path(ctx.loaded.path)
        beside = path.with_name(f"{path.stem}.log.jsonl")  # a copied checkpoint's own log
        log = beside if beside.is_file() else path.parent / "log.jsonl"  # else its run folder's
        if not log.is_file():
            raise UserError(f"energy-dynamics needs the training log beside the checkpoint ({log} or {beside})")
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if "dxE_joint" in r]
        if not rows:
            raise UserError(f"{log} has no energy dynamics (trained with run.dynamics_probe=0?)")
        write_text_atomic("".join(json.dumps(r) + "\n" for r in rows), ctx.artifact("rows.jsonl"))
        return MetricResult(float(rows[-1]["dxE_joint"]), len(rows), None, {
            "epochs": len(rows), "figure": ctx.artifact("png").name,
            "raw": ctx.artifact("rows.jsonl").name, "log_sha256": file_sha256(log)})
