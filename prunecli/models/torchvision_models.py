"""Torchvision classification models, built untrained and adapted to the input channels and image size.

Any name in ``torchvision.models.list_models(module=torchvision.models)`` builds with ``weights=None`` (nothing
is downloaded) and ``num_classes``. Two adaptations follow:

- ``in_channels``: the first conv is replaced by one with that many input channels, keeping its other
  hyper-parameters.
- ``small_stem=True`` (for images smaller than ImageNet's, e.g. 8x8 digits or 32x32 CIFAR), per family:

  =====================================================  ===============================================
  family                                                 small stem
  =====================================================  ===============================================
  ResNet/ResNeXt/Wide-ResNet, DenseNet, GoogLeNet,       first conv becomes 3x3 stride 1 and the max-pool
  Inception-v3, ShuffleNet-v2                            right after it is dropped (the CIFAR stem)
  MobileNet-v2/v3, EfficientNet(-v2), MNASNet, RegNet,   first conv becomes 3x3 stride 1
  SqueezeNet, AlexNet, ConvNeXt, MaxViT
  VGG, AlexNet                                           also the first max-pools are dropped while the
                                                         image would otherwise shrink below 1x1
  ViT                                                    patch size ~image_size/8 (8x8 tokens)
  Swin                                                   unchanged: its 4x4 patches and padded merging
                                                         already work at any size
  =====================================================  ===============================================

Without a small stem, ViT still gets ``image_size`` (and a patch size dividing it), MaxViT a partition size
dividing its grids. Smallest images: Inception-v3 needs 75x75 with its ImageNet stem and 19x19 with the small
one; without a small stem VGG needs 32x32 and AlexNet 63x63. Every other model, and VGG and AlexNet with a
small stem, runs on 8x8 images.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch
from torch import nn

from prunecli._torchvision import import_torchvision
from prunecli.errors import ConfigError

# Families (torchvision module names) whose small stem is the CIFAR stem: a 3x3, stride-1, padding-1 first conv.
_CIFAR_STEM = frozenset(
    {"alexnet", "convnext", "densenet", "efficientnet", "googlenet", "inception", "maxvit", "mnasnet",
     "mobilenetv2", "mobilenetv3", "regnet", "resnet", "shufflenetv2", "squeezenet"}
)
# The pooling layer right after the stem conv; dropped with the stem's stride so the first stage keeps the
# input resolution, as in the CIFAR variants of these nets.
_STEM_POOL = {
    "resnet": "maxpool", "densenet": "features.pool0", "googlenet": "maxpool1", "inception": "maxpool1",
    "shufflenetv2": "maxpool",
}
# Families whose ``features`` is a Sequential of size-preserving convs and max-pools.
_POOLED_FEATURES = frozenset({"vgg", "alexnet"})
# Builder arguments that make the model return plain logits (no auxiliary heads) and silence the
# "init_weights will change" warning of untrained GoogLeNet / Inception-v3.
_BUILD_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception": {"aux_logits": False, "init_weights": True},
}
# MaxViT builders hard-code partition_size=7, which needs 224x224 images; these are their other arguments.
_MAXVIT_ARCH: dict[str, dict[str, Any]] = {
    "maxvit_t": {"stem_channels": 64, "block_channels": [64, 128, 256, 512], "block_layers": [2, 2, 5, 2],
                 "head_dim": 32, "stochastic_depth_prob": 0.2},
}


def torchvision_model_names() -> list[str]:
    """Names of torchvision's classification models, sorted."""
    return list(_torchvision_names())


@functools.cache
def _torchvision_names() -> tuple[str, ...]:
    # Cached: torchvision walks its whole model registry for every call.
    tv = import_torchvision()
    return tuple(sorted(tv.models.list_models(module=tv.models)))


def build_torchvision_model(
    name: str, *, in_channels: int, num_classes: int, image_size: int, small_stem: bool, **kwargs: Any
) -> nn.Module:
    """Build torchvision's classification model ``name``, untrained, adapted as described in the module doc.

    Args:
        name: A name from :func:`torchvision_model_names`.
        in_channels: Image channels.
        num_classes: Output logits.
        image_size: Image height and width.
        small_stem: Adapt the stem to small images (see the module docstring).
        **kwargs: Passed to the torchvision builder (e.g. ``dropout``, ``width_mult``).
    """
    tv = import_torchvision()
    builder = tv.models.get_model_builder(name)
    family = builder.__module__.rsplit(".", 1)[-1]
    kwargs = {**_BUILD_KWARGS.get(family, {}), **kwargs}
    construct = _CONSTRUCTORS.get(family, _from_builder)
    model = construct(tv, name, builder, in_channels, num_classes, image_size, small_stem, kwargs)
    if small_stem:
        if family in _CIFAR_STEM:
            _replace_first_conv(model, in_channels, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
        if family in _STEM_POOL:
            _set_submodule(model, _STEM_POOL[family], nn.Identity())
        if family in _POOLED_FEATURES:
            _drop_leading_pools(model.features, image_size)
    _replace_first_conv(model, in_channels)
    if family == "mnasnet":
        _default_state_version(model, 2)
    return model


def _default_state_version(model: nn.Module, version: int) -> None:
    """Let ``model`` load a state dict without its ``_metadata`` (safetensors keeps tensors only).

    Torchvision's MNASNet refuses a state dict whose metadata lacks ``version`` (1: the stem of torchvision
    < 0.6, 2: today's); a model built here has today's layout, so its checkpoints are version ``version``.
    """
    load = type(model)._load_from_state_dict

    def versioned(self, state_dict, prefix, local_metadata, *args):  # nn.Module's signature
        if local_metadata.get("version") is None:
            local_metadata = {**local_metadata, "version": version}
        return load(self, state_dict, prefix, local_metadata, *args)

    model._load_from_state_dict = versioned.__get__(model)


def _from_builder(tv, name, builder, in_channels, num_classes, image_size, small_stem, kwargs) -> nn.Module:
    return builder(weights=None, num_classes=num_classes, **kwargs)


def _vit(tv, name, builder, in_channels, num_classes, image_size, small_stem, kwargs) -> nn.Module:
    # The builders hard-code the patch size, so read depth, width and heads off a free meta-device instance
    # and build the VisionTransformer again with a patch size that divides the image.
    with torch.device("meta"):
        ref = builder(weights=None)
    model = tv.models.VisionTransformer(
        image_size=image_size,
        patch_size=_vit_patch(ref.patch_size, image_size, small_stem),
        num_layers=len(ref.encoder.layers),
        num_heads=ref.encoder.layers[0].num_heads,
        hidden_dim=ref.hidden_dim,
        mlp_dim=ref.mlp_dim,
        num_classes=num_classes,
        **kwargs,
    )
    if in_channels != model.conv_proj.in_channels:
        old = model.conv_proj
        model.conv_proj = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride)
        # The patch embedding's own (LeCun normal) init, as VisionTransformer.__init__ does it.
        fan_in = in_channels * old.kernel_size[0] * old.kernel_size[1]
        nn.init.trunc_normal_(model.conv_proj.weight, std=(1 / fan_in) ** 0.5)
        nn.init.zeros_(model.conv_proj.bias)
    return model


def _vit_patch(patch: int, image_size: int, small_stem: bool) -> int:
    """The largest divisor of ``image_size`` up to ``patch`` (or up to ~image_size/8 for a small stem)."""
    cap = max(1, round(image_size / 8)) if small_stem else patch
    return max(d for d in range(1, min(cap, image_size) + 1) if image_size % d == 0)


def _maxvit(tv, name, builder, in_channels, num_classes, image_size, small_stem, kwargs) -> nn.Module:
    if name not in _MAXVIT_ARCH:
        raise ConfigError("model.name", name, sorted(_MAXVIT_ARCH), reason="MaxViT variants prunecli can size")
    arch = _MAXVIT_ARCH[name]
    # A small stem turns the stride-2 stem conv into stride 1 (done by the caller): the same network as the
    # stride-2 stem on an image twice as large, which is the size MaxVit must be told to lay out its grids.
    size = 2 * image_size if small_stem else image_size
    grids, side = [], size
    for _ in range(len(arch["block_channels"]) + 1):
        side = (side - 1) // 2 + 1  # a 3x3, stride-2, padding-1 conv
        grids.append(side)
    partition = max(p for p in range(1, 8) if all(g % p == 0 for g in grids[1:]))
    return tv.models.MaxVit(
        input_size=(size, size), partition_size=partition, num_classes=num_classes, **arch, **kwargs
    )


_CONSTRUCTORS: dict[str, Callable[..., nn.Module]] = {"vision_transformer": _vit, "maxvit": _maxvit}


def _replace_first_conv(model: nn.Module, in_channels: int, **overrides: Any) -> None:
    """Swap the model's first Conv2d for one with ``in_channels`` and ``overrides``, other settings kept."""
    path, conv = next((p, m) for p, m in model.named_modules() if isinstance(m, nn.Conv2d))
    settings = {
        "kernel_size": conv.kernel_size, "stride": conv.stride, "padding": conv.padding,
        "dilation": conv.dilation, "groups": conv.groups, "bias": conv.bias is not None,
        "padding_mode": conv.padding_mode,
    }
    new_settings = {**settings, **overrides}
    if in_channels == conv.in_channels and new_settings == settings:
        return
    new = nn.Conv2d(in_channels, conv.out_channels, **new_settings)
    # Kaiming fan-out is the init torchvision gives the stems of its conv nets.
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    _set_submodule(model, path, new)


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, child, module)


def _drop_leading_pools(features: nn.Sequential, image_size: int) -> None:
    """Replace the first max-pools of ``features`` by identities until the last one still outputs >= 1x1."""
    pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
    for start in range(len(pools) + 1):
        if _pooled_side(image_size, [features[i] for i in pools[start:]]) >= 1:
            break
    for i in pools[:start]:
        features[i] = nn.Identity()


def _pooled_side(side: int, pools: list[nn.MaxPool2d]) -> int:
    for pool in pools:
        if side < 1:
            return side
        k, s, p = (v if isinstance(v, int) else v[0] for v in (pool.kernel_size, pool.stride, pool.padding))
        span = side + 2 * p - k
        side = (-(-span // s) if pool.ceil_mode else span // s) + 1
    return side
