"""Datasets: the embedded digits split, synthetic data, files read from a local root, and the errors users see."""

from __future__ import annotations

import struct

import pytest
import torch

from prunecli.data import DataBundle, build_dataset, list_datasets
from prunecli.errors import ConfigError


def test_registered_names():
    assert list_datasets() == ["cifar10", "cifar100", "digits", "fake", "fashion_mnist", "imagefolder", "mnist",
                               "stdlib_text", "text_files"]


def test_digits_split_is_exact_stratified_and_deterministic():
    data = build_dataset("digits")
    assert isinstance(data, DataBundle)
    assert (len(data.train), len(data.val)) == (1437, 360)
    assert (data.in_channels, data.num_classes, data.image_size, data.name) == (1, 10, 8, "digits")
    image, label = data.train[0]
    assert image.dtype == torch.float32 and image.shape == (1, 8, 8) and type(label) is int
    assert torch.bincount(data.val.tensors[1], minlength=10).tolist() == [36, 36, 35, 37, 36, 37, 36, 36, 35, 36]
    train_images = data.train.tensors[0]
    assert abs(train_images.mean().item()) < 1e-5 and abs(train_images.std().item() - 1) < 1e-5
    again = build_dataset("digits")
    assert torch.equal(again.val.tensors[0], data.val.tensors[0])
    assert torch.equal(again.train.tensors[1], data.train.tensors[1])
    other = build_dataset("digits", seed=1)
    assert not torch.equal(other.val.tensors[0], data.val.tensors[0])


def test_digits_resize_and_fraction():
    data = build_dataset("digits", image_size=32, val_fraction=0.5)
    assert (len(data.train), len(data.val)) == (898, 899)
    assert data.image_size == 32 and data.val[0][0].shape == (1, 32, 32)


def test_fake_is_deterministic_by_seed_and_learnable():
    data = build_dataset("fake", num_samples=200, num_classes=4, in_channels=2, image_size=12, signal=0.5)
    assert (len(data.train), len(data.val)) == (160, 40)
    assert (data.in_channels, data.num_classes, data.image_size) == (2, 4, 12)
    assert data.train[3][0].shape == (2, 12, 12)
    assert torch.bincount(torch.cat([data.train.tensors[1], data.val.tensors[1]])).tolist() == [50, 50, 50, 50]
    same = build_dataset("fake", num_samples=200, num_classes=4, in_channels=2, image_size=12, signal=0.5)
    assert torch.equal(same.train.tensors[0], data.train.tensors[0])
    other = build_dataset("fake", num_samples=200, num_classes=4, in_channels=2, image_size=12, signal=0.5, seed=1)
    assert not torch.equal(other.train.tensors[0], data.train.tensors[0])
    # Nearest class mean (fitted on train) classifies most of val: the labels carry signal.
    x, y = data.train.tensors[0].flatten(1), data.train.tensors[1]
    means = torch.stack([x[y == c].mean(0) for c in range(4)])
    predicted = torch.cdist(data.val.tensors[0].flatten(1), means).argmin(1)
    assert (predicted == data.val.tensors[1]).float().mean().item() > 0.9


def test_fake_defaults():
    data = build_dataset("fake")
    assert (len(data.train), len(data.val), data.in_channels, data.num_classes, data.image_size) == (
        400, 100, 3, 10, 32)


@pytest.mark.parametrize("name,layout", [("cifar10", "cifar-10-batches-py/"), ("mnist", "MNIST/raw/"),
                                         ("fashion_mnist", "FashionMNIST/raw/"), ("cifar100", "cifar-100-python/")])
def test_missing_root_names_the_key_and_how_to_get_the_data(name, layout):
    with pytest.raises(ConfigError) as err:
        build_dataset(name)
    message = str(err.value)
    assert err.value.key == "dataset.root" and err.value.value is None
    assert "dataset.download=true" in message and layout in message and "\n" not in message


def test_empty_root_is_an_error_and_nothing_is_downloaded(tmp_path):
    with pytest.raises(ConfigError) as err:
        build_dataset("mnist", root=str(tmp_path))
    assert (err.value.key, err.value.value) == ("dataset.root", str(tmp_path))
    assert "no MNIST files found" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_nonexistent_root(tmp_path):
    with pytest.raises(ConfigError) as err:
        build_dataset("cifar10", root=str(tmp_path / "nope"))
    assert err.value.value == str(tmp_path / "nope") and "an existing folder" in str(err.value)


def _write_idx(path, tensor):
    ndim = tensor.dim()
    header = struct.pack(">I", 0x0800 + ndim) + b"".join(struct.pack(">I", s) for s in tensor.shape)
    path.write_bytes(header + tensor.to(torch.uint8).numpy().tobytes())


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_style_from_local_files(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 6), ("t10k", 4)):
        _write_idx(raw / f"{split}-images-idx3-ubyte", torch.randint(0, 256, (n, 28, 28), generator=g))
        _write_idx(raw / f"{split}-labels-idx1-ubyte", torch.arange(n) % 10)
    data = build_dataset(name, root=str(tmp_path), image_size=16)
    assert (len(data.train), len(data.val), data.in_channels, data.num_classes, data.image_size) == (6, 4, 1, 10, 16)
    image, label = data.val[3]
    assert image.shape == (1, 16, 16) and image.dtype == torch.float32 and label == 3


def _image_folder(root, splits=("train", "val")):
    from PIL import Image

    for split in splits:
        for index, cls in enumerate(("cat", "dog")):
            (root / split / cls).mkdir(parents=True)
            for k in range(2):
                Image.new("RGB", (20 + 4 * k, 12), (40 * index, 80, 120)).save(root / split / cls / f"{k}.png")


def test_imagefolder(tmp_path):
    _image_folder(tmp_path)
    data = build_dataset("imagefolder", root=str(tmp_path), image_size=16, augment=True)
    assert (len(data.train), len(data.val), data.in_channels, data.num_classes) == (4, 4, 3, 2)
    image, label = data.val[2]
    assert image.shape == (3, 16, 16) and label == 1


def test_imagefolder_needs_both_splits(tmp_path):
    _image_folder(tmp_path, splits=("train",))
    with pytest.raises(ConfigError) as err:
        build_dataset("imagefolder", root=str(tmp_path))
    assert err.value.key == "dataset.root" and "no val/ subfolder" in str(err.value)


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"name": "cifar11"}, "dataset.name"),
        ({"name": "digits", "val_fraction": 1.0}, "dataset.val_fraction"),
        ({"name": "digits", "image_size": 0}, "dataset.image_size"),
        ({"name": "digits", "root": "/data"}, "dataset.root"),
        ({"name": "fake", "augment": True}, "dataset.augment"),
        ({"name": "fake", "num_classes": 0}, "dataset.num_classes"),
        ({"name": "imagefolder", "download": True}, "dataset.download"),
    ],
)
def test_bad_settings_raise_config_error(kwargs, key):
    with pytest.raises(ConfigError) as err:
        build_dataset(**kwargs)
    assert err.value.key == key


def test_unknown_name_lists_the_datasets():
    with pytest.raises(ConfigError) as err:
        build_dataset("cifar11")
    assert "cifar10, cifar100, digits, fake, fashion_mnist, imagefolder, mnist" in str(err.value)
