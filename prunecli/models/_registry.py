"""The registry of prunecli's built-in models (timm-style: a decorator adds a builder under its function name).

Only built-ins live here. Torchvision's classification models are found through torchvision's own registry
(:mod:`prunecli.models.torchvision_models`), so there is no second list of their names to keep in sync.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from torch import nn

from prunecli.registry import Registry

ModelBuilder = Callable[..., nn.Module]
_F = TypeVar("_F", bound=ModelBuilder)

_BUILTINS = Registry("model")


def register_model(fn: _F) -> _F:
    """Register ``fn`` as a built-in model named ``fn.__name__``.

    A builder takes its task's sizes as keyword arguments (images: ``in_channels``, ``num_classes``,
    ``image_size``; text: ``vocab_size``, ``seq_len``) plus its own
    hyper-parameters (each with a default), and returns a freshly initialised ``nn.Module``.

    Raises:
        ValueError: a built-in with that name is already registered (a programming error).
    """
    return _BUILTINS.add(fn.__name__, fn)


def builtin_models() -> list[str]:
    """Names of the registered built-in models, sorted."""
    return _BUILTINS.names()


def get_builtin(name: str) -> ModelBuilder | None:
    """The builder registered as ``name``, or None when ``name`` is not a built-in."""
    return _BUILTINS.get(name)
