"""The one training loop every recipe runs on.

Per step: a batch from a seeded permutation, tensor augmentation, the recipe's loss, one optimizer
update with the scheduled learning rate. Per epoch: accuracy on a fixed test subset, one JSON line
in `log.jsonl`, and `last.pt` written atomically. Every random draw is derived from
(seed, epoch, step), so a run resumed from any checkpoint (`resume=True`) continues exactly where
it stopped.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn

from energybench import data as datalib
from energybench.attacks.pgd import pgd, predict
from energybench.core.atomic import write_text_atomic
from energybench.core.distributed import World, all_sum, any_rank, barrier, check_batch, gather_to_main
from energybench.core.errors import UserError
from energybench.core.progress import progress
from energybench.core.runtime import (
    autocast, derive_seed, environment_info, eval_mode, inner_loop_precision, make_generator,
    set_deterministic,
)
from energybench.data.augment import random_crop_flip
from energybench.handles.checkpoint import build_checkpoint, read_checkpoint, save_checkpoint
from energybench.models import create_model
from energybench.training.config import TrainConfig, to_dict
from energybench.training.dynamics import EnergyDynamics
from energybench.training.guard import divergence_reason, largest_logit
from energybench.training.optim import (
    frozen_running_stats, learning_rate, make_optimizer, sharpness_ascent, sharpness_restore,
)
from energybench.training.recipes import RecipeContext, get_recipe
from energybench.training.run_folder import BEST_NAME, CHECKPOINT_NAME, EVENTS_NAME, LOG_NAME
from energybench.training.selection import best_from_progress, selection_attack, selection_rule
from energybench.training.splits import balanced_subset, split_holdout

_INIT, _PERM, _STEP, _RECIPE, _PROBE, _ROBUST = 0, 1, 2, 3, 4, 6  # derive_seed streams (5: splits.HOLDOUT_STREAM)
class _Diverged(Exception):
    pass


def step_numbers(loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor,
                 stats: dict) -> tuple[float, int, float, dict[str, float]]:
    """A step's loss, right answers, largest |logit| and the recipe's stats (0-dim tensors or
    floats) as Python numbers, in one device-to-host transfer: each `.item()` on its own would make
    the host wait for the GPU again. logits (N, K), y (N,)."""
    logits = logits.detach()
    keys = [key for key, value in stats.items() if torch.is_tensor(value)]
    parts = [loss.detach(), (logits.argmax(1) == y).sum(), largest_logit(logits), *(stats[k].detach() for k in keys)]
    values = torch.stack([part.double().reshape(()) for part in parts]).tolist()
    return values[0], int(values[1]), values[2], {**stats, **dict(zip(keys, values[3:]))}


@dataclass
class EpochTotals:
    """Running sums over one epoch's steps (stored in checkpoints for exact resume)."""

    loss: float = 0.0
    correct: float = 0.0
    seen: int = 0
    steps: int = 0
    seconds: float = 0.0
    stats: dict | None = None

    def add(self, loss: float, correct: int, seen: int, stats: dict[str, float]) -> None:
        self.loss += loss
        self.correct += correct
        self.seen += seen
        self.steps += 1
        self.stats = self.stats or {}
        for key, value in stats.items():
            self.stats[key] = self.stats.get(key, 0.0) + value

    def summary(self) -> dict:
        out = {"loss": self.loss / max(1, self.steps), "train_acc": self.correct / max(1, self.seen)}
        out.update({k: v / max(1, self.steps) for k, v in (self.stats or {}).items()})
        out["images_per_s"] = self.seen / self.seconds if self.seconds > 0 else None
        out["epoch_seconds"] = self.seconds
        return out


class RecipeStep(nn.Module):
    """One recipe step as a single module call, so DistributedDataParallel sees exactly one
    forward per iteration however many forward passes (attack, SGLD, data, samples) the recipe
    makes inside it. Attack and SGLD passes differentiate only the inputs, so they trigger no
    gradient synchronisation."""

    def __init__(self, model: nn.Module, recipe):
        super().__init__()
        self.model = model
        self.recipe = recipe

    def forward(self, x, y, generator, again=None):
        """(loss, logits, stats, again) of the recipe's step; given `again` (the closure a first
        call returned), only that loss is recomputed at the current weights (SAM's second pass)."""
        if again is not None:
            return again()
        out = self.recipe.loss(self.model, x, y, generator)
        return out.loss, out.logits, out.stats, out.again


class Trainer:
    """Owns model, optimizer, recipe and data for one run in `out_dir`."""

    def __init__(self, cfg: TrainConfig, out_dir: str | Path, device: torch.device,
                 world: World = World()):
        if cfg.data.source is not None and Path(cfg.data.source).exists():  # record absolute paths
            cfg = replace(cfg, data=replace(cfg.data, source=str(Path(cfg.data.source).resolve())))
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.device = device
        self.world = world
        self.local_batch = check_batch(cfg.optim.batch_size, world)
        set_deterministic(cfg.run.deterministic)
        train_full = datalib.load_split(cfg.data.source, "train")
        self.train_data, self.val_data = split_holdout(
            balanced_subset(train_full, cfg.data.train_subset), cfg.data.holdout, cfg.run.seed)
        self.eval_data = None
        if cfg.data.eval_subset != 0:
            self.eval_data = datalib.load_split(cfg.data.source, "test").subset(cfg.data.eval_subset)
        num_classes = self.train_data.num_classes
        kwargs = dict(cfg.model.kwargs)
        kwargs.setdefault("num_classes", num_classes)
        self.cfg = cfg = replace(cfg, model=replace(cfg.model, kwargs=kwargs))
        torch.manual_seed(derive_seed(cfg.run.seed, _INIT))  # weight init follows the run seed
        self.model = create_model(cfg.model.name, **kwargs).to(device)
        self.channels_last = cfg.run.channels_last and device.type == "cuda"
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(cfg.optim, self.model)
        self.images = self.train_data.images.to(device)  # uint8, moved once
        self.labels = self.train_data.labels.to(device)
        recipe_cls = get_recipe(cfg.recipe)
        ctx = RecipeContext(num_classes, device, self.images, self.labels,
                            derive_seed(cfg.run.seed, _RECIPE, *((world.rank,) if world.enabled else ())))
        self.recipe = recipe_cls(cfg.params, ctx)
        self.selection = selection_rule(cfg.run.select_by, recipe_cls)
        self.step_module = RecipeStep(self.model, self.recipe)
        if world.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self.step_module = DistributedDataParallel(self.step_module, device_ids=ids)
        self.dynamics = None
        if cfg.run.dynamics_probe > 0:
            probe = self.train_data.subset(cfg.run.dynamics_probe)  # fixed, un-augmented
            self.dynamics = EnergyDynamics(probe.float_images(device), probe.labels.to(device),
                                           derive_seed(cfg.run.seed, _PROBE))
        self.steps_per_epoch = len(self.train_data) // cfg.optim.batch_size
        if self.steps_per_epoch == 0:
            raise UserError(
                f"batch size {cfg.optim.batch_size} is larger than the training set "
                f"({len(self.train_data)} images); lower optim.batch_size"
            )
        self.total_steps = self.steps_per_epoch * cfg.optim.epochs
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.totals = EpochTotals()
        self.lr_scale, self.reseeds, self.rollbacks = 1.0, 0, 0
        self.resume_overrides: list[dict] = []
        self.best: dict | None = None  # {"epoch", "by", "value", "val_n"} of best.pt

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_dict(self, finished: bool = False, recipe_state: dict | None = None) -> dict:
        cfg = self.cfg
        if recipe_state is None:
            recipe_state = self.recipe.state_dict()
        progress = {
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step, "finished": finished,
            "epoch_totals": {k: v for k, v in vars(self.totals).items()},
            "lr_scale": self.lr_scale, "reseeds": self.reseeds, "rollbacks": self.rollbacks,
            "resume_overrides": self.resume_overrides, "best": self.best,
            "dynamics": self.dynamics.state_dict() if self.dynamics else {},
        }
        meta = {
            "seed": cfg.run.seed,
            "data_spec": cfg.data.source,
            "train_source": self.train_data.source,
            "classes": list(self.train_data.classes),
            "num_train_images": len(self.train_data),
            "image_shape": list(self.train_data.images.shape[1:]),  # (C, H, W) the model was trained on
            "num_holdout_images": 0 if self.val_data is None else len(self.val_data),
            "world_size": self.world.size,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **environment_info(self.device),
        }
        return build_checkpoint(cfg.recipe, cfg.model.name, cfg.model.kwargs, to_dict(cfg), self.model.state_dict(),
                                recipe_state, self.optimizer.state_dict(), progress, meta)

    def save(self, finished: bool = False) -> Path:
        """Write last.pt (rank 0; with several ranks, every rank's recipe state goes in it)."""
        path = self.out_dir / CHECKPOINT_NAME
        states = gather_to_main(self.recipe.state_dict(), self.world)
        if self.world.is_main:
            recipe_state = {"per_rank": states} if self.world.enabled else states[0]
            save_checkpoint(self.checkpoint_dict(finished, recipe_state), path)
        barrier(self.world)
        return path

    def restore(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        recipe_state = ckpt.get("recipe_state", {})
        saved_world = ckpt["meta"].get("world_size", 1)
        if saved_world != self.world.size:
            raise UserError(f"{self.out_dir / CHECKPOINT_NAME} was trained with {saved_world} "
                            f"process(es); resume it with the same number (now {self.world.size})")
        if self.world.enabled:
            recipe_state = recipe_state["per_rank"][self.world.rank]
        self.recipe.load_state_dict(recipe_state)
        prog = ckpt["progress"]
        self.epoch, self.step_in_epoch = prog["epoch"], prog["step_in_epoch"]
        self.global_step = prog["global_step"]
        self.totals = EpochTotals(**prog["epoch_totals"])
        self.lr_scale, self.reseeds = prog.get("lr_scale", 1.0), prog.get("reseeds", 0)
        self.rollbacks = prog.get("rollbacks", 0)
        self.resume_overrides = list(prog.get("resume_overrides", []))
        self.best = best_from_progress(prog.get("best"))
        if self.dynamics is not None:
            self.dynamics.load_state_dict(prog.get("dynamics", {}))
        log = self.out_dir / LOG_NAME
        if self.world.is_main and log.exists():  # drop lines of epochs the checkpoint has not completed
            lines = [ln for ln in log.read_text().splitlines()
                     if ln.strip() and json.loads(ln)["epoch"] <= self.epoch]
            write_text_atomic("".join(ln + "\n" for ln in lines), log)

    # ------------------------------------------------------------------ loop

    def _batch(self, order: torch.Tensor, step: int, generator: torch.Generator):
        """This rank's share of the global batch. Every rank augments the whole global batch
        with the same generator, so N ranks see exactly the images one process would."""
        bs = self.cfg.optim.batch_size
        idx = order[step * bs:(step + 1) * bs].to(self.device)
        images = self.images[idx]
        if self.cfg.data.augment:
            images = random_crop_flip(images, generator, padding_mode=self.cfg.data.padding_mode)
        if self.world.enabled:
            mine = slice(self.world.rank * self.local_batch, (self.world.rank + 1) * self.local_batch)
            images, idx = images[mine], idx[mine]
        x = datalib.to_float(images)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels[idx]

    def train_step(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_scale * learning_rate(self.cfg.optim, self.global_step,
                                                        self.total_steps)
        self.model.train()
        precision = (autocast(self.device, self.cfg.run.amp), inner_loop_precision(self.cfg.run.inner_precision))
        with precision[0], precision[1]:
            loss, logits, stats, again = self.step_module(x, y, generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.optim.sam_rho > 0:  # SAM: the gradient taken at w + e(w) updates w
            if again is None:
                raise UserError(f"{self.cfg.recipe} cannot recompute its loss at perturbed weights; "
                                f"set optim.sam_rho=0 for it")
            moved = sharpness_ascent(self.model, self.cfg.optim.sam_rho, self.cfg.optim.sam_adaptive)
            self.optimizer.zero_grad(set_to_none=True)
            with frozen_running_stats(self.model), autocast(self.device, self.cfg.run.amp):
                self.step_module(x, y, generator, again).backward()
            sharpness_restore(moved)
        self.optimizer.step()
        return loss, logits, stats

    def run(self, stop_after_steps: int | None = None) -> Path:
        """Train to the configured number of epochs. `stop_after_steps` stops without saving
        (as a killed process would), for testing resume. Diverged steps roll back to the last
        checkpoint (see energybench.training.guard)."""
        if self.global_step == 0 and self.step_in_epoch == 0 and self.epoch == 0:
            self.save()  # a state to roll back to before the first update
        while True:
            try:
                return self._run_epochs(stop_after_steps)
            except _Diverged as diverged:
                self._roll_back(str(diverged))

    def _step_seed(self, step: int) -> int:
        extra = (self.reseeds,) if self.reseeds else ()
        return derive_seed(self.cfg.run.seed, _STEP, self.epoch, step, *extra)

    def _run_epochs(self, stop_after_steps: int | None) -> Path:
        cfg = self.cfg
        every = cfg.run.checkpoint_every_steps
        guard = cfg.run.guard
        while self.epoch < cfg.optim.epochs:
            perm_gen = make_generator(derive_seed(cfg.run.seed, _PERM, self.epoch))
            order = torch.randperm(len(self.train_data), generator=perm_gen)
            steps = range(self.step_in_epoch, self.steps_per_epoch)
            bar = progress(steps, desc=f"{cfg.recipe} epoch {self.epoch + 1}/{cfg.optim.epochs}",
                           total=len(steps))
            for step in bar:
                if stop_after_steps is not None and self.global_step >= stop_after_steps:
                    return self.out_dir / CHECKPOINT_NAME
                start = time.perf_counter()
                step_seed = self._step_seed(step)
                torch.manual_seed(step_seed)  # dropout and any unseeded op, reproducibly
                generator = make_generator(step_seed, self.device)
                x, y = self._batch(order, step, generator)
                if self.world.enabled:  # each rank's attacks and SGLD draw their own noise
                    generator = make_generator(derive_seed(step_seed, self.world.rank), self.device)
                loss_t, logits, stats = self.train_step(x, y, generator)
                loss, correct, biggest, stats = step_numbers(loss_t, logits, y, stats)
                reason = divergence_reason(loss, biggest, stats, guard)
                if any_rank(reason is not None, self.world, self.device):
                    reason = reason or "another process diverged"
                    if not guard.enabled:
                        raise UserError(
                            f"{cfg.recipe}: training diverged at epoch {self.epoch + 1} step {step} "
                            f"({reason}); lower optim.lr or enable run.guard.enabled")
                    raise _Diverged(f"epoch {self.epoch + 1} step {step}: {reason}")
                self.totals.add(loss, correct, len(y), stats)
                self.totals.seconds += time.perf_counter() - start
                self.step_in_epoch, self.global_step = step + 1, self.global_step + 1
                if hasattr(bar, "set_postfix") and step % 10 == 0:
                    bar.set_postfix(loss=f"{loss:.3f}", acc=f"{correct / len(y):.2f}")
                if every and self.global_step % every == 0 and self.step_in_epoch < self.steps_per_epoch:
                    self._check_state({}, f"epoch {self.epoch + 1} step {step + 1}")
                    self.save()
            self._end_epoch()
        return self.save(finished=True)

    def _accuracies(self, data: datalib.LabeledImages, prefix: str) -> dict:
        """Clean accuracy on `data` and PGD-10 robust accuracy on its first run.robust_eval
        images (the same images and random starts every epoch)."""
        x, y = data.float_images(self.device), data.labels.to(self.device)
        right = predict(self.model, x) == y
        out = {f"{prefix}_acc": float(right.float().mean()), f"{prefix}_n": len(y)}
        n = min(self.cfg.run.robust_eval, len(y))
        if n:
            gen = make_generator(derive_seed(self.cfg.run.seed, _ROBUST), self.device)
            robust = 0
            for start in range(0, n, 250):
                stop = min(n, start + 250)
                x_adv = pgd(self.model, x[start:stop], y[start:stop], selection_attack(self.recipe.params), gen)
                robust += int((right[start:stop] & (predict(self.model, x_adv) == y[start:stop])).sum())
            out.update({f"{prefix}_robust_acc": robust / n, f"{prefix}_robust_n": n})
        return out

    def note_resume_overrides(self, changed: dict) -> None:
        """Record what a resume changed: in the checkpoint's progress and in events.jsonl."""
        entry = {"global_step": self.global_step, "changed": changed}
        self.resume_overrides = [*self.resume_overrides, entry]
        if self.world.is_main:
            self._event({"event": "resumed with overrides", **entry})
            print(f"[{self.cfg.recipe}] resuming at global step {self.global_step} with "
                  + ", ".join(f"{k}={v}" for k, v in changed.items()), flush=True)

    def _event(self, event: dict) -> None:
        with open(self.out_dir / EVENTS_NAME, "a") as fh:
            fh.write(json.dumps({**event, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")

    def _roll_back(self, reason: str) -> None:
        """Restore the last checkpoint, lower the learning rate, reseed, and log the event."""
        guard = self.cfg.run.guard
        rollbacks = self.rollbacks + 1
        if rollbacks > guard.retries:
            raise UserError(
                f"{self.cfg.recipe}: training diverged {rollbacks} times (last at {reason}); "
                f"giving up after run.guard.retries={guard.retries}. Lower optim.lr or loosen "
                f"run.guard bounds; the last good state is {self.out_dir / CHECKPOINT_NAME}")
        lr_scale, reseeds = self.lr_scale * guard.lr_factor, self.reseeds + 1
        self.restore(read_checkpoint(self.out_dir / CHECKPOINT_NAME))
        self.lr_scale, self.reseeds, self.rollbacks = lr_scale, reseeds, rollbacks
        if not self.world.is_main:
            return
        self._event({"event": "diverged", "at": reason, "rolled_back_to": {
                         "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                         "global_step": self.global_step},
                     "lr_scale": lr_scale, "reseeds": reseeds, "rollback": rollbacks})
        print(f"[{self.cfg.recipe}] diverged at {reason}; rolled back to global step "
              f"{self.global_step}, learning rate x{lr_scale:g}, reseeded "
              f"(roll-back {rollbacks}/{guard.retries})", flush=True)

    def _check_state(self, record: dict, where: str) -> None:
        """Before a checkpoint is written: the state must be one to come back to. The update after
        a step's own check can still blow the weights up, so the weights, every number logged for
        the epoch, and the logits of a fixed batch of training images are checked here too (the
        guard's bounds); a bad state rolls back instead of being saved, so last.pt is always the
        last good state."""
        reason = None
        bad_weight = next((name for name, t in self.model.state_dict().items()
                           if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)
        if bad_weight is not None:
            reason = f"weight {bad_weight} is not finite"
        if reason is None:
            reason = next((f"{key} is {value}" for key, value in record.items()
                           if isinstance(value, float) and not math.isfinite(value)), None)
        if reason is None:
            probe = self.train_data.subset(min(64, len(self.train_data)))
            x = probe.float_images(self.device)
            with torch.no_grad(), eval_mode(self.model):
                reason = divergence_reason(0.0, float(largest_logit(self.model(x))), {}, self.cfg.run.guard)
        if any_rank(reason is not None, self.world, self.device):
            reason = reason or "another process's state"
            if not self.cfg.run.guard.enabled:
                raise UserError(f"{self.cfg.recipe}: training diverged by {where} ({reason}); lower "
                                f"optim.lr or enable run.guard.enabled")
            raise _Diverged(f"{where}: {reason}")

    def _end_epoch(self) -> None:
        totals = self.totals
        if self.world.enabled:  # epoch statistics over all ranks
            keys = sorted(totals.stats or {})
            summed = all_sum([totals.loss, totals.correct, totals.seen]
                             + [totals.stats[k] for k in keys], self.world, self.device)
            size = self.world.size
            totals = EpochTotals(summed[0] / size, summed[1], int(summed[2]), totals.steps,
                                 totals.seconds, {k: v / size for k, v in zip(keys, summed[3:])})
        record = {"epoch": self.epoch + 1, "global_step": self.global_step,
                  "lr": self.optimizer.param_groups[0]["lr"], **totals.summary()}
        if self.world.is_main:
            if self.eval_data is not None:
                record.update(self._accuracies(self.eval_data, "eval"))
            if self.val_data is not None:
                record.update(self._accuracies(self.val_data, "val"))
            if self.dynamics is not None:
                record.update(self.dynamics.measure(self.model))
        self._check_state(record, f"the end of epoch {self.epoch + 1}")
        self.epoch, self.step_in_epoch = self.epoch + 1, 0
        self.totals = EpochTotals()
        key = self.selection["by"]
        improved = key in record and (self.best is None or record[key] > self.best["value"])
        finished = self.epoch >= self.cfg.optim.epochs
        if improved:  # keep the best held-out epoch (Rice et al. 2020); best.pt first, then last.pt
            n_key = "val_robust_n" if key == "val_robust_acc" else "val_n"
            self.best = {"epoch": self.epoch, "by": key, "value": record[key], "val_n": record[n_key]}
            save_checkpoint({**self.checkpoint_dict(finished),
                             "selection": {**self.selection, **self.best,
                                           "images": "held-out training images (data.holdout)"}},
                            self.out_dir / BEST_NAME)
        self.save(finished=finished)
        if not self.world.is_main:
            return
        with open(self.out_dir / LOG_NAME, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        summary = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if isinstance(v, float) and k in (
            "loss", "train_acc", "eval_acc", "eval_robust_acc", "val_acc", "val_robust_acc", "images_per_s"))
        print(f"[{self.cfg.recipe}] epoch {record['epoch']}/{self.cfg.optim.epochs}: {summary}", flush=True)
