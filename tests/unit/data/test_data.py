import io
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from energybench import data as datalib
from energybench.core.errors import UserError
from energybench.data.augment import random_crop_flip


def test_jpeg_tar_counts_order_and_dtype(jpeg_tar, exact_npz):
    train = datalib.load_split(jpeg_tar, "train")
    test = datalib.load_split(jpeg_tar, "test")
    assert train.images.shape == (50_000, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (10_000, 3, 32, 32) and test.labels.dtype == torch.int64
    assert torch.bincount(train.labels).tolist() == [5000] * 10
    assert train.classes[0] == "airplane" and train.classes[-1] == "truck"
    assert test.source["label"] == "CIFAR-10 (JPEG q75 copy)"
    # Test files sorted by index reproduce the official test order: all 10,000 labels match.
    with np.load(exact_npz) as ref:
        assert np.array_equal(test.labels.numpy(), ref["all_test_labels"])
        exact = torch.from_numpy(ref["images"]).permute(0, 3, 1, 2).float()
    # ... and the pixels are the JPEG versions of the same images (PSNR ~30 dB, data README).
    mse = (exact - test.images[:1017].float()).pow(2).mean()
    assert 28 < 10 * torch.log10(255**2 / mse) < 33


def test_exact_npz_is_a_test_split(exact_npz):
    test = datalib.load_split(exact_npz, "test")
    assert len(test) == 1017 and test.images.dtype == torch.uint8
    with np.load(exact_npz) as ref:
        assert np.array_equal(test.images.permute(0, 2, 3, 1).numpy(), ref["images"])
        assert np.array_equal(test.labels.numpy(), ref["labels"])
    assert "exact pixels" in test.source["label"]
    with pytest.raises(UserError, match="has no train split"):
        datalib.load_split(exact_npz, "train")


def _write_tree(root, images, labels, classes, name_of):
    for split in ("train", "test"):
        for i, (img, lab) in enumerate(zip(images, labels)):
            folder = root / split / classes[lab]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(folder / f"{name_of(split, i)}.png")


def test_image_tree_and_tar_keep_index_order(tmp_path, exact_npz):
    with np.load(exact_npz) as ref:
        images, labels = ref["images"][:40], ref["labels"][:40]
    classes = [f"c{k}" for k in range(10)]
    root = tmp_path / "tree"
    _write_tree(root, images, labels, classes, lambda split, i: f"{i:05d}")
    tree_test = datalib.load_split(root, "test")
    # PNG is lossless and integer file names give the order back exactly.
    assert np.array_equal(tree_test.images.permute(0, 2, 3, 1).numpy(), images)
    assert np.array_equal(tree_test.labels.numpy(), labels)
    archive = tmp_path / "tree.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(root, arcname="mydata")
    tar_test = datalib.load_split(archive, "test")
    assert torch.equal(tar_test.images, tree_test.images) and tar_test.classes == tuple(classes)
    # A folder that only holds the tree one level down also resolves.
    assert datalib.resolve_source(tmp_path).kind == "image-tree"


def test_image_tree_without_indices_sorts_by_class_then_name(tmp_path, exact_npz):
    with np.load(exact_npz) as ref:
        images, labels = ref["images"][:20], ref["labels"][:20]
    root = tmp_path / "named"
    _write_tree(root, images, labels, [f"k{k}" for k in range(10)], lambda s, i: f"img_{i:03d}")
    train = datalib.load_split(root, "train")
    names = [train.classes[k] for k in train.labels]
    assert names == sorted(f"k{k}" for k in labels)


def _write_cifar_batches(folder, rng):
    folder.mkdir(parents=True)
    batches = {}
    for name, n in [*[(f"data_batch_{i}", 6) for i in range(1, 6)], ("test_batch", 4)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        batches[name] = (data, labels)
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": list(datalib.CIFAR10_CLASSES)}, fh)
    return batches


def test_torchvision_folder_format(tmp_path):
    batches = _write_cifar_batches(tmp_path / "cifar-10-batches-py", np.random.default_rng(0))
    for spec in (tmp_path, tmp_path / "cifar-10-batches-py"):
        train = datalib.load_split(spec, "train")
        test = datalib.load_split(spec, "test")
        assert len(train) == 30 and len(test) == 4 and train.classes == datalib.CIFAR10_CLASSES
        # Rows are channel-major 32x32 planes (the official layout).
        data, labels = batches["test_batch"]
        assert torch.equal(test.images, torch.from_numpy(data.reshape(4, 3, 32, 32)))
        assert test.labels.tolist() == labels


def test_torchvision_folder_refuses_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_batches(folder, np.random.default_rng(0))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": Evil()}, fh)
    with pytest.raises(UserError, match="refusing global builtins.print"):
        datalib.load_split(tmp_path, "test")


def test_named_dataset_uses_data_home(tmp_path, monkeypatch, exact_npz):
    monkeypatch.setenv("ENERGYBENCH_HOME", str(tmp_path / "home"))
    with pytest.raises(UserError, match="no cifar10 data in .*energybench data import"):
        datalib.resolve_source("cifar10")
    # import works for a test-only source too and records where the data came from
    path = datalib.import_source(str(exact_npz), "cifar10")
    assert path == tmp_path / "home" / "data" / "cifar10.npz"
    test = datalib.load_split(None, "test")
    assert len(test) == 1017 and "exact pixels" in test.source["label"]


def test_cached_second_load_is_identical(jpeg_tar):
    first = datalib.load_split(jpeg_tar, "test")
    again = datalib.load_split(jpeg_tar, "test")
    assert torch.equal(first.images, again.images)
    assert any(datalib.cache_dir().glob("*/meta.json"))


@pytest.mark.parametrize("spec, message", [
    ("/nonexistent/cifar", "does not exist"),
    (__file__, "unsupported data file"),
])
def test_bad_sources_give_one_line_errors(spec, message):
    with pytest.raises(UserError, match=message) as info:
        datalib.load_split(spec, "test")
    assert "\n" not in str(info.value)


def test_truncated_tar_is_reported(tmp_path, jpeg_tar):
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(jpeg_tar.read_bytes()[:100_000])
    with pytest.raises(UserError, match="cannot read .* as a tar archive"):
        datalib.load_split(broken, "test")


@pytest.mark.parametrize("mode, torchvision_mode", [("zeros", "constant"), ("reflect", "reflect")])
def test_random_crop_flip_matches_torchvision_crops(mode, torchvision_mode):
    """Every augmented image is one of the 9x9 crops of the zero- or reflect-padded image, maybe
    flipped, as torchvision's RandomCrop(32, padding=4, padding_mode=...) + RandomHorizontalFlip
    would produce."""
    import torchvision.transforms.functional as TF

    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=gen)
    out = random_crop_flip(x, torch.Generator().manual_seed(1), padding_mode=mode)
    assert out.shape == x.shape and out.dtype == x.dtype
    offsets = set()
    for img, aug in zip(x, out):
        padded = TF.pad(img, [4], padding_mode=torchvision_mode)
        matches = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                   if torch.equal(TF.crop(padded, dy, dx, 32, 32).flip(2) if f
                                  else TF.crop(padded, dy, dx, 32, 32), aug)]
        assert matches
        offsets.add(matches[0][:2])
    assert len(offsets) > 5  # offsets vary across images


def test_a_damaged_cache_entry_is_rebuilt(tmp_path, monkeypatch, capsys):
    """The decoded-data cache holds each array's sha256: labels rolled by one, a truncated array or
    broken meta.json are noticed on the next read, said in one line, and decoded again."""
    import json as _json

    from energybench import data as datalib

    monkeypatch.setenv("ENERGYBENCH_HOME", str(tmp_path / "home"))
    rng = np.random.default_rng(0)
    source = tmp_path / "small.npz"
    labels = rng.integers(0, 10, 40)
    np.savez(source, images=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), labels=labels)
    first = datalib.load_split(source, "test")
    (entry,) = [p for p in (tmp_path / "home" / "cache").iterdir() if p.is_dir()]
    label_file = next(entry.glob("*labels.npy"))
    for damage in ("roll", "truncate", "meta"):
        if damage == "roll":
            np.save(label_file, np.roll(np.load(label_file), 1))
        elif damage == "truncate":
            blob = label_file.read_bytes()
            label_file.write_bytes(blob[: len(blob) // 2])
        else:
            (entry / "meta.json").write_text("{not json")
        capsys.readouterr()
        again = datalib.load_split(source, "test")
        assert torch.equal(again.labels, first.labels) and torch.equal(again.images, first.images), damage
        assert "is damaged; decoding the source again" in capsys.readouterr().err, damage
        assert _json.loads((entry / "meta.json").read_text())["sha256"]


def test_the_provenance_path_is_the_one_given_not_the_first_decoded(tmp_path, monkeypatch):
    """Two copies of the same content share one cache entry; each split names its own path (and
    the same content identity, so records of either copy are the same records)."""
    monkeypatch.setenv("ENERGYBENCH_HOME", str(tmp_path / "home"))
    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 20)
    first, second = tmp_path / "a" / "copy.npz", tmp_path / "b" / "copy.npz"
    for path in (first, second):
        path.parent.mkdir()
        np.savez(path, images=images, labels=labels)
    a, b = datalib.load_split(first, "test"), datalib.load_split(second, "test")
    assert a.source["path"] == str(first.resolve()) and b.source["path"] == str(second.resolve())
    assert datalib.data_identity(a.source) == datalib.data_identity(b.source)
    assert len([p for p in (tmp_path / "home" / "cache").iterdir() if p.is_dir()]) == 1
