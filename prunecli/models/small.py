"""Small built-in models for quick runs: a multi-layer perceptron and a LeNet-style CNN.

Both build for any ``in_channels`` and ``image_size`` (down to the 1x8x8 UCI digits), train in seconds on a
CPU, and have the layer types the pruners care about (Linear, Conv2d followed by BatchNorm2d).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from prunecli.errors import ConfigError
from prunecli.models._registry import register_model


def _positive_ints(key: str, value: Any) -> tuple[int, ...]:
    """``value`` as a tuple of positive ints (accepts a list, a tuple, an OmegaConf ListConfig or one int).

    Raises:
        ConfigError: ``value`` is not one or more positive integers.
    """
    items = [value] if isinstance(value, int) else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or not items:
        raise ConfigError(key, value, "a non-empty list of positive integers")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in items):
        raise ConfigError(key, value, "a non-empty list of positive integers")
    return tuple(int(v) for v in items)


@register_model
def mlp(
    *,
    in_channels: int = 1,
    num_classes: int = 10,
    image_size: int = 8,
    hidden: Sequence[int] = (256, 128),
    dropout: float = 0.0,
) -> nn.Module:
    """A multi-layer perceptron on flattened images: ``Flatten`` then ``Linear -> ReLU`` per hidden width.

    Args:
        in_channels: Image channels.
        num_classes: Output logits.
        image_size: Image height and width.
        hidden: Widths of the hidden layers, input side first.
        dropout: Dropout probability after each hidden activation (0 disables it).
    """
    widths = _positive_ints("model.hidden", hidden)
    if not 0.0 <= dropout < 1.0:
        raise ConfigError("model.dropout", dropout, "a float in [0, 1)")
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = in_channels * image_size * image_size
    for width in widths:
        layers += [nn.Linear(fan_in, width), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        fan_in = width
    layers.append(nn.Linear(fan_in, num_classes))
    return nn.Sequential(*layers)


@register_model
def cnn(
    *,
    in_channels: int = 1,
    num_classes: int = 10,
    image_size: int = 8,
    channels: Sequence[int] = (32, 64),
    hidden: int = 128,
) -> nn.Module:
    """A LeNet-style CNN: two ``Conv3x3 -> BatchNorm -> ReLU -> MaxPool2`` blocks, then two Linear layers.

    After the two poolings the feature map is averaged down to at most 4x4 so the classifier stays small
    for large images; on 8x8 digits it is 2x2 and the pooling is a no-op. LeCun et al., "Gradient-based
    learning applied to document recognition", Proc. IEEE 1998 (with BatchNorm and ReLU in place of tanh).

    Args:
        in_channels: Image channels.
        num_classes: Output logits.
        image_size: Image height and width, at least 4.
        channels: Output channels of the two conv blocks.
        hidden: Width of the hidden Linear layer.
    """
    c1, c2 = _two(_positive_ints("model.channels", channels))
    (hidden_width,) = _positive_ints("model.hidden", [hidden])
    if image_size < 4:
        raise ConfigError("dataset.image_size", image_size, "at least 4 for model=cnn (it pools twice)")
    side = min(image_size // 4, 4)
    return nn.Sequential(
        nn.Conv2d(in_channels, c1, 3, padding=1, bias=False),
        nn.BatchNorm2d(c1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1, bias=False),
        nn.BatchNorm2d(c2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(side),
        nn.Flatten(),
        nn.Linear(c2 * side * side, hidden_width),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_width, num_classes),
    )


def _two(widths: tuple[int, ...]) -> tuple[int, int]:
    if len(widths) != 2:
        raise ConfigError("model.channels", list(widths), "exactly two positive integers (one per conv block)")
    return widths[0], widths[1]
