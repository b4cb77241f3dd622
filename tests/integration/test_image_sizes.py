"""Beyond CIFAR-10 at 32x32: a synthetic 64x64, 100-class image folder (the shape of EB-JDAT's
ImageNet subset; class names from the folders) and a synthetic `cifar-100-python` folder in the
official pickle layout, each trained briefly and evaluated end to end."""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from energybench.core.errors import UserError
from energybench.data import load_split
from energybench.evaluation.runner import evaluate
from energybench.training.config import apply_overrides
from energybench.training.recipes import preset_config
from energybench.training.run import train

pytestmark = pytest.mark.synthetic


def class_images(rng, classes: int, per_class: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, side, side, 3): each class a colour mean and a stripe, plus noise."""
    means = rng.integers(30, 225, size=(classes, 3))
    labels = np.repeat(np.arange(classes), per_class)
    images = means[labels][:, None, None, :] + rng.normal(0, 20, size=(len(labels), side, side, 3))
    for k, label in enumerate(labels):
        images[k, (label * 7) % side: (label * 7) % side + 3] += 60
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_folder(root: Path, classes: int, side: int) -> Path:
    """<root>/{train,test}/<class name>/<k>.png with class names n0000..n00KK."""
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 6), ("test", 1)):
        images, labels = class_images(rng, classes, per_class, side)
        for k, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / f"n{label:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{k}.png")
    return root


def write_cifar100(root: Path) -> Path:
    """`cifar-100-python/{train,test,meta}` as the official pickles: dicts with bytes keys, data
    (N, 3072) uint8 rows in CHW order, fine_labels, coarse_labels, filenames."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for split, per_class in (("train", 5), ("test", 1)):
        images, labels = class_images(rng, 100, per_class, 32)
        batch = {b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),
                 b"fine_labels": labels.tolist(), b"coarse_labels": (labels // 5).tolist(),
                 b"filenames": [f"img_{k}.png".encode() for k in range(len(labels))],
                 b"batch_label": f"{split} batch".encode()}
        (folder / split).write_bytes(pickle.dumps(batch, protocol=4))
    meta = {b"fine_label_names": [f"fine{k}".encode() for k in range(100)],
            b"coarse_label_names": [f"coarse{k}".encode() for k in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=4))
    return folder


def brief_training(source: Path, out: Path, images: int, recipe: str = "normal") -> Path:
    cfg = preset_config(recipe, "smoke")
    cfg = replace(cfg, data=replace(cfg.data, source=str(source)))
    cfg = apply_overrides(cfg, [f"data.train_subset={images}", "optim.epochs=1", "data.eval_subset=50",
                                "model.kwargs.width=8", "optim.batch_size=100"])
    train(cfg, out, torch.device("cpu"))
    return out / "last.pt"


@pytest.fixture(scope="module")
def folder_64(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("inet64") / "subset", classes=100, side=64)


def test_a_64x64_100_class_folder_trains_and_runs_the_battery(folder_64, tmp_path):
    test = load_split(folder_64, "test")
    assert tuple(test.images.shape[1:]) == (3, 64, 64) and len(test.classes) == 100
    assert test.classes[:2] == ("n0000", "n0001")
    ckpt = brief_training(folder_64, tmp_path / "run", 600)
    meta = torch.load(ckpt, weights_only=True)["meta"]
    assert meta["image_shape"] == [3, 64, 64] and meta["classes"][:1] == ["n0000"]
    common = dict(data=str(folder_64), n=40, out_dir=tmp_path / "eval", device=torch.device("cpu"),
                  log=lambda m: None)
    records = {r["metric"]: r for r in evaluate(
        ckpt, ["clean", "pgd20", "autoattack", "jfs", "energy-hist", "memorization"],
        overrides={"max_images": 8, "probes": 2, "n_per_class": 1, "steps": 3, "init": "uniform", "k": 2,
                   "figure_rows": 2}, **common)}
    for metric in ("clean", "pgd20", "autoattack", "jfs", "energy-hist", "memorization"):
        assert np.isfinite(records[metric]["value"]), metric
    assert records["pgd20"]["value"] <= records["clean"]["value"]
    assert records["memorization"]["extra"]["train_images"] == 600
    with np.load(Path(records["energy-hist"]["file"]).parent / records["energy-hist"]["extra"]["raw"]) as raw:
        assert len(raw["generated"]) == 100  # one uniform-start sample per class, at 64x64
    (l2,) = evaluate(ckpt, ["pgd20"], overrides={"norm": "L2"}, **common)
    assert l2["params"]["norm"] == "L2" and l2["value"] <= records["clean"]["value"]
    with pytest.raises(UserError, match=r"class-gaussian' needs 100 covariances of 12,288x12,288 \(56 GiB\)"):
        evaluate(ckpt, ["energy-hist"], overrides={"n_per_class": 1, "steps": 1}, **common)


def test_an_exported_program_of_one_size_names_the_size_it_needs(folder_64, tmp_path):
    from energybench.models import create_model

    model = create_model("tiny-cnn", num_classes=100, width=8).eval()
    path = tmp_path / "m32.pt2"
    torch.export.save(torch.export.export(model, (torch.rand(2, 3, 32, 32),)), path)
    with pytest.raises(UserError, match=r"exported for 3x32x32 images.*these are 3x64x64"):
        evaluate(path, ["clean"], data=str(folder_64), out_dir=tmp_path / "e", device=torch.device("cpu"),
                 log=lambda m: None)


def test_a_folder_of_mixed_sizes_is_one_line(tmp_path):
    root = write_folder(tmp_path / "mixed", classes=2, side=32)
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(root / "train" / "n0001" / "99.png")
    with pytest.raises(UserError, match=r"is 48x48 but .* is 32x32; every image of a dataset must have one size"):
        load_split(root, "train")


def test_cifar100_python_folder_end_to_end(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("ENERGYBENCH_HOME", str(tmp_path / "home"))  # the import below goes to a private home
    folder = write_cifar100(tmp_path)
    test = load_split(folder, "test")
    assert len(test) == 100 and len(test.classes) == 100 and test.classes[:2] == ("fine0", "fine1")
    assert test.source["label"] == "CIFAR-100"
    code, out, err = run_cli("data", "verify", str(folder))
    assert code == 0, err
    code, out, err = run_cli("data", "import", str(folder), "--name", "cifar100")
    assert code == 0, err
    imported = load_split("cifar100", "test")  # the data home's cifar100.npz now
    assert torch.equal(imported.images, test.images) and imported.classes == test.classes
    ckpt = brief_training(folder, tmp_path / "run", 500)
    code, out, err = run_cli("eval", "--ckpt", str(ckpt), "--metric", "clean", "--metric", "pgd20", "--metric",
                             "pgd20-energy", "--n", "50", "--device", "cpu", "--out", str(tmp_path / "eval"))
    assert code == 0, err
    records = {json.loads(p.read_text())["metric"]: json.loads(p.read_text())
               for p in (tmp_path / "eval").glob("*.json") if "record_version" in json.loads(p.read_text())}
    assert records["clean"]["data"]["label"] == "CIFAR-100" and records["clean"]["n"] == 50
    assert records["pgd20"]["value"] <= records["clean"]["value"]
    # the records fill JEAT Table 1's CIFAR-100 column (and nothing in its CIFAR-10 one)
    code, out, err = run_cli("report", "--table", "jeat-t1", "--results", str(tmp_path / "eval"),
                             "--out", str(tmp_path / "t1.md"))
    assert code == 0, err
    row = next(line for line in (tmp_path / "t1.md").read_text().splitlines() if line.startswith("| No attack"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "missing" and cells[4].startswith(f"{100 * records['clean']['value']:.2f} "), row
