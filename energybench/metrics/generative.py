"""Generation quality: `is` and `fid` by torch-fidelity on quantised SGLD samples.

Protocol: samples from energybench.generation (balanced classes), quantised to uint8 by
rounding; IS with 10 splits; FID against the training split the model saw, whose statistics
torch-fidelity caches under a name that includes the data source and the weights' sha256 (its own
cache key ignores the weights path). 50,000 samples at paper scale (n_per_class 5000).

Real Inception-v3 weights (torch-fidelity's weights-inception-2015-12-05-6726825d.pth) come from
`--inception-weights PATH`, from torch-fidelity's download cache ($TORCH_HOME/hub/checkpoints), or
from its download when `--inception-weights download` is given on a machine with internet.
Without them these metrics refuse: no number is ever printed as IS or FID from other features.
Tests run the same pipeline with a substitute extractor through `compute_fidelity`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from energybench.data import data_identity
from energybench.errors import UserError
from energybench.hashing import file_sha256, json_key
from energybench.generation import (
    GENERATION_VERSION, GenerationConfig, Samples, generate_to_file, training_split,
)
from energybench.metrics.base import EvalContext, Metric, MetricResult, register_metric
from energybench.safe_pickle import load_tensor_dict, no_code_from_pickles

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION = "inception-v3-compat"


def find_inception_weights(given: str | None) -> str | None:
    """A weights path, None for torch-fidelity's own download, or a UserError (refusal).

    A file is read here with `weights_only=True` and must be a state dict of tensors: torch-fidelity
    itself unpickles it with `weights_only=False`, so a crafted file would run code there."""
    if given == "download":
        return None
    if given:
        if not Path(given).is_file():
            raise UserError(f"--inception-weights {given} does not exist")
        return _checked(Path(given).resolve())
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    cached = torch_home / "hub" / "checkpoints" / INCEPTION_FILE
    if cached.is_file():
        return _checked(cached)
    raise UserError(
        f"IS/FID need torch-fidelity's Inception-v3 weights ({INCEPTION_FILE}), which are not on "
        f"this machine (looked in {cached.parent}); pass --inception-weights PATH, or "
        f"--inception-weights download where the internet is reachable. No IS/FID value is computed "
        f"without them."
    )


def _checked(path: Path) -> str:
    load_tensor_dict(path, "Inception weights")
    return str(path)


class UInt8Images(torch.utils.data.Dataset):
    """uint8 (N, 3, H, W) images as torch-fidelity wants them."""

    def __init__(self, images: torch.Tensor):
        if images.dtype != torch.uint8:
            raise TypeError("torch-fidelity needs uint8 images")
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def compute_fidelity(samples_uint8: torch.Tensor, train_uint8: torch.Tensor | None, *, isc: bool,
                     fid: bool, device: torch.device, feature_extractor: str = INCEPTION,
                     weights: str | None = None, train_cache_name: str | None = None,
                     splits: int = 10, batch_size: int = 200) -> dict:
    """torch-fidelity's IS / FID of uint8 samples (against uint8 training images for FID)."""
    import torch_fidelity

    kwargs = dict(input1=UInt8Images(samples_uint8), cuda=device.type == "cuda", isc=isc, fid=fid,
                  feature_extractor=feature_extractor, isc_splits=splits, verbose=False,
                  batch_size=batch_size, cache=train_cache_name is not None)
    if weights is not None:
        kwargs["feature_extractor_weights_path"] = weights
    if fid:
        kwargs["input2"] = UInt8Images(train_uint8)
        if train_cache_name is not None:
            kwargs["input2_cache_name"] = train_cache_name
    with no_code_from_pickles():  # torch-fidelity loads the weights with weights_only=False
        return torch_fidelity.calculate_metrics(**kwargs)


@dataclass(frozen=True)
class GenerativeParams(GenerationConfig):
    LIMITS = {**GenerationConfig.LIMITS, "isc_splits": "[1, inf)"}

    n_per_class: int = 100
    inception_weights: str = ""  # path, "download", or "" (torch-fidelity's cache)
    isc_splits: int = 10


def samples_for(ctx: EvalContext, params) -> Samples:
    """The samples this protocol asks for, generated once per evaluation folder and cached as
    `samples-<key>.npz`, the key a digest of the model's sha256, the generation config and
    version, the training data the initial distribution is fitted on, and the device type. Under
    torchrun every rank generates its share (`generation.generate_to_file`)."""
    gen_cfg = GenerationConfig(**{f.name: getattr(params, f.name) for f in fields(GenerationConfig)})
    train = training_split(ctx.loaded, ctx.train_data) if gen_cfg.init == "class-gaussian" else None
    key = {"model_sha256": ctx.loaded.sha256, "generation": dataclasses.asdict(gen_cfg),
           "generation_version": GENERATION_VERSION,
           "train_data": None if train is None else data_identity(train.source),
           "device": ctx.device.type}
    path = Path(ctx.out_dir) / f"samples-{json_key(key, 16)}.npz"
    return generate_to_file(ctx.loaded, gen_cfg, ctx.device, path, key, train=train, world=ctx.world)


def train_uint8(ctx: EvalContext):
    return training_split(ctx.loaded, ctx.train_data)


class FidelityMetric(Metric):
    Params = GenerativeParams
    unit = "score"
    version = 2  # 2: each batch of samples from its own seed (shardable generation)
    incidental_params = ("batch_size", "seed", "inception_weights")  # the weights' sha256 is in extra

    def prepare(self, ctx: EvalContext) -> None:
        """Under torchrun: refuse early on every rank, then generate the samples together."""
        find_inception_weights(self.params.inception_weights or None)
        samples_for(ctx, self.params)

    def compute(self, ctx: EvalContext) -> MetricResult:
        weights = find_inception_weights(self.params.inception_weights or None)  # refuse early
        weights_sha256 = file_sha256(weights) if weights else "torch-fidelity download"
        samples = samples_for(ctx, self.params)
        train = train_uint8(ctx) if self.name == "fid" else None
        cache_name = None
        if train is not None:  # torch-fidelity's own cache key ignores the weights: ours does not
            cache_name = "energybench-train-" + json_key(
                {"data": data_identity(train.source), "weights": weights_sha256}, 16)
        out = compute_fidelity(samples.uint8(), train.images if train is not None else None,
                               isc=self.name == "is", fid=self.name == "fid", device=ctx.device,
                               weights=weights, train_cache_name=cache_name,
                               splits=self.params.isc_splits)
        if self.name == "is":
            std = out["inception_score_std"]
            return MetricResult(out["inception_score_mean"], len(samples.labels),
                                std / self.params.isc_splits ** 0.5,
                                {"splits": self.params.isc_splits, "std_over_splits": std,
                                 "inception_weights_sha256": weights_sha256})
        return MetricResult(out["frechet_inception_distance"], len(samples.labels), None,
                            {"reference": train.source, "reference_n": len(train),
                             "inception_weights_sha256": weights_sha256})


@register_metric
class InceptionScore(FidelityMetric):
    name = "is"
    summary = "Inception Score of SGLD samples (torch-fidelity, 10 splits; needs Inception weights)"


@register_metric
class FrechetInceptionDistance(FidelityMetric):
    name = "fid"
    summary = "FID of SGLD samples vs the training split (torch-fidelity; needs Inception weights)"
