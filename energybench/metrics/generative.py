"""Generation quality by torch-fidelity on quantised SGLD samples: `is`, `fid`, `kid`,
`precision` and `recall`.

Protocol: samples from energybench.energy.generation (balanced classes), quantised to uint8 by
rounding; IS with 10 splits; FID, KID and precision/recall against the training split the model
saw, whose features torch-fidelity caches under a name that includes the data source and the
weights' sha256 (its own cache key ignores the weights path). 50,000 samples at paper scale
(n_per_class 5000). KID: torch-fidelity's polynomial-kernel MMD (degree 3) over 100 random
subsets of 1,000 (its defaults). Precision/recall (Kynkaanniemi et al. 2019: the share of samples
inside the real images' k-NN balls, and the reverse; k = 3) use the same Inception-v3 pool
features as FID and KID; torch-fidelity's default for them is VGG-16, whose numbers differ.

Real Inception-v3 weights (torch-fidelity's weights-inception-2015-12-05-6726825d.pth) come from
`--inception-weights PATH`, from torch-fidelity's download cache ($TORCH_HOME/hub/checkpoints), or
from its download when `--inception-weights download` is given on a machine with internet.
Without them these metrics refuse: no number is ever printed as IS, FID, KID or precision/recall
from other features.
Tests run the same pipeline with a substitute extractor through `compute_fidelity`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

import torch

from energybench.core.errors import UserError, option
from energybench.core.hashing import file_sha256, json_key
from energybench.core.safe_pickle import load_tensor_dict, no_code_from_pickles
from energybench.data import data_identity
from energybench.energy.generation import (
    GENERATION_VERSION, GenerationConfig, Samples, generate_to_file, training_split,
)
from energybench.metrics.base import EvalContext, Metric, MetricResult, register_metric

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
            raise UserError(f"{option('inception_weights', given)} does not exist")
        return _checked(Path(given).resolve())
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    cached = torch_home / "hub" / "checkpoints" / INCEPTION_FILE
    if cached.is_file():
        return _checked(cached)
    raise UserError(
        f"IS, FID, KID and precision/recall need torch-fidelity's Inception-v3 weights ({INCEPTION_FILE}), "
        f"which are not on this machine (looked in {cached.parent}); pass {option('inception_weights', 'PATH')}, or "
        f"{option('inception_weights', 'download')} where the internet is reachable. None of them is computed "
        f"without them."
    )


# parameters torch-fidelity's FeatureExtractorInceptionV3 loads, first to last block (a file without
# them fails inside torch-fidelity with a page of missing keys)
INCEPTION_KEYS = ("Conv2d_1a_3x3.conv.weight", "Mixed_5b.branch1x1.conv.weight", "Mixed_7c.branch_pool.conv.weight",
                  "fc.weight", "fc.bias")


def _checked(path: Path) -> str:
    state = load_tensor_dict(path, "Inception weights")
    missing = [k for k in INCEPTION_KEYS if k not in state]
    if missing:
        found = ", ".join(list(state)[:2]) + (", ..." if len(state) > 2 else "")
        raise UserError(f"{path} is not torch-fidelity's Inception-v3 weights (no {missing[0]}; it holds {found}); "
                        f"give {INCEPTION_FILE}")
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
                     splits: int = 10, batch_size: int = 200, kid: bool = False, prc: bool = False,
                     kid_subsets: int = 100, kid_subset_size: int = 1000, prc_neighborhood: int = 3) -> dict:
    """torch-fidelity's IS / FID / KID / precision-recall of uint8 samples (N, 3, H, W) (against
    uint8 training images for all but IS), all from one feature extractor."""
    import torch_fidelity

    kwargs = dict(input1=UInt8Images(samples_uint8), cuda=device.type == "cuda", isc=isc, fid=fid, kid=kid,
                  prc=prc, feature_extractor=feature_extractor, isc_splits=splits, verbose=False,
                  batch_size=batch_size, cache=train_cache_name is not None, kid_subsets=kid_subsets,
                  kid_subset_size=kid_subset_size, prc_neighborhood=prc_neighborhood)
    if weights is not None:
        kwargs["feature_extractor_weights_path"] = weights
    if fid or kid or prc:
        kwargs["input2"] = UInt8Images(train_uint8)
        if train_cache_name is not None:
            kwargs["input2_cache_name"] = train_cache_name
    with no_code_from_pickles():  # torch-fidelity loads the weights with weights_only=False
        return torch_fidelity.calculate_metrics(**kwargs)


@dataclass(frozen=True)
class SampleSetParams(GenerationConfig):
    """The generated set (GenerationConfig) and where the Inception weights come from."""

    n_per_class: int = 100
    inception_weights: str = ""  # path, "download", or "" (torch-fidelity's cache)


@dataclass(frozen=True)
class GenerativeParams(SampleSetParams):
    LIMITS = {**GenerationConfig.LIMITS, "isc_splits": "[1, 1000]"}

    isc_splits: int = 10


@dataclass(frozen=True)
class KIDParams(SampleSetParams):
    LIMITS = {**GenerationConfig.LIMITS, "kid_subsets": "[1, 10000]", "kid_subset_size": "[2, 100000]"}

    kid_subsets: int = 100  # torch-fidelity's defaults
    kid_subset_size: int = 1000


@dataclass(frozen=True)
class PRParams(SampleSetParams):
    LIMITS = {**GenerationConfig.LIMITS, "prc_neighborhood": "[1, 1000]"}

    prc_neighborhood: int = 3  # k of the k-NN balls (torch-fidelity's and the paper's default)


def samples_for(ctx: EvalContext, params) -> Samples:
    """The samples this protocol asks for, generated once per evaluation folder and cached as
    `samples-<key>.npz`, the key a digest of the model's sha256, the generation config and
    version, the training data the initial distribution is fitted on, and the device type. Under
    torchrun every rank generates its share (`generation.generate_to_file`)."""
    gen_cfg = GenerationConfig(**{f.name: getattr(params, f.name) for f in fields(GenerationConfig)})
    train = training_split(ctx.loaded, ctx.train_data) if gen_cfg.init == "class-gaussian" else None
    key = {"model_sha256": ctx.loaded.sha256, "generation": dataclasses.asdict(gen_cfg),
           **({"image_shape": list(ctx.data.images.shape[1:])} if tuple(ctx.data.images.shape[2:]) != (32, 32) else {}),
           "generation_version": GENERATION_VERSION,
           "train_data": None if train is None else data_identity(train.source),
           "device": ctx.device.type}
    path = Path(ctx.out_dir) / f"samples-{json_key(key, 16)}.npz"
    purpose = ctx.stem.rsplit("-", 1)[0] if "-" in ctx.stem else ctx.stem  # the metric's name
    return generate_to_file(ctx.loaded, gen_cfg, ctx.device, path, key, train=train, world=ctx.world,
                            purpose=purpose, image_shape=tuple(ctx.data.images.shape[1:]))


def train_uint8(ctx: EvalContext):
    return training_split(ctx.loaded, ctx.train_data)


class FidelityMetric(Metric):
    """A torch-fidelity metric of the generated set: `compute_fidelity` with the metric's
    `fidelity` flag, against the training split unless `needs_reference` is False; `result`
    turns torch-fidelity's output into the record."""

    Params = GenerativeParams
    unit = "score"
    version = 2  # 2: each batch of samples from its own seed (shardable generation)
    uncounted = "Inception features"
    incidental_params = ("batch_size", "seed", "inception_weights")  # the weights' sha256 is in extra
    fidelity: ClassVar[str]  # torch-fidelity's flag: isc, fid, kid or prc
    needs_reference: ClassVar[bool] = True

    def check_inputs(self) -> None:
        """The Inception weights must be there (and be a plain state dict) before anything runs."""
        find_inception_weights(self.params.inception_weights or None)

    def prepare(self, ctx: EvalContext) -> None:
        """Under torchrun: refuse early on every rank, then generate the samples together."""
        find_inception_weights(self.params.inception_weights or None)
        samples_for(ctx, self.params)

    def check_sizes(self, samples: int, reference: int) -> None:
        """A protocol that cannot run on these many samples / reference images is an error."""

    def compute(self, ctx: EvalContext) -> MetricResult:
        weights = find_inception_weights(self.params.inception_weights or None)  # refuse early
        weights_sha256 = file_sha256(weights) if weights else "torch-fidelity download"
        samples = samples_for(ctx, self.params)
        train = train_uint8(ctx) if self.needs_reference else None
        self.check_sizes(len(samples.labels), len(train) if train is not None else 0)
        cache_name = None
        if train is not None:  # torch-fidelity's own cache key ignores the weights: ours does not
            cache_name = "energybench-train-" + json_key(
                {"data": data_identity(train.source), "weights": weights_sha256}, 16)
        protocol = {k: getattr(self.params, k) for k in ("kid_subsets", "kid_subset_size", "prc_neighborhood")
                    if hasattr(self.params, k)}
        out = compute_fidelity(samples.uint8(), train.images if train is not None else None,
                               device=ctx.device, weights=weights, train_cache_name=cache_name,
                               splits=getattr(self.params, "isc_splits", 10),
                               **{flag: flag == self.fidelity for flag in ("isc", "fid", "kid", "prc")},
                               **protocol)
        extra = {"inception_weights_sha256": weights_sha256}
        if train is not None:
            extra.update({"reference": train.source, "reference_n": len(train)})
        return self.result(out, len(samples.labels), extra)

    def result(self, out: dict, n: int, extra: dict) -> MetricResult:
        raise NotImplementedError(f"{self.name} must say which of torch-fidelity's numbers it records")


@register_metric
class InceptionScore(FidelityMetric):
    name = "is"
    summary = "Inception Score of SGLD samples (torch-fidelity, 10 splits; needs Inception weights)"
    fidelity = "isc"
    needs_reference = False

    def result(self, out, n, extra):
        std, splits = out["inception_score_std"], self.params.isc_splits
        return MetricResult(out["inception_score_mean"], n, std / splits ** 0.5,
                            {"splits": splits, "std_over_splits": std, **extra})


@register_metric
class FrechetInceptionDistance(FidelityMetric):
    name = "fid"
    summary = "FID of SGLD samples vs the training split (torch-fidelity; needs Inception weights)"
    fidelity = "fid"

    def result(self, out, n, extra):
        return MetricResult(out["frechet_inception_distance"], n, None, extra)


@register_metric
class KernelInceptionDistance(FidelityMetric):
    name = "kid"
    summary = ("KID of SGLD samples vs the training split (torch-fidelity: cubic-kernel MMD, 100 subsets "
               "of 1,000; needs Inception weights)")
    Params = KIDParams
    fidelity = "kid"

    def check_sizes(self, samples, reference):
        size = self.params.kid_subset_size
        if size > min(samples, reference):
            raise UserError(f"kid: kid_subset_size {size} is more than the {min(samples, reference):,} "
                            f"{'samples' if samples <= reference else 'reference images'}; pass "
                            f"{option('param', f'kid_subset_size={min(samples, reference)}')} or more samples "
                            f"(n_per_class)")

    def result(self, out, n, extra):
        std = out["kernel_inception_distance_std"]  # over overlapping random subsets: no stderr
        return MetricResult(out["kernel_inception_distance_mean"], n, None,
                            {"std_over_subsets": std, "subsets": self.params.kid_subsets,
                             "subset_size": self.params.kid_subset_size, **extra})


class PrecisionRecallMetric(FidelityMetric):
    Params = PRParams
    unit = "fraction"
    fidelity = "prc"
    features = "inception-v3-compat pool (2048); torch-fidelity's default for precision/recall is VGG-16"

    def result(self, out, n, extra):
        value = out[self.name]
        return MetricResult(value, n, None, {"precision": out["precision"], "recall": out["recall"],
                                             "f_score": out["f_score"], "features": self.features, **extra})


@register_metric
class Precision(PrecisionRecallMetric):
    name = "precision"
    summary = ("precision of SGLD samples (Kynkaanniemi et al. 2019, k = 3, Inception-v3 features): the share "
               "of samples inside the training images' k-NN balls; needs Inception weights")


@register_metric
class Recall(PrecisionRecallMetric):
    name = "recall"
    summary = ("recall of SGLD samples (Kynkaanniemi et al. 2019, k = 3, Inception-v3 features): the share "
               "of training images inside the samples' k-NN balls; needs Inception weights")
