"""PreAct ResNet-18 (He et al. 2016), the common adversarial-training baseline."""

from __future__ import annotations

import torch
import torch.nn as nn

from energybench.models.registry import MODELS, activation, norm2d, normalization


class PreActBlock(nn.Module):
    def __init__(self, c_in, c_out, stride, batch_norm, act):
        super().__init__()
        self.bn1 = norm2d(c_in, batch_norm)
        self.act1 = activation(act)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = norm2d(c_out, batch_norm)
        self.act2 = activation(act, inplace=True)  # its input is used once
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
            if stride != 1 or c_in != c_out else None
        )

    def forward(self, x):
        out = self.act1(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.act2(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """Input (N, 3, 32, 32) in [0, 1] -> logits (N, num_classes); 11.2M parameters."""

    def __init__(self, num_classes=10, batch_norm=True, act="relu", normalize="cifar"):
        super().__init__()
        self.normalize = normalization(normalize)
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        layers, c_in = [], 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            for i in range(2):
                layers.append(PreActBlock(c_in, c_out, stride if i == 0 else 1, batch_norm, act))
                c_in = c_out
        self.blocks = nn.Sequential(*layers)
        self.bn = norm2d(512, batch_norm)
        self.act = activation(act, inplace=True)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(self.conv1(self.normalize(x)))
        out = self.act(self.bn(out)).mean(dim=(2, 3))
        return self.fc(out)


@MODELS.register("preact-resnet18")
def preact_resnet18(num_classes: int = 10, batch_norm: bool = True, act: str = "relu",
                    normalize: str = "cifar") -> PreActResNet18:
    """PreAct ResNet-18 (He et al. 2016; 11.2M parameters), the usual adversarial-training baseline."""
    return PreActResNet18(num_classes, batch_norm, act, normalize)
