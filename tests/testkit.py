"""Synthetic test material shared by test files: a CIFAR-shaped .npz with per-class colours and
a small conv net, so tests run on a fresh clone without ../shared."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

CLASSES = [f"class{k}" for k in range(10)]


def synthetic_npz(path, n_train=60, n_test=24, seed=0):
    """A CIFAR-shaped dataset: per-class colour means plus noise (uint8), both splits."""
    rng = np.random.default_rng(seed)
    means = rng.integers(40, 215, size=(10, 3))

    def split(n):
        labels = np.arange(n) % 10
        images = means[labels][:, None, None, :] + rng.normal(0, 25, size=(n, 32, 32, 3))
        return np.clip(images, 0, 255).astype(np.uint8), labels

    (xtr, ytr), (xte, yte) = split(n_train), split(n_test)
    np.savez(path, train_images=xtr, train_labels=ytr, test_images=xte, test_labels=yte,
             label_names=np.array(CLASSES))
    return path


class SmallNet(nn.Module):
    """[0, 1] NCHW -> 10 logits."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                                  nn.Flatten(), nn.Linear(128, 10))

    def forward(self, x):
        return self.body(x)


def seeded_model(seed=0):
    torch.manual_seed(seed)
    return SmallNet().eval()


class TinyClassifier(nn.Module):
    """A conv classifier whose flatten uses the batch size, so a dynamic torch.export holds
    symbolic sizes (sym_int_values) besides the input's: the base of the .pt2 security tests."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        h = torch.nn.functional.avg_pool2d(torch.relu(self.bn(self.conv(x))), 4)
        return self.fc(h.view(x.size(0), -1))
