"""CIFAR-style ResNets (ResNet-20 and ResNet-56) with projection (option B) shortcuts.

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, Sec. 4.2: a 3x3 conv stem with
16 channels, then three stages of ``n`` basic blocks with 16, 32 and 64 channels (the first block of stages 2
and 3 halves the resolution), global average pooling and one Linear layer; depth ``6n + 2``.
The paper's CIFAR models use option A (zero-padded identity) shortcuts; here shortcuts that change shape are
option B (1x1 conv + BatchNorm), so every channel belongs to a parameter a structured pruner can remove.
"""

from __future__ import annotations

from torch import Tensor, nn

from prunecli.models._registry import register_model

_STAGE_CHANNELS = (16, 32, 64)


class BasicBlock(nn.Module):
    """``conv3x3 -> BN -> ReLU -> conv3x3 -> BN``, plus the shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """A ResNet of depth ``6n + 2`` for small images (He et al., CVPR 2016, Sec. 4.2).

    Args:
        depth: Total weighted layers, ``6n + 2`` with ``n >= 1`` basic blocks per stage (20, 32, 44, 56, 110).
        in_channels: Image channels.
        num_classes: Output logits.
    """

    def __init__(self, depth: int, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CifarResNet depth must be 6n + 2 with n >= 1, got {depth}")
        blocks_per_stage = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, _STAGE_CHANNELS[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(_STAGE_CHANNELS[0])
        self.relu = nn.ReLU(inplace=True)
        stages, width = [], _STAGE_CHANNELS[0]
        for index, out_channels in enumerate(_STAGE_CHANNELS):
            blocks = []
            for b in range(blocks_per_stage):
                stride = 2 if index > 0 and b == 0 else 1
                blocks.append(BasicBlock(width, out_channels, stride))
                width = out_channels
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He initialisation (the same paper, Sec. 3.4) for convs; BatchNorm starts as the identity.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.pool(x).flatten(1))


@register_model
def resnet20(*, in_channels: int = 3, num_classes: int = 10, image_size: int = 32) -> nn.Module:
    """ResNet-20 for CIFAR-sized images (He et al., CVPR 2016, Sec. 4.2; about 0.27M parameters).

    ``image_size`` is accepted for a uniform builder signature: global pooling makes the net size-agnostic.
    """
    return CifarResNet(20, in_channels, num_classes)


@register_model
def resnet56(*, in_channels: int = 3, num_classes: int = 10, image_size: int = 32) -> nn.Module:
    """ResNet-56 for CIFAR-sized images (He et al., CVPR 2016, Sec. 4.2; about 0.86M parameters)."""
    return CifarResNet(56, in_channels, num_classes)
