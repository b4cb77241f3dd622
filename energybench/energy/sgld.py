"""SGLD on a classifier's energies, a replay buffer, and the initial distributions it draws from.

One SGLD step (x in [0, 1] pixel units):
    x <- x - step_size * grad_x U(x) + noise * N(0, I)
with U one of
    "marginal"     E(x)                 (JEM's p(x), JEAT Algorithm 1 training)
    "joint"        E(x, y)              (conditional generation, paper eq. 17)
    "conditional"  E(x, y) - E(x)       (the classic robust-classifier procedure, eq. 16)
The papers' form x - a/2 grad U + sqrt(a) N is step_size = a/2, noise = sqrt(a). JEM's
published values (step 1, noise 0.01 on [-1, 1] inputs) are step_size 0.25, noise 0.005 in
pixel units. The model is in eval mode (unless `train_mode`) and runs in float32 while sampling.

Two variants of the step, for JEM++'s and SADA-JEM's samplers (noise 0 in both):
    grad_clip c > 0   each coordinate of grad_x U is clipped to [-c, c] before the step (their
                      codes clip the gradient on [-1, 1] inputs to [-1, 1]: c = 2 in pixel units)
    repeats r > 1     the step along that one gradient is taken r times, clamping after each:
                      JEM++'s proximal Langevin (YOPO-style) inner steps, which ascend the first
                      layer's Hamiltonian H(x, p) = sum(layer_one(x) * p) with p fixed at the
                      outer point; the first layer is affine, so grad_x H is the outer point's
                      input gradient and every inner step is the same clipped step.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from energybench.core.errors import UserError
from energybench.core.progress import progress
from energybench.core.runtime import eval_mode, inner_loop
from energybench.data import to_float
from energybench.energy.energies import joint_energy, marginal_energy

TARGETS = ("marginal", "joint", "conditional")
INITS = ("uniform", "class-gaussian")  # where a fresh chain starts (make_init)


@dataclass(frozen=True)
class SGLDConfig:
    steps: int = 20
    step_size: float = 0.25
    noise: float = 0.005
    target: str = "marginal"
    clamp: bool = True  # keep samples in [0, 1] after every step
    train_mode: bool = False  # sample with the model as it is (batch norm on batch statistics, as
    # JEM++'s and EB-JDAT's code do during training) instead of in eval mode
    grad_clip: float = 0.0  # clip each gradient coordinate to [-grad_clip, grad_clip]; 0: no clipping
    repeats: int = 1  # times each step is taken along its one gradient (JEM++'s inner steps)

    def __post_init__(self):
        if self.target not in TARGETS:
            raise UserError(f"unknown SGLD target {self.target!r}; use one of {', '.join(TARGETS)}")
        if self.steps < 0 or self.step_size < 0 or self.noise < 0 or self.grad_clip < 0:
            raise UserError("SGLD steps, step_size, noise and grad_clip must be >= 0")
        if self.repeats < 1:
            raise UserError(f"SGLD repeats must be >= 1, got {self.repeats}")


def sgld_energy(logits: torch.Tensor, y: torch.Tensor | None, target: str) -> torch.Tensor:
    """The per-example energy U that SGLD descends. logits (N, K) -> (N,)."""
    if target == "marginal":
        return marginal_energy(logits)
    if y is None:
        raise UserError(f"SGLD target {target!r} needs labels y")
    if target == "joint":
        return joint_energy(logits, y)
    return joint_energy(logits, y) - marginal_energy(logits)


def sgld(model: nn.Module, x0: torch.Tensor, cfg: SGLDConfig, generator: torch.Generator,
         y: torch.Tensor | None = None, desc: str | None = None) -> torch.Tensor:
    """Run `cfg.steps` SGLD steps from x0 (N, C, H, W); returns the detached samples. With `desc`
    the steps report progress (generation; training's inner loop stays quiet)."""
    x = x0.detach().clone()
    mode = contextlib.nullcontext() if cfg.train_mode else eval_mode(model)
    steps = range(cfg.steps) if desc is None else progress(range(cfg.steps), desc=desc, total=cfg.steps)
    with mode, torch.enable_grad(), inner_loop(x.device):
        for _ in steps:
            x.requires_grad_(True)
            energy = sgld_energy(model(x), y, cfg.target).sum()
            (grad,) = torch.autograd.grad(energy, x)
            if cfg.grad_clip > 0:
                grad = grad.clamp(-cfg.grad_clip, cfg.grad_clip)
            x = x.detach()
            for _ in range(cfg.repeats - 1):
                x.sub_(grad, alpha=cfg.step_size)
                if cfg.clamp:
                    x.clamp_(0.0, 1.0)
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x.sub_(grad, alpha=cfg.step_size).add_(noise, alpha=cfg.noise)
            if cfg.clamp:
                x.clamp_(0.0, 1.0)
    return x.detach()


def assign_last(target: torch.Tensor, idx: torch.Tensor, values: torch.Tensor) -> None:
    """target[idx] = values, deterministically: for an index that occurs several times the last
    occurrence wins. (Plain index assignment with repeated indices lets parallel threads race, so
    two identical runs could keep different values.) idx: (n,) int64; values: (n, ...)."""
    unique, inverse = torch.unique(idx, return_inverse=True)
    position = torch.arange(len(idx), device=idx.device)
    last = torch.full((len(unique),), -1, dtype=torch.long, device=idx.device)
    last = last.scatter_reduce(0, inverse, position, reduce="amax")
    target[unique] = values[last]


class UniformInit:
    """x0 ~ U(0, 1)^D (JEM's uniform noise, [-1, 1] in its own units)."""

    name = "uniform"

    def __init__(self, shape=(3, 32, 32)):
        self.shape = tuple(shape)

    def sample(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.rand((len(y), *self.shape), generator=generator, device=y.device)


CLASS_GAUSSIAN_MAX_BYTES = 16 * 2**30  # CIFAR-100 at 32x32 needs 3.5 GiB; 100 classes at 64x64, 56 GiB


class ClassGaussianInit:
    """x0 ~ N(mu_y, Sigma_y) per class, fitted on training images (full covariance, as in JEAT
    sec. 2.2 and the informative initialisation of JEM++ / SADA-JEM / EB-JDAT), clamped to [0, 1].

    images: uint8 (N, C, H, W); labels (N,). Memory: K * D^2 floats (377 MB for CIFAR-10).
    `jitter` is added to the covariance diagonal, as those codebases do (1e-4 there).
    """

    name = "class-gaussian"

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                 device: torch.device, jitter: float = 1e-4):
        self.shape = tuple(images.shape[1:])
        dim = math.prod(self.shape)
        need = num_classes * dim * dim * 4
        if need > CLASS_GAUSSIAN_MAX_BYTES:
            raise UserError(f"init 'class-gaussian' needs {num_classes} covariances of {dim:,}x{dim:,} "
                            f"({need / 2**30:.0f} GiB) for {num_classes} classes of {'x'.join(map(str, self.shape))} "
                            f"images, more than the {CLASS_GAUSSIAN_MAX_BYTES / 2**30:.0f} GiB allowed; use "
                            f"init 'uniform' (or a smaller image size)")
        self.mean = torch.zeros(num_classes, dim, device=device)
        self.scale_tril = torch.zeros(num_classes, dim, dim, device=device)
        eye = torch.eye(dim, device=device, dtype=torch.float64)
        for c in range(num_classes):
            xc = to_float(images[labels == c].reshape(-1, dim).to(device))
            if len(xc) < 2:
                raise UserError(f"class {c} has {len(xc)} training images; need at least 2 to fit")
            mu = xc.mean(0)
            centred = xc - mu  # float32 products (4x faster), factorised in float64
            cov = (centred.T @ centred).double() / len(xc)
            chol, info = torch.linalg.cholesky_ex(cov + jitter * eye)
            if int(info) != 0:
                raise UserError(f"class {c}: covariance is not positive definite; raise the jitter")
            self.mean[c], self.scale_tril[c] = mu, chol.float()

    def sample(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One draw per label. y: (n,) -> (n, C, H, W) in [0, 1]; one matmul per class present."""
        z = torch.randn((len(y), self.mean.shape[1]), generator=generator, device=self.mean.device)
        x = torch.empty_like(z)
        y_local = y.to(self.mean.device)
        for c in torch.unique(y_local).tolist():
            rows = y_local == c
            x[rows] = self.mean[c] + z[rows] @ self.scale_tril[c].T
        return x.clamp_(0.0, 1.0).view(len(y), *self.shape).to(y.device)


class ReplayBuffer:
    """Persistent SGLD chains (JEM): draw a batch of chain states, each replaced with
    probability `reinit_prob` by a fresh draw from `init`; after SGLD, write them back.

    images: float32 (size, C, H, W) in [0, 1]; labels: (size,) the class each chain was
    initialised from (used by the class-conditional initialiser).
    """

    def __init__(self, size: int, init, num_classes: int, device: torch.device,
                 reinit_prob: float, generator: torch.Generator):
        if size < 1:
            raise UserError(f"replay buffer size must be >= 1, got {size}")
        if not 0.0 <= reinit_prob <= 1.0:
            raise UserError(f"reinit probability must be in [0, 1], got {reinit_prob}")
        self.init, self.num_classes, self.reinit_prob = init, num_classes, reinit_prob
        self.labels = torch.randint(0, num_classes, (size,), generator=generator, device=device)
        self.images = init.sample(self.labels, generator)

    def __len__(self) -> int:
        return len(self.labels)

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0 (n, C, H, W), indices (n,)) for a batch of chains."""
        device = self.images.device
        idx = torch.randint(0, len(self), (n,), generator=generator, device=device)
        x0 = self.images[idx].clone()
        reinit = torch.rand(n, generator=generator, device=device) < self.reinit_prob
        if bool(reinit.any()):
            fresh_labels = torch.randint(0, self.num_classes, (int(reinit.sum()),),
                                         generator=generator, device=device)
            x0[reinit] = self.init.sample(fresh_labels, generator)
            assign_last(self.labels, idx[reinit], fresh_labels)
        return x0, idx

    def write(self, idx: torch.Tensor, x: torch.Tensor) -> None:
        """Store chain states; where a chain was drawn twice in the batch, the later one is kept."""
        assign_last(self.images, idx, x.detach())

    def state_dict(self) -> dict:
        # clone: on CPU .cpu() would return the live tensor, which later draws overwrite
        return {"images": self.images.detach().cpu().clone(), "labels": self.labels.cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        if state["images"].shape[1:] != self.images.shape[1:]:
            raise UserError("replay buffer in the checkpoint has another image shape")
        self.images = state["images"].to(self.images.device).clone()
        self.labels = state["labels"].to(self.labels.device).clone()


_FITTED: dict = {}


def make_init(kind: str, train_images: torch.Tensor, train_labels: torch.Tensor, num_classes: int,
              device: torch.device, cache_key: str | None = None):
    """'uniform' or 'class-gaussian' (fitted on the given training images). With a `cache_key`
    (e.g. the training source), a fitted Gaussian is reused within this process."""
    if kind == "uniform":
        return UniformInit(tuple(train_images.shape[1:]))
    if kind == "class-gaussian":
        key = (cache_key, str(device), num_classes)
        if cache_key is not None and key in _FITTED:
            return _FITTED[key]
        init = ClassGaussianInit(train_images, train_labels, num_classes, device)
        if cache_key is not None:
            _FITTED.clear()  # keep at most one (377 MB for CIFAR-10)
            _FITTED[key] = init
        return init
    raise UserError(f"unknown SGLD init {kind!r}; use one of {', '.join(INITS)}")
