"""``build_dataset``: one entry point for every dataset, with the shared settings checked once."""

from __future__ import annotations

import inspect
from typing import Any

from prunecli.data._registry import get_dataset_builder, list_datasets
from prunecli.data.bundle import DataBundle
from prunecli.errors import ConfigError


def build_dataset(
    name: str = "digits",
    *,
    root: str | None = None,
    download: bool = False,
    val_fraction: float = 0.2,
    seed: int = 0,
    image_size: int | None = None,
    **kw: Any,
) -> DataBundle:
    """Build dataset ``name`` as a :class:`DataBundle` of train and validation splits.

    Args:
        name: One of :func:`list_datasets`: ``digits`` (embedded, the default), ``fake`` (synthetic),
            ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``imagefolder`` (local files),
            ``stdlib_text`` (embedded text), ``text_files`` (local text files).
        root: Folder holding the files of a dataset read from disk.
        download: Let torchvision download the files into ``root`` (needs internet; never done otherwise).
        val_fraction: Held-out fraction for datasets without an official test split (``digits``, ``fake``).
        seed: Seed of that split (and of ``fake``'s samples).
        image_size: Resize images to this side length; None keeps the dataset's own size.
        **kw: The dataset's own settings (e.g. ``num_samples`` for ``fake``, ``augment`` for ``cifar10``).

    Raises:
        ConfigError: unknown ``name`` or setting, a bad value, or data that is not where ``root`` says.
    """
    builder = get_dataset_builder(name)
    if builder is None:
        raise ConfigError("dataset.name", name, list_datasets())
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ConfigError("dataset.val_fraction", val_fraction, "a float in (0, 1)")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or image_size < 1):
        raise ConfigError("dataset.image_size", image_size, "a positive integer or null (the dataset's own)")
    params = inspect.signature(builder).parameters
    shared = {"root": root, "download": download, "val_fraction": val_fraction, "seed": seed,
              "image_size": image_size}
    defaults = {k: p.default for k, p in inspect.signature(build_dataset).parameters.items() if k in shared}
    args = {}
    for key, value in shared.items():
        if key in params:
            args[key] = value
        elif value != defaults[key]:
            raise ConfigError(f"dataset.{key}", value, f"the default ({defaults[key]!r})",
                              reason=f"dataset {name} does not use it")
    for key, value in kw.items():
        if key not in params:
            own = sorted(set(params) - set(shared))
            raise ConfigError(f"dataset.{key}", value, f"a setting of dataset {name}: "
                              + (", ".join(own) if own else "it has none of its own"))
        args[key] = value
    return builder(**args)
