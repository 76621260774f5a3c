"""MNIST, Fashion-MNIST, CIFAR-10/100 and image folders, read by torchvision from a local ``root``.

Nothing is downloaded unless ``download=True``; a missing root or missing files is a one-line
:class:`~prunecli.errors.ConfigError` naming ``dataset.root`` and how to get the data. ``val`` is the official
test split (``val_fraction`` and ``seed`` do not apply). Images are normalised with each dataset's usual
per-channel mean and standard deviation; ``augment=True`` adds random crops (and flips for natural images)
to the training split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunecli._torchvision import import_torchvision
from prunecli.data._registry import register_dataset
from prunecli.data.bundle import DataBundle
from prunecli.errors import ConfigError

_HOW = "pass dataset.download=true on a machine with internet, or point dataset.root at a folder containing {}"


@dataclass(frozen=True)
class _Spec:
    cls_name: str  # the torchvision.datasets class
    layout: str  # what root must contain, for the error message
    in_channels: int
    num_classes: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool  # horizontal flips preserve the label (not for digits and letters)


_SPECS = {
    "mnist": _Spec("MNIST", "MNIST/raw/", 1, 10, 28, (0.1307,), (0.3081,), False),
    "fashion_mnist": _Spec("FashionMNIST", "FashionMNIST/raw/", 1, 10, 28, (0.2860,), (0.3530,), False),
    "cifar10": _Spec("CIFAR10", "cifar-10-batches-py/", 3, 10, 32,
                     (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True),
    "cifar100": _Spec("CIFAR100", "cifar-100-python/", 3, 100, 32,
                      (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True),
}
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_FOLDER_LAYOUT = "train/<class>/<images> and val/<class>/<images>"


@register_dataset("mnist")
def mnist(*, root: str | None = None, download: bool = False, image_size: int | None = None,
          augment: bool = False) -> DataBundle:
    """MNIST handwritten digits, 1x28x28, 60k/10k (LeCun et al., Proc. IEEE 1998); root holds ``MNIST/raw/``."""
    return _load("mnist", root, download, image_size, augment)


@register_dataset("fashion_mnist")
def fashion_mnist(*, root: str | None = None, download: bool = False, image_size: int | None = None,
                  augment: bool = False) -> DataBundle:
    """Fashion-MNIST, 1x28x28, 60k/10k (Xiao et al., arXiv:1708.07747); root holds ``FashionMNIST/raw/``."""
    return _load("fashion_mnist", root, download, image_size, augment)


@register_dataset("cifar10")
def cifar10(*, root: str | None = None, download: bool = False, image_size: int | None = None,
            augment: bool = False) -> DataBundle:
    """CIFAR-10, 3x32x32, 50k/10k (Krizhevsky, 2009); root holds ``cifar-10-batches-py/``."""
    return _load("cifar10", root, download, image_size, augment)


@register_dataset("cifar100")
def cifar100(*, root: str | None = None, download: bool = False, image_size: int | None = None,
             augment: bool = False) -> DataBundle:
    """CIFAR-100, 3x32x32, 50k/10k, 100 classes (Krizhevsky, 2009); root holds ``cifar-100-python/``."""
    return _load("cifar100", root, download, image_size, augment)


def _load(name: str, root: str | None, download: bool, image_size: int | None, augment: bool) -> DataBundle:
    spec = _SPECS[name]
    how = _HOW.format(spec.layout)
    folder = _root(root, download, how)
    size = image_size or spec.image_size
    tv = import_torchvision()
    resize = [] if size == spec.image_size else [tv.transforms.Resize((size, size))]
    cls = getattr(tv.datasets, spec.cls_name)
    try:
        train = cls(str(folder), train=True, download=download,
                    transform=_transform(resize, size, spec.mean, spec.std, augment, spec.flip))
        val = cls(str(folder), train=False, download=download,
                  transform=_transform(resize, size, spec.mean, spec.std, False, spec.flip))
    except (RuntimeError, OSError) as err:
        # torchvision's own message suggests its Python argument; ours names the config keys instead.
        reason = " ".join(str(err).split()) if download else f"no {spec.cls_name} files found; {how}"
        raise ConfigError("dataset.root", str(folder), f"a folder containing {spec.layout}", reason=reason) from None
    return DataBundle(train, val, spec.in_channels, spec.num_classes, size, name)


@register_dataset("imagefolder")
def imagefolder(*, root: str | None = None, image_size: int | None = None, augment: bool = False) -> DataBundle:
    """RGB images in ``root/train/<class>/*`` and ``root/val/<class>/*``, resized to ``image_size`` (64).

    Each image is resized so its short side is ``image_size``, then center-cropped to a square, and
    normalised with the ImageNet mean and standard deviation. Both splits must have the same class folders.
    """
    how = f"point dataset.root at a folder containing {_FOLDER_LAYOUT}"
    folder = _root(root, False, how)
    size = image_size or 64
    tv = import_torchvision()
    resize = [tv.transforms.Resize(size), tv.transforms.CenterCrop(size)]
    splits = {}
    for split in ("train", "val"):
        if not (folder / split).is_dir():
            raise ConfigError("dataset.root", str(folder), f"a folder containing {_FOLDER_LAYOUT}",
                              reason=f"no {split}/ subfolder")
        transform = _transform(resize, size, _IMAGENET_MEAN, _IMAGENET_STD, augment and split == "train", True)
        try:
            splits[split] = tv.datasets.ImageFolder(str(folder / split), transform=transform)
        except OSError as err:
            raise ConfigError("dataset.root", str(folder), f"a folder containing {_FOLDER_LAYOUT}",
                              reason=" ".join(str(err).split())) from None
    if splits["train"].classes != splits["val"].classes:
        raise ConfigError("dataset.root", str(folder), "the same class folders under train/ and val/",
                          reason=f"train has {len(splits['train'].classes)}, val {len(splits['val'].classes)}")
    return DataBundle(splits["train"], splits["val"], 3, len(splits["train"].classes), size, "imagefolder")


def _root(root: str | None, download: bool, how: str) -> Path:
    if root is None or str(root).strip() == "":
        raise ConfigError("dataset.root", root, "a folder path", reason=how)
    folder = Path(str(root)).expanduser()
    if not download and not folder.is_dir():
        raise ConfigError("dataset.root", str(root), "an existing folder", reason=how)
    return folder


def _transform(resize: list[Any], size: int, mean: tuple[float, ...], std: tuple[float, ...], augment: bool,
               flip: bool) -> Any:
    """``resize`` steps, then (if ``augment``) a random padded crop and flip, then to a normalised tensor."""
    t = import_torchvision().transforms
    steps = list(resize)
    if augment:
        steps.append(t.RandomCrop(size, padding=max(1, size // 8)))
        if flip:
            steps.append(t.RandomHorizontalFlip())
    return t.Compose([*steps, t.ToTensor(), t.Normalize(mean, std)])
