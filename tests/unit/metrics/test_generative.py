"""The IS/FID pipeline with a substitute feature extractor (never presented as IS or FID), checked
against an independent computation from the same features; the real metrics refuse without weights."""

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial
import torch
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from energybench.core.errors import UserError
from energybench.metrics.generative import compute_fidelity, find_inception_weights

NAME = "energybench-test-random-features"
REPO = Path(__file__).resolve().parents[3]


class RandomFeatures(FeatureExtractorBase):
    """A fixed random conv net: 16 'pool' features and 10 logits. Only for testing the pipeline."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        gen = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 16, 5, stride=4)
        self.head = torch.nn.Linear(16, 10)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)

    def forward(self, x):
        pool = torch.tanh(self.conv(x.float() / 255)).mean((2, 3))
        feats = {"pool": pool.double(), "logits_unbiased": self.head(pool).double()}
        return tuple(feats[f] for f in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return "pool", "logits_unbiased"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits_unbiased", "fid": "pool", "kid": "pool", "prc": "pool"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return None


if NAME not in torch_fidelity.registry.FEATURE_EXTRACTORS_REGISTRY:
    torch_fidelity.register_feature_extractor(NAME, RandomFeatures)


def features(images):
    with torch.no_grad():
        pool, logits = RandomFeatures(NAME, ["pool", "logits_unbiased"])(images)
    return pool.numpy(), logits.numpy()


def reference_fid(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def reference_is(logits, splits):
    rng = np.random.RandomState(2020)  # torch-fidelity shuffles with this seed before splitting
    logits = logits[rng.permutation(len(logits))]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    scores = []
    for part in np.array_split(p, splits):
        kl = part * (np.log(part) - np.log(part.mean(0, keepdims=True)))
        scores.append(np.exp(kl.sum(1).mean()))
    return float(np.mean(scores))


def test_pipeline_matches_independent_computation(exact_test):
    real = exact_test.images[:400]
    fake = (real.float() * 0.8 + 20).round().clamp(0, 255).to(torch.uint8)
    out = compute_fidelity(fake, real, isc=True, fid=True, device=torch.device("cpu"),
                           feature_extractor=NAME, splits=10)
    pool_f, logits_f = features(fake)
    pool_r, _ = features(real)
    assert out["frechet_inception_distance"] == pytest.approx(reference_fid(pool_f, pool_r), rel=1e-4, abs=1e-8)
    assert out["inception_score_mean"] == pytest.approx(reference_is(logits_f, 10), rel=1e-4)
    self_fid = compute_fidelity(real, real, isc=False, fid=True, device=torch.device("cpu"),
                                feature_extractor=NAME)["frechet_inception_distance"]
    assert abs(self_fid) < 1e-6


def reference_kid(a, b, subsets, size, seed=2020):
    """Unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3 (Binkowski et al. 2018),
    averaged over random subsets drawn as torch-fidelity draws them (RandomState(2020), without
    replacement within a subset)."""
    rng, d, values = np.random.RandomState(seed), a.shape[1], []
    for _ in range(subsets):
        x = a[rng.choice(len(a), size, replace=False)]
        y = b[rng.choice(len(b), size, replace=False)]
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        off = ~np.eye(size, dtype=bool)
        values.append(kxx[off].mean() + kyy[off].mean() - 2 * kxy.mean())
    return float(np.mean(values))


def reference_precision_recall(fake, real, k=3):
    """Kynkaanniemi et al. 2019: each set's k-NN radii (the k-th neighbour other than itself);
    precision = share of fake points within some real point's radius, recall the reverse."""
    d_ff, d_rr, d_fr = (scipy.spatial.distance.cdist(p, q) for p, q in ((fake, fake), (real, real), (fake, real)))
    radius_f, radius_r = np.sort(d_ff, 1)[:, k], np.sort(d_rr, 1)[:, k]
    return float((d_fr <= radius_r[None, :]).any(1).mean()), float((d_fr.T <= radius_f[None, :]).any(1).mean())


def test_kid_and_precision_recall_match_independent_computations(exact_test):
    """KID and precision/recall from the same substitute features as the FID test, against a
    NumPy/SciPy computation written from their papers' definitions (not presented as KID/PR)."""
    real = exact_test.images[:300]
    fake = (real.flip(0).float() * 0.7 + 40).round().clamp(0, 255).to(torch.uint8)
    out = compute_fidelity(fake, real, isc=False, fid=False, kid=True, prc=True, device=torch.device("cpu"),
                           feature_extractor=NAME, kid_subsets=20, kid_subset_size=100, prc_neighborhood=3)
    pool_f, pool_r = features(fake)[0], features(real)[0]
    assert out["kernel_inception_distance_mean"] == pytest.approx(reference_kid(pool_f, pool_r, 20, 100), rel=1e-5)
    precision, recall = reference_precision_recall(pool_f, pool_r)
    assert 0 < precision < 1 and 0 < recall < 1
    assert out["precision"] == pytest.approx(precision, abs=1e-6) and out["recall"] == pytest.approx(recall, abs=1e-6)
    same = compute_fidelity(real, real, isc=False, fid=False, kid=True, prc=True, device=torch.device("cpu"),
                            feature_extractor=NAME, kid_subsets=5, kid_subset_size=100)
    assert same["precision"] == 1.0 and same["recall"] == 1.0


def test_is_and_fid_refuse_without_inception_weights(trained_run, exact_npz, tmp_path, monkeypatch):
    from energybench.evaluation.runner import evaluate

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(UserError, match="need torch-fidelity's Inception-v3 weights"):
        find_inception_weights(None)
    for metric in ("is", "fid", "kid", "precision", "recall"):
        with pytest.raises(UserError, match="None of them is computed without them"):
            evaluate(trained_run / "last.pt", [metric], data=str(exact_npz), n=10,
                     out_dir=tmp_path / "e", log=lambda m: None)
        assert not (tmp_path / "e" / f"{metric}.json").exists()
    with pytest.raises(UserError, match="does not exist"):
        find_inception_weights(str(tmp_path / "nope.pth"))


def test_a_suite_with_a_refused_metric_finishes_with_exit_status_3(trained_run, exact_npz, tmp_path,
                                                                   monkeypatch, run_cli):
    """The other metrics are recorded; the status (3) tells scripts 'finished, some not computed'
    from bad input (2), in one line."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    code, out, err = run_cli("eval", "--ckpt", trained_run / "last.pt", "--data", exact_npz, "--n", 8,
                             "--metric", "clean", "--metric", "fid", "--device", "cpu", "--out", tmp_path / "e")
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert code == 3 and last.startswith("energybench: incomplete: not computed: fid"), err
    assert [json.loads(p.read_text())["metric"] for p in (tmp_path / "e").glob("clean-*.json")] == ["clean"]


class _RunsCode:
    """Pickles to a call that creates `marker` when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_inception_weights_that_would_run_code_are_refused(tmp_path, run_cli):
    """torch-fidelity unpickles --inception-weights with weights_only=False: energybench reads the
    file safely first and refuses it in one line, and torch-fidelity's own load runs under forced
    weights_only=True."""
    from energybench.core.safe_pickle import no_code_from_pickles

    marker = tmp_path / "PWNED"
    evil = tmp_path / "weights-inception.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(1), "x": _RunsCode(marker)}, evil)
    data = tmp_path / "synthetic.npz"
    rng = np.random.default_rng(0)
    np.savez(data, images=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), labels=np.arange(20) % 10)
    code, out, err = run_cli("eval", "--model", REPO / "checkpoints" / "jeat-smoke.pt", "--data", data,
                             "--metric", "is", "--inception-weights", evil, "--device", "cpu",
                             "--out", tmp_path / "out", "--param", "n_per_class=1", "--param", "steps=1")
    assert code == 2 and "refusing Inception weights" in err and "could run code" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not marker.exists()
    assert not list((tmp_path / "out").glob("is-*.json"))
    with no_code_from_pickles(), pytest.raises(pickle.UnpicklingError):
        FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(evil))
    assert not marker.exists()
    try:  # the reference: torch-fidelity's loader on its own runs the payload
        FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(evil))
    except Exception:  # noqa: BLE001  it fails after unpickling; the code has run by then
        pass
    assert marker.exists()


def test_inception_weights_must_be_a_state_dict(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="is not a state dict"):
        find_inception_weights(str(tmp_path / "list.pth"))
    with pytest.raises(UserError, match="junk.pth is not a PyTorch file"):
        find_inception_weights(str(tmp_path / "junk.pth"))
    torch.save({"w": torch.zeros(2)}, tmp_path / "plain.pth")  # a state dict, but of another network
    with pytest.raises(UserError, match="is not torch-fidelity's Inception-v3 weights .no Conv2d_1a_3x3"):
        find_inception_weights(str(tmp_path / "plain.pth"))


def test_a_state_dict_with_torch_fidelitys_keys_is_accepted_and_loads_there(tmp_path, monkeypatch):
    """The reference for the key check is torch-fidelity's own module: its state dict (random
    values, taken without loading any weights) passes, and torch-fidelity loads the file."""
    monkeypatch.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
    torch.save({}, tmp_path / "empty.pth")
    keys = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                       feature_extractor_weights_path=str(tmp_path / "empty.pth")).state_dict()
    monkeypatch.undo()
    torch.save(dict(keys), tmp_path / "fidelity.pth")
    path = find_inception_weights(str(tmp_path / "fidelity.pth"))
    assert path == str((tmp_path / "fidelity.pth").resolve())
    FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=path)


def test_kid_subset_larger_than_the_samples_is_one_line():
    from energybench.metrics import METRICS

    kid = METRICS.get("kid")(METRICS.get("kid").Params(n_per_class=50))
    with pytest.raises(UserError, match=r"kid_subset_size 1000 is more than the 500 samples; pass "
                                        r"kid_subset_size=500"):
        kid.check_sizes(500, 50_000)
    kid.check_sizes(1000, 50_000)
    assert METRICS.get("precision").Params().prc_neighborhood == 3
    assert METRICS.get("kid").Params().kid_subsets == 100


def test_energy_hist_says_it_generates_samples_once(tmp_path, monkeypatch, capsys):
    """A metric that generates SGLD samples says so (how many, how, into which file) before it
    starts; a second metric or a rerun that reuses them says nothing."""
    import energybench

    monkeypatch.setenv("ENERGYBENCH_PROGRESS", "1")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 10)).eval()
    images = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(12) % 10
    kwargs = dict(data=(images, labels), out_dir=tmp_path / "e", device="cpu", n_per_class=2, steps=3,
                  init="uniform", pgd_steps=1)
    energybench.evaluate(net, metrics=["energy-hist"], **kwargs)
    said = [line for line in capsys.readouterr().err.splitlines() if "SGLD samples" in line]
    assert len(said) == 1 and said[0].startswith("energy-hist: generating 20 SGLD samples (2 per class, 3 steps "
                                                 "from uniform) into samples-"), said
    energybench.evaluate(net, metrics=["energy-hist"], force=True, **kwargs)
    assert "SGLD samples" not in capsys.readouterr().err
