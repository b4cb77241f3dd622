"""Bad input, table-driven: every command, every kind of input.

Each case must end with exit status 2, exactly one line on stderr that starts with
`energybench: error:` and names the problem (the regex), no traceback, and no output left behind
(nothing new under the case's folder). The cases are run in-process through the CLI.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

# --------------------------------------------------------------------------- fixtures (files)


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def bad(tmp_path_factory, exact_npz, trained_run):
    """A folder of bad (and a few good) inputs, made once."""
    root = tmp_path_factory.mktemp("bad-inputs")
    with np.load(exact_npz) as z:
        images, labels, names = z["images"], z["labels"], z["label_names"]
    files = {"root": root, "ckpt": trained_run / "last.pt", "exact": exact_npz}
    files["tiny"] = _npz(root / "tiny.npz", train_images=images[:500], train_labels=labels[:500],
                         test_images=images[500:600], test_labels=labels[500:600], label_names=names)
    torch.save({"foo.weight": torch.zeros(3)}, root / "foreign-weights.pth")
    files["foreign_weights"] = root / "foreign-weights.pth"
    files["testonly"] = _npz(root / "testonly.npz", images=images[:50], labels=labels[:50])
    files["two_test_sets"] = _npz(root / "twotests.npz", images=images[:20], labels=labels[:20],
                                  test_images=images[20:40], test_labels=labels[20:40])
    files["ref_no_images"] = _npz(root / "refnoimages.npz", labels=labels[:4])
    files["ref_size64"] = _npz(root / "ref64.npz", images=np.zeros((4, 64, 64, 3), np.uint8), labels=labels[:4])
    np.savez_compressed(root / "deflated.npz", images=images[:40], labels=labels[:40])
    blob = bytearray((root / "deflated.npz").read_bytes())
    blob[200:260] = bytes(60)  # inside the first member's deflate stream
    (root / "baddeflate.npz").write_bytes(bytes(blob))
    files["bad_deflate"] = root / "baddeflate.npz"
    files["empty_npz"] = _npz(root / "empty.npz")
    files["no_arrays"] = _npz(root / "noarrays.npz", something=np.zeros(3))
    raw = (root / "tiny.npz").read_bytes()
    (root / "truncated.npz").write_bytes(raw[: len(raw) // 3])
    files["truncated_npz"] = root / "truncated.npz"
    files["object_npz"] = _npz(root / "object.npz", images=np.array([object()] * 4, dtype=object),
                               labels=np.zeros(4, dtype=np.int64))
    small = images[:20]
    files["nan_labels"] = _npz(root / "nanlabels.npz", images=small, labels=np.full(20, np.nan))
    files["neg_labels"] = _npz(root / "neglabels.npz", images=small, labels=-np.ones(20, dtype=np.int64))
    files["frac_labels"] = _npz(root / "fraclabels.npz", images=small, labels=np.full(20, 1.5))
    files["big_labels"] = _npz(root / "biglabels.npz", images=small, labels=np.full(20, 12), label_names=names)
    files["str_labels"] = _npz(root / "strlabels.npz", images=small, labels=np.array(["cat"] * 20))
    files["short_labels"] = _npz(root / "shortlabels.npz", images=small, labels=labels[:5])
    files["gray"] = _npz(root / "gray.npz", images=small[..., 0], labels=labels[:20])
    files["size64"] = _npz(root / "size64.npz", train_images=np.zeros((4, 32, 32, 3), np.uint8), train_labels=labels[:4],
                           test_images=np.zeros((4, 64, 64, 3), np.uint8), test_labels=labels[:4])
    files["size28"] = _npz(root / "size4.npz", images=np.zeros((4, 4, 4, 3), np.uint8), labels=labels[:4])
    files["float_images"] = _npz(root / "floatimg.npz", images=small.astype(np.float32), labels=labels[:20])
    files["no_images"] = _npz(root / "noimages.npz", images=np.zeros((0, 32, 32, 3), np.uint8),
                              labels=np.zeros(0, np.int64))
    files["cifar100like"] = _npz(root / "c100.npz", images=small, labels=np.arange(20) * 5 % 100,
                                 label_names=np.array([f"c{i}" for i in range(100)]))
    files["swapped"] = _npz(root / "swapped.npz", images=small, labels=labels[:20],
                            label_names=np.concatenate([names[1:], names[:1]]))
    # image trees and tars
    from PIL import Image

    def png(size=(32, 32)) -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", size, (10, 20, 30)).save(buf, format="PNG")
        return buf.getvalue()

    def tree(name: str, members: dict[str, bytes]) -> Path:
        folder = root / name
        for rel, blob in members.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(blob)
        return folder

    def tar(name: str, members: dict[str, bytes]) -> Path:
        path = root / name
        with tarfile.open(path, "w:gz") as tf:
            for rel, blob in members.items():
                info = tarfile.TarInfo(rel)
                info.size = len(blob)
                tf.addfile(info, io.BytesIO(blob))
        return path

    good = {"d/train/cat/0.png": png(), "d/test/cat/0.png": png()}
    files["tar_not_image"] = tar("notimage.tar.gz", {**good, "d/train/cat/1.png": b"not a png at all"})
    files["tar_big_image"] = tar("bigimage.tar.gz", {**good, "d/train/cat/2.png": png((64, 64))})
    blob = (root / "notimage.tar.gz").read_bytes()
    (root / "truncated.tar.gz").write_bytes(blob[: len(blob) // 2])
    files["tar_truncated"] = root / "truncated.tar.gz"
    (root / "garbage.tgz").write_bytes(b"\x00" * 100)
    files["tar_garbage"] = root / "garbage.tgz"
    files["tree_not_image"] = tree("tree-notimage", {"train/cat/0.png": png(), "train/cat/1.png": b"junk"})
    files["tree_big_image"] = tree("tree-big", {"train/cat/0.png": png((40, 32)), "train/cat/1.png": png()})
    files["tree_empty"] = tree("tree-empty", {"train/cat/readme.txt": b"no images"})
    files["plain_folder"] = tree("plain", {"notes/a.txt": b"x"})
    (root / "data.txt").write_text("not data")
    files["txt"] = root / "data.txt"
    # checkpoints
    raw_ckpt = (trained_run / "last.pt").read_bytes()
    (root / "truncated.pt").write_bytes(raw_ckpt[: len(raw_ckpt) // 2])
    files["truncated_ckpt"] = root / "truncated.pt"
    (root / "noise.pt").write_bytes(os.urandom(4096))
    files["noise_ckpt"] = root / "noise.pt"
    batches = root / "tvfolder" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    (batches / "test_batch").write_bytes(b"\x80\x02].")  # a CIFAR batch that pickles a list, not a dict
    files["bad_batch_folder"] = root / "tvfolder"
    (root / "build.pt").write_bytes(b"\x80\x02b.")  # a pickle whose BUILD finds an empty stack
    files["build_ckpt"] = root / "build.pt"
    (root / "empty.pt").write_bytes(b"")
    files["empty_ckpt"] = root / "empty.pt"
    from energybench.handles.checkpoint import save_checkpoint
    from energybench.models import create_model

    ckpt = torch.load(trained_run / "last.pt", weights_only=True)
    torch.save(create_model("tiny-cnn").state_dict(), root / "bare.pt")
    files["bare_ckpt"] = root / "bare.pt"
    torch.save({"format": "energybench-checkpoint", "x": _Payload()}, root / "code.pt")
    files["code_ckpt"] = root / "code.pt"
    torch.save([1, 2, 3], root / "list.pt")
    files["list_ckpt"] = root / "list.pt"
    save_checkpoint({**ckpt, "format_version": 99}, root / "future.pt")
    files["future_ckpt"] = root / "future.pt"
    save_checkpoint({**ckpt, "model": {"name": "tiny-cnn", "kwargs": {"width": 8}}}, root / "misfit.pt")
    files["misfit_ckpt"] = root / "misfit.pt"
    save_checkpoint({**ckpt, "model": {"name": "resnet999", "kwargs": {}}}, root / "unknownmodel.pt")
    files["unknown_model_ckpt"] = root / "unknownmodel.pt"
    save_checkpoint({**ckpt, "model": {"name": "tiny-cnn", "kwargs": {"colour": 3}}}, root / "badkw.pt")
    files["bad_kwargs_ckpt"] = root / "badkw.pt"
    no_meta = {k: v for k, v in ckpt.items() if k != "meta"}
    save_checkpoint(no_meta, root / "nometa.pt")
    files["incomplete_ckpt"] = root / "nometa.pt"
    nan = {**ckpt, "state_dict": {k: (v.clone().fill_(float("nan")) if v.is_floating_point() else v)
                                  for k, v in ckpt["state_dict"].items()}}
    save_checkpoint(nan, root / "nan.pt")
    files["nan_ckpt"] = root / "nan.pt"
    flipped = bytearray(raw_ckpt)
    needle = max(ckpt["state_dict"].values(), key=lambda t: t.numel()).contiguous().numpy().tobytes()[:64]
    flipped[raw_ckpt.find(needle) + 7] ^= 0x01
    (root / "flipped.pt").write_bytes(bytes(flipped))
    files["flipped_ckpt"] = root / "flipped.pt"
    # checkpoints whose structure is wrong (each field a reader uses), and weights of odd kinds
    def variant(name, change):
        altered = {**ckpt, "model": dict(ckpt["model"]), "config": dict(ckpt["config"]),
                   "meta": dict(ckpt["meta"]), "progress": dict(ckpt["progress"]),
                   "state_dict": dict(ckpt["state_dict"])}
        change(altered)
        torch.save({**altered, "weights_sha256": ckpt["weights_sha256"]}, root / f"{name}.pt")
        files[f"{name}_ckpt"] = root / f"{name}.pt"

    first_key = next(iter(ckpt["state_dict"]))
    matrix_key = next(k for k, v in ckpt["state_dict"].items() if v.dim() == 2)
    variant("model_str", lambda c: c.update(model="tiny-cnn"))
    variant("no_kwargs", lambda c: c["model"].pop("kwargs"))
    variant("meta_list", lambda c: c.update(meta=[1, 2]))
    variant("no_optim", lambda c: c["config"].pop("optim"))
    variant("progress_str", lambda c: c.update(progress="done"))
    variant("recipe_int", lambda c: c.update(recipe=3))
    variant("classes_str", lambda c: c["meta"].update(classes="cat"))
    variant("int_key", lambda c: c["state_dict"].update({0: c["state_dict"].pop(first_key)}))
    variant("sparse", lambda c: c["state_dict"].update({matrix_key: c["state_dict"][matrix_key].to_sparse()}))
    variant("complex", lambda c: c["state_dict"].update({matrix_key: c["state_dict"][matrix_key].to(torch.complex64)}))
    save_checkpoint({**ckpt, "model": {"name": "tiny-cnn", "kwargs": {**ckpt["model"]["kwargs"], "width": 0}}},
                    root / "width0.pt")
    files["width0_ckpt"] = root / "width0.pt"
    missing_data = root / "nodata" / "cifar-10-batches-py"
    missing_data.mkdir(parents=True)
    (missing_data / "test_batch").write_bytes(pickle.dumps({"labels": [0, 1]}, protocol=2))
    files["no_data_batch_folder"] = root / "nodata"
    (root / "loop.yaml").write_text("recipe: {name: normal}\noptim: &o {lr: 0.1, again: *o}\n")
    files["loop_yaml"] = root / "loop.yaml"
    lines = ["recipe: {name: normal}", "a0: &a0 [x, x]"] + [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, 40)]
    (root / "bomb.yaml").write_text("\n".join(lines) + "\n")
    files["bomb_yaml"] = root / "bomb.yaml"
    files["label0d"] = _npz(root / "label0d.npz", images=small, labels=labels[:20], label_names=np.array("cat"))
    (root / "junk.pt2").write_bytes(b"not a program")
    files["junk_pt2"] = root / "junk.pt2"
    program = torch.export.export(torch.nn.Identity(), (torch.rand(2, 3, 32, 32),))
    torch.export.save(program, str(root / "identity.pt2"))
    files["identity_pt2"] = root / "identity.pt2"
    files["a_folder"] = root / "plain"
    files["ci_records"] = Path(__file__).resolve().parents[1] / "reference" / "ci" / "records"
    return files


class _Payload:
    def __reduce__(self):
        return (print, ("would run",))


# --------------------------------------------------------------------------- the table

TRAIN = ["train", "normal", "--data", "{tiny}", "--out", "{out}", "--device", "cpu"]
EVAL = ["eval", "--ckpt", "{ckpt}", "--data", "{exact}", "--n", "8", "--out", "{out}", "--device", "cpu"]
SAMPLE = ["sample", "--ckpt", "{ckpt}", "--out", "{out}", "--device", "cpu", "--steps", "1", "--n-per-class", "1"]


def _set(*items):
    return [x for item in items for x in ("--set", item)]


def _param(*items):
    return [x for item in items for x in ("--param", item)]


CASES = [
    # ---- train: names and options
    ("train-unknown-recipe", ["train", "nope"], r"'nope' is not one of 'eb-jdat'"),
    ("train-unknown-preset", ["train", "normal", "--preset", "giant"], r"'giant' is not one of 'paper', 'smoke'"),
    ("train-set-unknown-key", TRAIN + _set("optim.lrr=1"), r"unknown config key 'optim.lrr'"),
    ("train-set-unknown-section", TRAIN + _set("optimizer.lr=1"), r"unknown config key 'optimizer.lr'"),
    ("train-set-no-equals", TRAIN + ["--set", "optim.lr"], r"must look like KEY=VALUE"),
    ("train-set-section", TRAIN + _set("optim=1"), r"optim is a section"),
    ("train-set-recipe", TRAIN + _set("recipe=jem"), r"recipe is chosen on the command line"),
    ("train-set-deeper", TRAIN + _set("optim.lr.x=1"), r"optim.lr.x: lr has no sub-keys"),
    ("train-lr-text", TRAIN + _set("optim.lr=fast"), r"optim.lr must be a number"),
    ("train-lr-zero", TRAIN + _set("optim.lr=0"), r"optim\.lr must be in \(0, 1e10\], got 0"),
    ("train-lr-negative", TRAIN + _set("optim.lr=-0.1"), r"optim\.lr must be in \(0, 1e10\], got \-0\.1"),
    ("train-lr-nan", TRAIN + _set("optim.lr=nan"), r"optim\.lr must be in \(0, 1e10\], got nan"),
    ("train-lr-inf", TRAIN + _set("optim.lr=inf"), r"optim\.lr must be in \(0, 1e10\], got inf"),
    ("train-lr-div-zero", TRAIN + _set("optim.lr=1/0"), r"optim.lr must be a number"),
    ("train-batch-zero", TRAIN + _set("optim.batch_size=0"), r"optim\.batch_size must be in \[1, 100000\], got 0"),
    ("train-batch-negative", TRAIN + _set("optim.batch_size=-8"), r"optim\.batch_size must be in \[1, 100000\], got \-8"),
    ("train-batch-fraction", TRAIN + _set("optim.batch_size=1.5"), r"optim.batch_size must be an integer"),
    ("train-batch-too-big", TRAIN + _set("optim.batch_size=100000"), r"larger than the training set"),
    ("train-epochs-zero", TRAIN + _set("optim.epochs=0"), r"optim\.epochs must be in \[1, 100000\], got 0"),
    ("train-epochs-negative", TRAIN + _set("optim.epochs=-3"), r"optim\.epochs must be in \[1, 100000\], got \-3"),
    ("train-momentum-one", TRAIN + _set("optim.momentum=1"), r"optim.momentum must be in \[0, 1\)"),
    ("train-momentum-negative", TRAIN + _set("optim.momentum=-0.5"), r"optim.momentum must be in"),
    ("train-wd-negative", TRAIN + _set("optim.weight_decay=-1e-4"), r"optim\.weight_decay must be in \[0, 1\], got \-0\.0001"),
    ("train-gamma-zero", TRAIN + _set("optim.gamma=0"), r"optim.gamma must be in \(0, 1\]"),
    ("train-gamma-big", TRAIN + _set("optim.gamma=2"), r"optim.gamma must be in"),
    ("train-milestone-big", TRAIN + _set("optim.milestones=0.5,1.5"), r"optim.milestones must be in \(0, 1\)"),
    ("train-milestone-text", TRAIN + _set("optim.milestones=half"), r"optim.milestones must be a number"),
    ("train-warmup-negative", TRAIN + _set("optim.warmup_steps=-1"), r"optim\.warmup_steps must be in \[0, 1000000000\], got \-1"),
    ("train-optimizer-unknown", TRAIN + _set("optim.name=rmsprop"), r"optim.name must be one of sgd, adam"),
    ("train-schedule-unknown", TRAIN + _set("optim.schedule=step"), r"optim.schedule must be one of"),
    ("train-nesterov-maybe", TRAIN + _set("optim.nesterov=maybe"), r"optim.nesterov must be true or false"),
    ("train-eval-subset-negative", TRAIN + _set("data.eval_subset=-1"), r"data\.eval_subset must be in \[0, 10000000\], got \-1"),
    ("train-train-subset-zero", TRAIN + _set("data.train_subset=0"), r"data\.train_subset must be in \[1, 100000000\], got 0"),
    ("train-train-subset-tiny", TRAIN + _set("data.train_subset=5"), r"smaller than the number of classes"),
    ("train-augment-maybe", TRAIN + _set("data.augment=maybe"), r"data.augment must be true or false"),
    ("train-seed-negative", TRAIN + _set("run.seed=-1"), r"run\.seed must be in \[0, 4294967295\], got \-1"),
    ("train-ckpt-every-negative", TRAIN + _set("run.checkpoint_every_steps=-5"), r"run\.checkpoint_every_steps must be in \[0, 1000000000\], got \-5"),
    ("train-probe-negative", TRAIN + _set("run.dynamics_probe=-1"), r"run\.dynamics_probe must be in \[0, 100000\], got \-1"),
    ("train-lr-factor-zero", TRAIN + _set("run.guard.lr_factor=0"), r"run.guard.lr_factor must be in \(0, 1\)"),
    ("train-lr-factor-one", TRAIN + _set("run.guard.lr_factor=1.5"), r"run.guard.lr_factor must be in"),
    ("train-retries-negative", TRAIN + _set("run.guard.retries=-1"), r"run\.guard\.retries must be in \[0, 100\], got \-1"),
    ("train-max-energy-zero", TRAIN + _set("run.guard.max_abs_energy=0"), r"run.guard.max_abs_energy must be > 0"),
    ("train-guard-section", TRAIN + _set("run.guard=off"), r"run.guard is a section"),
    ("train-model-unknown", TRAIN + _set("model.name=resnet999"), r"unknown model 'resnet999'"),
    ("train-model-kwarg-unknown", TRAIN + _set("model.colour=3"), r"model 'tiny-cnn' takes no option\(s\) colour"),
    ("train-model-width-text", TRAIN + _set("model.width=wide"), r"cannot build model 'tiny-cnn'"),
    ("train-model-act-unknown", TRAIN + _set("model.act=tanh"), r"unknown activation 'tanh'"),
    ("train-model-kwargs-literal", TRAIN + _set("model.kwargs=[1,2]"), r"model.kwargs must be a dict literal"),
    ("train-device-unknown", TRAIN + ["--device", "tpu"], r"unknown device 'tpu'"),
    ("train-device-cuda", TRAIN[:-2] + ["--device", "cuda"], r"CUDA is not available"),
    ("train-data-missing", ["train", "normal", "--data", "{root}/none", "--out", "{out}"], r"data not found: .* does not exist"),
    ("train-data-txt", ["train", "normal", "--data", "{txt}", "--out", "{out}"], r"unsupported data file .*\.npz, \.tar"),
    ("train-data-testonly", ["train", "normal", "--data", "{testonly}", "--out", "{out}"], r"has no train split"),
    ("train-out-is-file", ["train", "normal", "--data", "{tiny}", "--out", "{txt}"], r"--out .* is a file"),
    ("train-out-under-file", ["train", "normal", "--data", "{tiny}", "--out", "{txt}/run"], r"--out .* is a file"),
    ("train-out-unwritable", ["train", "normal", "--data", "{tiny}", "--out", "{ro}"], r"(read-only|No such file|Permission denied)"),
    ("train-resume-nothing", TRAIN + ["--resume"], r"nothing to resume"),
    ("train-resume-other-recipe", ["train", "jem", "--out", "{ckptdir}", "--resume"], r"is a normal run, not jem"),
    ("train-resume-change-model", ["train", "normal", "--out", "{ckptdir}", "--resume"] + _set("model.width=8"), r"--resume cannot change model.kwargs"),
    ("train-resume-change-recipe-param", ["train", "normal", "--out", "{ckptdir}", "--resume"] + _set("optim.batch_size=64"), r"--resume cannot change optim.batch_size"),
    ("train-resume-change-data", ["train", "normal", "--out", "{ckptdir}", "--resume", "--data", "{tiny}"], r"--resume cannot change data.source"),
    ("train-existing-run", ["train", "normal", "--data", "{tiny}", "--out", "{ckptdir}"], r"already holds a run .*--resume"),
    ("train-bogus-option", TRAIN + ["--bogus"], r"No such option '--bogus'"),
    # ---- train: recipe parameters
    ("recipe-noise-sigma-negative", ["train", "noise", "--out", "{out}"] + _set("recipe.sigma=-0.1"), r"recipe.sigma must be in \[0, 1\]"),
    ("recipe-noise-sigma-big", ["train", "noise", "--out", "{out}"] + _set("recipe.sigma=24"), r"recipe.sigma must be in"),
    ("recipe-pgd-eps-big", ["train", "pgd-at", "--out", "{out}"] + _set("recipe.eps=8"), r"recipe.eps must be in \(0, 1\]"),
    ("recipe-pgd-eps-zero", ["train", "pgd-at", "--out", "{out}"] + _set("recipe.eps=0"), r"recipe.eps must be in"),
    ("recipe-pgd-steps-zero", ["train", "pgd-at", "--out", "{out}"] + _set("recipe.steps=0"), r"recipe\.steps must be in \[1, 10000\], got 0"),
    ("recipe-pgd-objective", ["train", "pgd-at", "--out", "{out}"] + _set("recipe.objective=dlr"), r"recipe.objective must be one of ce, energy"),
    ("recipe-pgd-unknown-param", ["train", "pgd-at", "--out", "{out}"] + _set("recipe.sigma=0.1"), r"unknown config key 'recipe.sigma'"),
    ("recipe-trades-beta", ["train", "trades", "--out", "{out}"] + _set("recipe.beta=-6"), r"recipe\.beta must be in \[0, 1000000\], got \-6"),
    ("recipe-trades-step", ["train", "trades", "--out", "{out}"] + _set("recipe.step_size=nan"), r"recipe.step_size must be in"),
    ("recipe-prejeat-eps", ["train", "prejeat", "--out", "{out}"] + _set("recipe.eps=-1/255"), r"recipe.eps must be in"),
    ("recipe-jeat-sgld-steps", ["train", "jeat", "--out", "{out}"] + _set("recipe.sgld_steps=0"), r"recipe\.sgld_steps must be in \[1, 100000\], got 0"),
    ("recipe-jeat-sgld-step", ["train", "jeat", "--out", "{out}"] + _set("recipe.sgld_step_size=0"), r"recipe\.sgld_step_size must be in \(0, 1000\], got 0"),
    ("recipe-jeat-noise", ["train", "jeat", "--out", "{out}"] + _set("recipe.sgld_noise=-0.01"), r"recipe\.sgld_noise must be in \[0, 10\], got \-0\.01"),
    ("recipe-jeat-buffer", ["train", "jeat", "--out", "{out}"] + _set("recipe.buffer_size=0"), r"recipe\.buffer_size must be in \[1, 10000000\], got 0"),
    ("recipe-jeat-reinit", ["train", "jeat", "--out", "{out}"] + _set("recipe.reinit_prob=1.5"), r"recipe.reinit_prob must be in \[0, 1\]"),
    ("recipe-jeat-init", ["train", "jeat", "--out", "{out}"] + _set("recipe.sgld_init=zeros"), r"recipe.sgld_init must be one of uniform, class-gaussian"),
    ("recipe-jem-weight", ["train", "jem", "--out", "{out}"] + _set("recipe.px_weight=-1"), r"recipe\.px_weight must be in \[0, 1000000\], got \-1"),
    ("recipe-jem-noise", ["train", "jem", "--out", "{out}"] + _set("recipe.data_noise=2"), r"recipe.data_noise must be in"),
    ("recipe-ebjdat-direction", ["train", "eb-jdat", "--out", "{out}"] + _set("recipe.adv_direction=up"), r"recipe.adv_direction must be one of raise, lower"),
    ("recipe-ebjdat-adv-steps", ["train", "eb-jdat", "--out", "{out}"] + _set("recipe.adv_steps=0"), r"recipe\.adv_steps must be in \[1, 10000\], got 0"),
    ("recipe-ebjdat-weight", ["train", "eb-jdat", "--out", "{out}"] + _set("recipe.w_pxadv=-0.1"), r"recipe\.w_pxadv must be in \[0, 1000000\], got \-0\.1"),
    # ---- eval: checkpoints
    ("eval-ckpt-missing", ["eval", "--ckpt", "{root}/none.pt"], r"checkpoint not found"),
    ("eval-ckpt-folder", ["eval", "--ckpt", "{a_folder}"], r"is a folder, not a model file"),
    ("eval-ckpt-truncated", ["eval", "--ckpt", "{truncated_ckpt}"], r"corrupt or truncated checkpoint"),
    ("eval-ckpt-noise", ["eval", "--ckpt", "{noise_ckpt}"], r"is not a PyTorch file \(it starts with '[0-9a-f]{8}'"),
    ("eval-ckpt-empty", ["eval", "--ckpt", "{empty_ckpt}"], r"checkpoint .*empty.pt is empty \(0 bytes\)"),
    ("eval-data-bad-cifar-batch", EVAL + ["--data", "{bad_batch_folder}"], r"cannot read .*test_batch as a CIFAR batch \(it holds a list, not a dict\)"),
    ("eval-ckpt-bad-pickle", ["eval", "--ckpt", "{build_ckpt}"], r"corrupt or truncated checkpoint .*IndexError"),
    ("eval-ckpt-bare", ["eval", "--ckpt", "{bare_ckpt}"], r"bare state_dict"),
    ("eval-ckpt-code", ["eval", "--ckpt", "{code_ckpt}"], r"refusing .* pickled Python objects"),
    ("eval-ckpt-list", ["eval", "--ckpt", "{list_ckpt}"], r"not an energybench checkpoint"),
    ("eval-ckpt-future", ["eval", "--ckpt", "{future_ckpt}"], r"format version 99.*upgrade"),
    ("eval-ckpt-misfit", ["eval", "--ckpt", "{misfit_ckpt}"], r"weights do not fit model tiny-cnn"),
    ("eval-ckpt-unknown-model", ["eval", "--ckpt", "{unknown_model_ckpt}"], r"unknown model 'resnet999'"),
    ("eval-ckpt-bad-kwargs", ["eval", "--ckpt", "{bad_kwargs_ckpt}"], r"model 'tiny-cnn' takes no option\(s\) colour"),
    ("eval-ckpt-incomplete", ["eval", "--ckpt", "{incomplete_ckpt}"], r"incomplete checkpoint \(missing meta\)"),
    ("eval-ckpt-nan", ["eval", "--ckpt", "{nan_ckpt}"], r"NaN or infinite values"),
    ("eval-ckpt-flipped", ["eval", "--ckpt", "{flipped_ckpt}"], r"do not match their stored digest"),
    ("eval-ckpt-model-str", ["eval", "--ckpt", "{model_str_ckpt}"], r"damaged checkpoint: field model is a str, not dict"),
    ("eval-ckpt-no-kwargs", ["eval", "--ckpt", "{no_kwargs_ckpt}"], r"damaged checkpoint: field model.kwargs is missing"),
    ("eval-ckpt-meta-list", ["eval", "--ckpt", "{meta_list_ckpt}"], r"damaged checkpoint: field meta is a list, not dict"),
    ("eval-ckpt-no-optim", ["eval", "--ckpt", "{no_optim_ckpt}"], r"damaged checkpoint: field config.optim is missing"),
    ("eval-ckpt-progress-str", ["eval", "--ckpt", "{progress_str_ckpt}"], r"field progress is a str, not dict"),
    ("eval-ckpt-recipe-int", ["eval", "--ckpt", "{recipe_int_ckpt}"], r"field recipe is a int, not str"),
    ("eval-ckpt-classes-str", ["eval", "--ckpt", "{classes_str_ckpt}"], r"field meta.classes is a str, not list or null"),
    ("eval-ckpt-int-key", ["eval", "--ckpt", "{int_key_ckpt}"], r"state_dict key 0 is not a string"),
    ("eval-ckpt-sparse", ["eval", "--ckpt", "{sparse_ckpt}"], r"is a torch.sparse_coo tensor; save dense weights"),
    ("eval-ckpt-complex", ["eval", "--ckpt", "{complex_ckpt}"], r"is torch.complex64; a classifier's weights are real"),
    ("eval-ckpt-width0", EVAL[:2] + ["{width0_ckpt}"] + EVAL[3:], r"has layers with no weights .*width must be at least 1"),
    ("eval-device-mps", EVAL[:-2] + ["--device", "mps"], r"device 'mps' is not supported"),
    ("eval-device-meta", EVAL[:-2] + ["--device", "meta"], r"device 'meta' is not supported"),
    ("eval-device-cuda-index", EVAL[:-2] + ["--device", "cuda:7"], r"CUDA is not available|does not exist"),
    ("eval-data-batch-without-data", EVAL + ["--data", "{no_data_batch_folder}"], r"test_batch as a CIFAR batch \(it has no 'data' field"),
    ("train-config-yaml-loop", ["train", "--config", "{loop_yaml}", "--out", "{out}"], r"uses YAML aliases"),
    ("train-config-yaml-bomb", ["train", "--config", "{bomb_yaml}", "--out", "{out}"], r"uses YAML aliases"),
    ("data-info-label-names-0d", ["data", "info", "{label0d}"], r"label_names must be a 1-d array of class names"),
    ("eval-pt2-junk", ["eval", "--ckpt", "{junk_pt2}", "--data", "{exact}"], r"cannot load .* torch.export program"),
    ("eval-pt2-not-logits", ["eval", "--ckpt", "{identity_pt2}", "--data", "{exact}"], r"must return \(N, num_classes\) logits"),
    ("eval-pt2-no-data", ["eval", "--ckpt", "{exported}"], r"does not say what data it was trained on; pass --data"),
    # ---- eval: options
    ("eval-unknown-metric", EVAL + ["--metric", "fid9"], r"'fid9' is not one of 'attack-sanity', 'autoattack'"),
    ("eval-unknown-suite", EVAL + ["--suite", "everything"], r"'everything' is not one of 'all'"),
    ("eval-eps-integer", EVAL + ["--eps", "8"], r"out of range.*8/255"),
    ("eval-eps-twice", EVAL + ["--eps", "0.125", "--eps", "0.25"], r"--eps given 2 times \(0.125, 0.25\); give one budget"),
    ("eval-eps-zero", EVAL + ["--eps", "0"], r"eps 0 is out of range"),
    ("eval-eps-l2-length-as-linf", EVAL + ["--metric", "pgd20", "--eps", "0.5"],
     r"pgd20: L-inf eps 0\.5 \(127\.5/255\) is beyond any published CIFAR-10 budget \(at most 16/255\); a length "
     r"like 0\.5 is an L2 budget: for L2 add --norm L2; for this L-inf budget confirm with --yes"),
    ("eval-eps-negative", EVAL + ["--eps", "-1/255"], r"out of range"),
    ("eval-eps-text", EVAL + ["--eps", "small"], r"cannot read eps 'small'"),
    ("eval-eps-div-zero", EVAL + ["--eps", "8/0"], r"cannot read eps '8/0'"),
    ("eval-eps-full-width", EVAL + ["--eps", "８/255"], r"cannot read eps '８/255'"),
    ("eval-eps-underscore", EVAL + ["--eps", "1_0/255"], r"cannot read eps '1_0/255'"),
    ("eval-eps-nan", EVAL + ["--eps", "nan"], r"eps nan is out of range"),
    ("eval-n-zero", EVAL[:-6] + ["--n", "0"], r"--n.*0 is not in the range x>=1"),
    ("eval-n-negative", EVAL[:-6] + ["--n", "-5"], r"--n.*-5 is not in the range"),
    ("eval-n-text", EVAL[:-6] + ["--n", "many"], r"--n.*'many' is not a valid integer"),
    ("eval-n-beyond-data", EVAL[:-6] + ["--n", "1000000000000"], r"--n 1000000000000 is more than the 1,017 test images"),
    ("eval-out-newline", EVAL[:-2] + ["--out", "{out}\nx"], r"holds a control character"),
    ("eval-batch-zero", EVAL + ["--batch-size", "0"], r"--batch-size.*0 is not in the range x>=1"),
    ("eval-seed-negative", EVAL + ["--seed", "-1"], r"--seed.*-1 is not in the range x>=0"),
    ("eval-device-unknown", EVAL[:-2] + ["--device", "tpu"], r"unknown device 'tpu'"),
    ("eval-device-cuda", EVAL[:-2] + ["--device", "cuda"], r"CUDA is not available"),
    ("eval-param-unknown", EVAL + _param("foo=1"), r"--param foo: no selected metric takes it"),
    ("eval-param-no-equals", EVAL + ["--param", "probes"], r"must look like KEY=VALUE"),
    ("eval-param-probes-zero", EVAL + ["--metric", "jfs"] + _param("probes=0"), r"jfs: probes must be in \[1, 100000\], got 0"),
    ("eval-param-probes-text", EVAL + ["--metric", "jfs"] + _param("probes=many"), r"probes must be an integer"),
    ("eval-param-step-zero", EVAL + ["--metric", "pgd20"] + _param("step_size=0"), r"pgd20: step_size must be in \(0, 1\]"),
    ("eval-param-step-big", EVAL + ["--metric", "pgd20"] + _param("step_size=2"), r"pgd20: step_size must be in \(0, 1\], got 2"),
    ("eval-param-steps-zero", EVAL + ["--metric", "pgd20"] + _param("steps=0"), r"pgd20: steps must be in \[1, 10000\], got 0"),
    ("eval-param-restarts-zero", EVAL + ["--metric", "pgd20"] + _param("restarts=0"), r"pgd20: restarts must be in \[1, 100\], got 0"),
    ("eval-param-objective", EVAL + ["--metric", "pgd20"] + _param("objective=dlr"), r"pgd20: objective must be one of ce, energy"),
    ("eval-param-eps-nan", EVAL + ["--metric", "pgd20"] + _param("eps=nan"), r"eps nan is out of range"),
    ("eval-param-max-images-zero", EVAL + ["--metric", "autoattack"] + _param("max_images=0"), r"autoattack: max_images must be in \[1, 10000000\], got 0"),
    ("eval-param-chunk-zero", EVAL + ["--metric", "autoattack"] + _param("chunk_size=0"), r"autoattack: chunk_size must be in \[1, 100000\], got 0"),
    ("eval-param-aa-version", EVAL + ["--metric", "autoattack"] + _param("version=fast"), r"autoattack: version must be one of standard"),
    ("eval-param-n-per-class-zero", EVAL + ["--metric", "memorization"] + _param("n_per_class=0"), r"memorization: n_per_class must be in \[1, 100000\], got 0"),
    ("eval-param-mode", EVAL + ["--metric", "energy-hist"] + _param("mode=dream"), r"energy-hist: mode must be one of joint"),
    ("eval-param-init", EVAL + ["--metric", "energy-hist"] + _param("init=zeros"), r"energy-hist: init must be one of uniform"),
    ("eval-param-sgld-step-nan", EVAL + ["--metric", "energy-hist"] + _param("step_size=nan"), r"energy\-hist: step_size must be in \[0, 1000\], got nan"),
    ("eval-param-bins", EVAL + ["--metric", "energy-hist"] + _param("bins=1"), r"energy\-hist: bins must be in \[2, 10000\], got 1"),
    ("eval-param-contour-radius", EVAL + ["--metric", "energy-contour"] + _param("radius=0"), r"energy-contour: radius must be in"),
    ("eval-param-contour-grid", EVAL + ["--metric", "energy-contour"] + _param("grid=1"), r"energy\-contour: grid must be in \[3, 1001\], got 1"),
    ("eval-param-k-zero", EVAL + ["--metric", "memorization"] + _param("k=0"), r"memorization: k must be in \[1, 1000\], got 0"),
    ("eval-param-threshold", EVAL + ["--metric", "memorization"] + _param("threshold=2"), r"memorization: threshold must be in"),
    ("eval-param-splits", EVAL + ["--metric", "is"] + _param("isc_splits=0"), r"is: isc_splits must be in \[1, 1000\], got 0"),
    ("eval-inception-missing", EVAL + ["--metric", "fid", "--inception-weights", "{root}/none.pth"], r"--inception-weights .* does not exist"),
    ("eval-inception-foreign", EVAL + ["--metric", "kid", "--inception-weights", "{foreign_weights}"],
     r"is not torch-fidelity's Inception-v3 weights \(no Conv2d_1a_3x3\.conv\.weight; it holds"),
    ("eval-inception-absent", EVAL + ["--metric", "is"], r"IS, FID, KID and precision/recall need torch-fidelity's Inception-v3 weights"),
    # ---- eval: data
    ("eval-data-missing", ["eval", "--ckpt", "{ckpt}", "--data", "{root}/none", "--out", "{out}"], r"data not found"),
    ("eval-data-two-test-sets", ["eval", "--ckpt", "{ckpt}", "--data", "{two_test_sets}", "--out", "{out}"],
     r"holds both images/labels and test_images/test_labels"),
    ("eval-data-txt", ["eval", "--ckpt", "{ckpt}", "--data", "{txt}", "--out", "{out}"], r"unsupported data file"),
    ("eval-data-folder", ["eval", "--ckpt", "{ckpt}", "--data", "{a_folder}", "--out", "{out}"], r"is not a data source"),
    ("eval-data-100-classes", ["eval", "--ckpt", "{ckpt}", "--data", "{cifar100like}", "--out", "{out}"], r"outputs 10 classes but the data has 100"),
    ("eval-data-class-order", ["eval", "--ckpt", "{ckpt}", "--data", "{swapped}", "--out", "{out}"], r"classes in another order"),
    ("eval-train-data-missing", EVAL + ["--metric", "memorization", "--train-data", "{root}/none"], r"data not found"),
    ("eval-out-is-file", ["eval", "--ckpt", "{ckpt}", "--data", "{exact}", "--n", "4", "--out", "{txt}"], r"--out .* is a file"),
    ("eval-out-under-file", ["eval", "--ckpt", "{ckpt}", "--data", "{exact}", "--n", "4", "--out", "{txt}/x"], r"--out .* is a file"),
    ("eval-out-unwritable", ["eval", "--ckpt", "{ckpt}", "--data", "{exact}", "--n", "4", "--out", "{ro}"], r"(read-only|No such file|Permission denied)"),
    ("eval-bogus-option", EVAL + ["--bogus"], r"No such option '--bogus'"),
    # ---- data sources (through `data info`)
    ("data-info-missing", ["data", "info", "{root}/none"], r"does not exist"),
    ("data-info-empty-npz", ["data", "info", "{empty_npz}"], r"has neither images/labels"),
    ("data-info-no-arrays", ["data", "info", "{no_arrays}"], r"has neither images/labels"),
    ("data-info-truncated-npz", ["data", "info", "{truncated_npz}"], r"cannot read .* as .npz"),
    ("data-info-object-npz", ["data", "info", "{object_npz}"], r"holds Python objects"),
    ("data-info-bad-deflate", ["data", "info", "{bad_deflate}"], r"cannot read .* as .npz \(a damaged member"),
    ("data-verify-reference-no-images", ["data", "verify", "{exact}", "--reference", "{ref_no_images}"],
     r"has neither images/labels"),
    ("data-verify-reference-size", ["data", "verify", "{exact}", "--reference", "{ref_size64}"],
     r"--reference ref64.npz holds 64x64 images but the data's are 32x32"),
    ("data-verify-reference-not-npz", ["data", "verify", "{exact}", "--reference", "{txt}"],
     r"unsupported data file|not an .npz"),
    ("data-info-nan-labels", ["data", "info", "{nan_labels}"], r"labels must be whole class indices"),
    ("data-info-neg-labels", ["data", "info", "{neg_labels}"], r"labels must be >= 0, found -1"),
    ("data-info-frac-labels", ["data", "info", "{frac_labels}"], r"labels must be whole class indices"),
    ("data-info-big-labels", ["data", "info", "{big_labels}"], r"label 12 is out of range for 10 classes"),
    ("data-info-str-labels", ["data", "info", "{str_labels}"], r"labels must be integers"),
    ("data-info-short-labels", ["data", "info", "{short_labels}"], r"labels must be \(N,\) with N=20"),
    ("data-info-gray", ["data", "info", "{gray}"], r"images must be uint8 \(N, H, W, 3\) RGB"),
    ("data-info-mixed-sizes", ["data", "info", "{size64}"], r"train and test images differ in size \(32x32 and 64x64\)"),
    ("data-info-size4", ["data", "info", "{size28}"], r"sides of at least 8, got uint8 \(4, 4, 4, 3\)"),
    ("data-info-float-images", ["data", "info", "{float_images}"], r"images must be uint8"),
    ("data-info-no-images", ["data", "info", "{no_images}"], r"holds no images"),
    ("data-info-tar-not-image", ["data", "info", "{tar_not_image}"], r"train/cat/1.png is not a readable image"),
    ("data-info-tar-big-image", ["data", "info", "{tar_big_image}"], r"train/cat/2.png is 64x64 but .*0.png is 32x32; every image of a dataset must have one size"),
    ("data-info-tar-truncated", ["data", "info", "{tar_truncated}"], r"cannot read .* as a tar archive"),
    ("data-info-tar-garbage", ["data", "info", "{tar_garbage}"], r"cannot read .* as a tar archive"),
    ("data-info-tree-not-image", ["data", "info", "{tree_not_image}"], r"train/cat/1.png is not a readable image"),
    ("data-info-tree-big-image", ["data", "info", "{tree_big_image}"], r"1.png is 32x32 but train/cat/0.png is 40x32; every image of a dataset must have one size"),
    ("data-info-tree-empty", ["data", "info", "{tree_empty}"], r"no images found"),
    ("data-info-txt", ["data", "info", "{txt}"], r"unsupported data file"),
    ("data-info-folder", ["data", "info", "{a_folder}"], r"is not a data source"),
    ("data-import-missing", ["data", "import", "{root}/none"], r"does not exist"),
    ("data-import-not-image", ["data", "import", "{tar_not_image}"], r"is not a readable image"),
    ("data-import-bad-name", ["data", "import", "{tiny}", "--name", "../escape"], r"--name must be a plain name"),
    ("data-verify-missing", ["data", "verify", "{root}/none"], r"does not exist"),
    ("data-verify-reference-missing", ["data", "verify", "{tiny}", "--reference", "{root}/none.npz"], r"does not exist"),
    ("data-unknown-command", ["data", "explode"], r"No such command 'explode'"),
    # ---- sample
    ("sample-ckpt-missing", ["sample", "--ckpt", "{root}/none.pt"], r"checkpoint not found"),
    ("sample-ckpt-flipped", SAMPLE[:1] + ["--ckpt", "{flipped_ckpt}"] + SAMPLE[3:], r"do not match their stored digest"),
    ("sample-n-zero", SAMPLE + ["--n-per-class", "0"], r"--n-per-class.*0 is not in the range x>=1"),
    ("sample-steps-negative", SAMPLE + ["--steps", "-1"], r"--steps.*-1 is not in the range x>=0"),
    ("sample-step-nan", SAMPLE + ["--step-size", "nan"], r"--step-size.*'nan' is not a finite number"),
    ("sample-step-negative", SAMPLE + ["--step-size", "-0.1"], r"--step-size.*must be >= 0"),
    ("sample-step-text", SAMPLE + ["--step-size", "big"], r"--step-size.*'big' is not a number"),
    ("sample-noise-inf", SAMPLE + ["--noise", "inf"], r"--noise.*'inf' is not a finite number"),
    ("sample-noise-negative", SAMPLE + ["--noise", "-1"], r"--noise.*must be >= 0"),
    ("sample-mode", SAMPLE + ["--mode", "dream"], r"--mode.*'dream' is not one of"),
    ("sample-init", SAMPLE + ["--init", "zeros"], r"--init.*'zeros' is not one of"),
    ("sample-init-buffer", SAMPLE + ["--init", "buffer"], r"needs a checkpoint with a replay buffer"),
    ("sample-seed-negative", SAMPLE + ["--seed", "-1"], r"--seed.*-1 is not in the range x>=0"),
    ("sample-train-data-missing", SAMPLE + ["--train-data", "{root}/none"], r"data not found"),
    ("sample-out-is-file", ["sample", "--ckpt", "{ckpt}", "--out", "{txt}"], r"--out .* is a file"),
    ("sample-out-unwritable", ["sample", "--ckpt", "{ckpt}", "--out", "{ro}"], r"(read-only|No such file|Permission denied)"),
    ("sample-device", SAMPLE[:-6] + ["--device", "tpu"], r"unknown device 'tpu'"),
    # ---- report
    ("report-unknown-table", ["report", "--table", "jeat-t9"], r"'jeat-t9' is not one of 'ebjdat-at'"),
    ("report-no-table", ["report"], r"Missing option '--table'"),
    ("report-format", ["report", "--table", "jeat-t2", "--format", "xls"], r"--format.*'xls' is not one of"),
    ("report-results-missing", ["report", "--table", "jeat-t2", "--results", "{root}/none"], r"results path .* does not exist"),
    ("report-data-unknown", ["report", "--table", "jeat-t2", "--results", "{ci_records}", "--data", "MNIST"],
     r"no record was measured on test data 'MNIST'; the results hold: 'CIFAR-10 \(JPEG q75 copy\)'"),
    ("report-out-folder", ["report", "--table", "jeat-t2", "--out", "{a_folder}"], r"--out .* is a folder"),
    ("report-out-under-file", ["report", "--table", "jeat-t2", "--out", "{txt}/t.md"], r"is a file"),
    ("report-out-unwritable", ["report", "--table", "jeat-t2", "--out", "{ro}/t.md"], r"(read-only|No such file|Permission denied)"),
    # ---- reproduce
    ("reproduce-preset", ["reproduce", "--preset", "huge"], r"--preset.*'huge' is not one of"),
    ("reproduce-only", ["reproduce", "--only", "nope", "--data", "{tiny}", "--out", "{out}"], r"--only: unknown recipe\(s\) nope"),
    ("reproduce-table", ["reproduce", "--table", "jeat-t9"], r"--table.*'jeat-t9' is not one of"),
    ("reproduce-table-plan", ["reproduce", "--table", "purification", "--plan", "--out", "{out}"], r"a plan and its jobs cover every table; leave --table out"),
    ("reproduce-table-only", ["reproduce", "--preset", "ci", "--table", "purification", "--only", "pgd-at", "--data", "{tiny}", "--out", "{out}", "--runs", "{out}-runs"], r"--only pgd-at trains no model of the tables purification; they need jeat, jem"),
    ("reproduce-data-missing", ["reproduce", "--preset", "ci", "--data", "{root}/none", "--out", "{out}", "--runs", "{out}-runs"], r"data not found"),
    ("reproduce-data-txt", ["reproduce", "--preset", "ci", "--data", "{txt}", "--out", "{out}", "--runs", "{out}-runs"], r"unsupported data file"),
    ("reproduce-cifar100-missing", ["reproduce", "--preset", "ci", "--data", "{tiny}", "--data-cifar100", "{root}/none", "--out", "{out}", "--runs", "{out}-runs"], r"data not found"),
    ("reproduce-out-file", ["reproduce", "--preset", "ci", "--data", "{tiny}", "--out", "{txt}"], r"--out .* is a file"),
    ("reproduce-runs-file", ["reproduce", "--preset", "ci", "--data", "{tiny}", "--out", "{out}", "--runs", "{txt}"], r"--runs .* is a file"),
    ("reproduce-device", ["reproduce", "--preset", "ci", "--data", "{tiny}", "--out", "{out}", "--device", "tpu"], r"unknown device 'tpu'"),
    # ---- knobs past their declared limits (no unbounded work is ever started)
    ("eval-steps-past-limit", EVAL + ["--metric", "pgd20"] + _param("steps=1000000000000"),
     r"pgd20: steps must be in \[1, 10000\], got 1000000000000"),
    ("eval-eot-past-limit", EVAL + ["--metric", "pgd20"] + _param("eot=1000000000"), r"eot must be in \[1, 1000\]"),
    ("eval-probes-past-limit", EVAL + ["--metric", "jfs"] + _param("probes=1000000000"),
     r"probes must be in \[1, 100000\]"),
    ("sample-n-per-class-past-limit", SAMPLE[:-2] + ["--n-per-class", "100000000"],
     r"n-per-class must be in \[1, 100000\], got 100000000"),
    ("sample-steps-past-limit", SAMPLE[:-4] + ["--steps", "100000000", "--n-per-class", "1"],
     r"steps must be in \[0, 100000\]"),
    ("train-width-zero", TRAIN + _set("model.kwargs.width=0"), r"has layers with no weights .*width must be at least 1"),
    ("train-epochs-past-limit", TRAIN + _set("optim.epochs=10000000"), r"optim.epochs must be in \[1, 100000\]"),
    # ---- list and the group
    ("list-unknown", ["list", "widgets"], r"'widgets' is not one of"),
    ("unknown-command", ["explode"], r"No such command 'explode'"),
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, trained_run):
    from energybench.handles.checkpoint import load_model

    model = load_model(trained_run / "last.pt").model
    path = tmp_path_factory.mktemp("exported") / "model.pt2"
    torch.export.save(torch.export.export(model, (torch.rand(4, 3, 32, 32),)), str(path))
    return path


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot create: a read-only directory, or (as root, who may write
    anywhere that is writable at all) a path under /proc."""
    if os.geteuid() == 0:
        return Path("/proc/energybench-cannot-create/out")
    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(0o555)
    return ro / "out"


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_the_table_is_large_and_unique():
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 150


@pytest.mark.parametrize("case_id, args, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(case_id, args, message, bad, exported, run_cli, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    fill = {k: str(v) for k, v in bad.items()}
    fill.update(out=str(work / "out"), ro=str(_unwritable(tmp_path)), ckptdir=str(bad["ckpt"].parent),
                exported=str(exported))
    before_ckpt = _snapshot(bad["ckpt"].parent)
    before_bad = _snapshot(bad["root"])
    code, out, err = run_cli(*[a.format(**fill) for a in args])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("energybench: error:"), lines[0]
    assert re.search(message, lines[0]), lines[0]
    assert _snapshot(work) == set(), f"left behind: {_snapshot(work)}"
    assert _snapshot(bad["root"]) == before_bad and _snapshot(bad["ckpt"].parent) == before_ckpt
