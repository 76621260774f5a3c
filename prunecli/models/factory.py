"""``build_model``: one entry point for built-in and torchvision models, and ``model_spec`` to rebuild them.

The architecture is a pure function of ``build_model``'s arguments (weights are random, the layers are not):
a checkpoint stores :func:`model_spec` of those arguments and rebuilds with ``build_model(**spec)``.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from prunecli.errors import ConfigError
from prunecli.models._registry import builtin_models, get_builtin
from prunecli.models.torchvision_models import build_torchvision_model, torchvision_model_names
from prunecli.models.weights import load_weights

# Below this size an ImageNet stem (stride 4 before the first stage) throws most of the image away.
SMALL_IMAGE = 64


def list_models(*, builtin_only: bool = False) -> list[str]:
    """Every name :func:`build_model` accepts: the built-ins (sorted), then torchvision's (sorted)."""
    names = builtin_models()
    return names if builtin_only else names + torchvision_model_names()


def build_model(
    name: str,
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    image_size: int = 32,
    small_stem: bool | str = "auto",
    weights: str | Path | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build model ``name`` for ``in_channels`` x ``image_size`` x ``image_size`` inputs and ``num_classes``.

    Args:
        name: A built-in (``mlp``, ``cnn``, ``resnet20``, ``resnet56``, ``tiny_lm``; see :func:`list_models`) or any
            torchvision classification model name (``resnet18``, ``mobilenet_v2``, ``vit_b_16``, ...).
        in_channels: Image channels (the first conv is adapted for torchvision models).
        num_classes: Output logits.
        image_size: Image height and width.
        small_stem: For torchvision models, adapt the stem to small images (True), keep the ImageNet stem
            (False), or decide by size (``"auto"``: small when ``image_size < 64``). Built-ins ignore it.
        weights: Optional path to a ``.safetensors`` or state-dict ``.pt`` file to load (never unpickled).
        **kwargs: The model's own hyper-parameters (e.g. ``hidden`` for ``mlp``, ``dropout`` for torchvision),
            and a text task's sizes (``vocab_size``, ``seq_len`` for ``tiny_lm``, which ignores the image sizes).

    Returns:
        The model, in training mode.

    Raises:
        ConfigError: unknown ``name``, a bad size or hyper-parameter, or a weights file that does not fit.
    """
    in_channels = _positive("model.in_channels", in_channels)
    num_classes = _positive("model.num_classes", num_classes)
    image_size = _positive("model.image_size", image_size)
    small = resolve_small_stem(small_stem, image_size)
    builder = get_builtin(name)
    if builder is not None:
        _check_kwargs(builder, kwargs)
        params = inspect.signature(builder).parameters
        # A text model (tiny_lm) takes its task's sizes (vocab_size, seq_len) through kwargs, no image sizes.
        image = {k: v for k, v in (("in_channels", in_channels), ("num_classes", num_classes),
                                   ("image_size", image_size)) if k in params}
        model = builder(**image, **kwargs)
    elif name in torchvision_model_names():
        try:
            model = build_torchvision_model(
                name, in_channels=in_channels, num_classes=num_classes, image_size=image_size, small_stem=small,
                **kwargs,
            )
        except TypeError as err:
            if "unexpected keyword argument" not in str(err):
                raise
            raise ConfigError("model", sorted(kwargs), f"arguments that torchvision's {name} accepts",
                              reason=str(err)) from None
    else:
        raise _unknown(name)
    if weights is not None:
        load_weights(model, weights)
    return model


def model_spec(name: str, **kwargs: Any) -> dict[str, Any]:
    """The JSON-able arguments that rebuild ``name``'s architecture with ``build_model(**spec)``.

    Fills in :func:`build_model`'s defaults, resolves ``small_stem="auto"`` to a bool, turns OmegaConf
    containers into lists and dicts, and leaves out ``weights`` (a checkpoint carries its own).
    """
    defaults = {
        k: p.default for k, p in inspect.signature(build_model).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    spec = {**defaults, **kwargs, "name": name}
    spec.pop("weights", None)
    spec["small_stem"] = resolve_small_stem(spec["small_stem"], spec["image_size"])
    return {k: _plain(v) for k, v in spec.items()}


def resolve_small_stem(small_stem: bool | str, image_size: int) -> bool:
    """``small_stem`` as a bool: ``"auto"`` means ``image_size < 64``.

    Raises:
        ConfigError: ``small_stem`` is not True, False or ``"auto"``.
    """
    if isinstance(small_stem, bool):
        return small_stem
    if small_stem == "auto":
        return image_size < SMALL_IMAGE
    raise ConfigError("model.small_stem", small_stem, ["true", "false", "auto"])


def _positive(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, value, "a positive integer")
    return value


def _check_kwargs(builder: Any, kwargs: Mapping[str, Any]) -> None:
    params = inspect.signature(builder).parameters
    own = sorted(k for k in params if k not in ("in_channels", "num_classes", "image_size"))
    for key, value in kwargs.items():
        if key not in params:
            raise ConfigError(f"model.{key}", value, f"one of the {builder.__name__} settings: {', '.join(own)}"
                              if own else f"no extra settings for {builder.__name__}")


def _unknown(name: str) -> ConfigError:
    names = list_models()
    close = difflib.get_close_matches(str(name), names, n=3)
    return ConfigError(
        "model.name", name,
        f"a built-in ({', '.join(builtin_models())}) or any torchvision classification model "
        "(resnet18, mobilenet_v2, vit_b_16, ...; see prunecli.models.list_models())",
        reason=f"did you mean {' or '.join(close)}?" if close else None,
    )


def _plain(value: Any) -> Any:
    """OmegaConf containers and tuples as plain lists and dicts, so the spec is JSON-able."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
