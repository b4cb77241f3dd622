"""Tiny convnets that train in seconds on a CPU: for tests, smoke presets and CI."""

from __future__ import annotations

import torch
import torch.nn as nn

from energybench.models.registry import MODELS, activation, norm2d, normalization


class TinyConvNet(nn.Module):
    """3 conv layers (stride 2 each) + linear head; (N, 3, 32, 32) in [0, 1] -> (N, num_classes).

    width=32 gives ~0.1M parameters.
    """

    def __init__(self, num_classes=10, width=32, batch_norm=True, act="relu", normalize="cifar"):
        super().__init__()
        self.normalize = normalization(normalize)
        layers, c_in = [], 3
        for c_out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=not batch_norm),
                       norm2d(c_out, batch_norm), activation(act, inplace=True)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(self.normalize(x)).mean(dim=(2, 3)))


@MODELS.register("tiny-cnn")
def tiny_cnn(num_classes: int = 10, width: int = 32, batch_norm: bool = True, act: str = "relu",
             normalize: str = "cifar") -> TinyConvNet:
    """A 3-layer convnet (0.2M parameters at width 48) that trains in seconds on a CPU: smoke presets, CI."""
    return TinyConvNet(num_classes, width, batch_norm, act, normalize)
