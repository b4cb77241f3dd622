"""Wide ResNet (Zagoruyko & Komodakis 2016), WRN-depth-width, in two block layouts:

    jem      JEM's and JEAT's: stride on the block's second conv, convolutions with bias, the
             shortcut from the block's raw input (`WideResNet`)
    trades   the adversarial-training codebases' (TRADES, RobustBench, Rice et al.): stride on the
             first conv, no convolution bias, and where a block changes width the shortcut (and the
             first conv) take relu(bn(x)) (`TradesWideResNet`); its parameter names are RobustBench's,
             so a RobustBench or TRADES state dict loads with strict=True
"""

from __future__ import annotations

import torch
import torch.nn as nn

from energybench.core.errors import UserError
from energybench.models.registry import MODELS, activation, norm2d, normalization

INITS = ("kaiming", "default")  # default: PyTorch's own layer init, which JEM's and JEM++'s code keep


class WideBasic(nn.Module):
    """Pre-activation wide block: norm-act-conv3x3-(dropout)-norm-act-conv3x3 + shortcut."""

    def __init__(self, c_in, c_out, stride, batch_norm, act, dropout):
        super().__init__()
        self.bn1 = norm2d(c_in, batch_norm)
        self.act1 = activation(act)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=1, padding=1, bias=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.bn2 = norm2d(c_out, batch_norm)
        self.act2 = activation(act, inplace=True)  # its input is used once
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=stride, padding=1, bias=True)
        self.shortcut = (
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=True)
            if stride != 1 or c_in != c_out else nn.Identity()
        )

    def forward(self, x):
        out = self.conv1(self.act1(self.bn1(x)))
        out = self.conv2(self.act2(self.bn2(self.dropout(out))))
        return out + self.shortcut(x)


def stage_plan(depth: int, width: int, init: str) -> tuple[int, list[int]]:
    """Blocks per stage and the channel widths [stem, stage 1, stage 2, stage 3] of WRN-depth-width,
    after checking depth (6n+4) and init."""
    if (depth - 4) % 6 != 0:
        raise UserError(f"WideResNet depth must be 6n+4 (e.g. 16, 28, 34), got {depth}")
    if init not in INITS:
        raise UserError(f"unknown init {init!r} for wrn; use one of {', '.join(INITS)}")
    return (depth - 4) // 6, [16, 16 * width, 32 * width, 64 * width]


class WideResNet(nn.Module):
    """WRN-depth-width for 32x32 inputs; input (N, 3, 32, 32) in [0, 1] -> logits (N, num_classes)."""

    def __init__(self, depth=28, width=10, num_classes=10, batch_norm=True, act="relu",
                 dropout=0.0, normalize="cifar", init="kaiming"):
        super().__init__()
        n, widths = stage_plan(depth, width, init)
        self.normalize = normalization(normalize)
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=True)
        layers, c_in = [], widths[0]
        for stage, stride in zip(range(1, 4), (1, 2, 2)):
            for i in range(n):
                layers.append(WideBasic(c_in, widths[stage], stride if i == 0 else 1,
                                        batch_norm, act, dropout))
                c_in = widths[stage]
        self.blocks = nn.Sequential(*layers)
        self.bn = norm2d(c_in, batch_norm)
        self.act = activation(act, inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        if init == "kaiming":  # the adversarial-training WRN's (TRADES, RobustBench)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(self.conv1(self.normalize(x)))
        out = self.pool(self.act(self.bn(out))).flatten(1)
        return self.fc(out)


class TradesBlock(nn.Module):
    """The adversarial-training codebases' wide block. Same width in and out: relu(bn1(x)) ->
    conv1 (stride) -> relu(bn2) -> (dropout) -> conv2, plus x. A change of width: h = relu(bn1(x))
    feeds both conv1 and a 1x1 `convShortcut`."""

    def __init__(self, c_in, c_out, stride, batch_norm, act, dropout):
        super().__init__()
        self.bn1 = norm2d(c_in, batch_norm)
        self.relu1 = activation(act)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = norm2d(c_out, batch_norm)
        self.relu2 = activation(act, inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.equal_in_out = c_in == c_out and stride == 1
        self.convShortcut = None if self.equal_in_out else nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x):
        h = self.relu1(self.bn1(x))
        out = self.conv2(self.dropout(self.relu2(self.bn2(self.conv1(h)))))
        return out + (x if self.equal_in_out else self.convShortcut(h))


class TradesStage(nn.Module):
    """n blocks of one width (RobustBench's `NetworkBlock`: the blocks sit in `.layer`)."""

    def __init__(self, n, c_in, c_out, stride, batch_norm, act, dropout):
        super().__init__()
        self.layer = nn.Sequential(*[TradesBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1,
                                                 batch_norm, act, dropout) for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class TradesWideResNet(nn.Module):
    """WRN-depth-width in the TRADES / RobustBench layout; input (N, 3, 32, 32) in [0, 1] ->
    logits. Normalisation statistics are not part of its state dict (non-persistent buffers), so
    its state dict has exactly RobustBench's keys."""

    def __init__(self, depth=28, width=10, num_classes=10, batch_norm=True, act="relu",
                 dropout=0.0, normalize="none", init="kaiming"):
        super().__init__()
        n, widths = stage_plan(depth, width, init)
        self.normalize = normalization(normalize, persistent=False)
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.block1 = TradesStage(n, widths[0], widths[1], 1, batch_norm, act, dropout)
        self.block2 = TradesStage(n, widths[1], widths[2], 2, batch_norm, act, dropout)
        self.block3 = TradesStage(n, widths[2], widths[3], 2, batch_norm, act, dropout)
        self.bn1 = norm2d(widths[3], batch_norm)
        self.relu = activation(act, inplace=True)
        self.fc = nn.Linear(widths[3], num_classes)
        if init == "kaiming":  # their init: conv N(0, 2 / (k * k * out_channels)), zero linear bias
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.Linear):
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(self.normalize(x)))))
        out = self.relu(self.bn1(out))
        return self.fc(nn.functional.adaptive_avg_pool2d(out, 1).flatten(1))


LAYOUTS = {"jem": WideResNet, "trades": TradesWideResNet}


def build_wrn(depth, width, num_classes, batch_norm, act, dropout, normalize, init, layout) -> nn.Module:
    if layout not in LAYOUTS:
        raise UserError(f"unknown WRN layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    return LAYOUTS[layout](depth, width, num_classes, batch_norm, act, dropout, normalize, init)


@MODELS.register("wrn")
def wrn(depth: int = 28, width: int = 10, num_classes: int = 10, batch_norm: bool = True,
        act: str = "relu", dropout: float = 0.0, normalize: str = "cifar",
        init: str = "kaiming", layout: str = "jem") -> nn.Module:
    """WRN-depth-width; JEM uses batch_norm=False, act='leaky_relu', normalize='pm1', init='default';
    layout='trades' is the TRADES / RobustBench block layout."""
    return build_wrn(depth, width, num_classes, batch_norm, act, dropout, normalize, init, layout)


@MODELS.register("wrn-28-10")
def wrn_28_10(num_classes: int = 10, batch_norm: bool = True, act: str = "relu",
              dropout: float = 0.0, normalize: str = "cifar", init: str = "kaiming",
              layout: str = "jem") -> nn.Module:
    """The papers' WRN-28-10 (36.5M parameters)."""
    return build_wrn(28, 10, num_classes, batch_norm, act, dropout, normalize, init, layout)


@MODELS.register("wrn-16-4")
def wrn_16_4(num_classes: int = 10, batch_norm: bool = True, act: str = "relu",
             dropout: float = 0.0, normalize: str = "cifar", init: str = "kaiming",
             layout: str = "jem") -> nn.Module:
    """A reduced-scale WRN (2.7M parameters) for GPU studies."""
    return build_wrn(16, 4, num_classes, batch_norm, act, dropout, normalize, init, layout)
