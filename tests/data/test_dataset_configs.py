"""Every conf/dataset YAML instantiates: a DataBundle, or for data read from disk, the ConfigError naming root."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from prunecli.data import DataBundle, list_datasets
from prunecli.errors import ConfigError

DATASET_CONF = Path(__file__).resolve().parents[2] / "conf" / "dataset"
NEEDS_ROOT = {"mnist", "fashion_mnist", "cifar10", "cifar100", "imagefolder"}
NEEDS_FILES = {"text_files"}  # your own files: the ConfigError names dataset.train


def test_one_config_per_dataset():
    assert sorted(p.stem for p in DATASET_CONF.glob("*.yaml")) == list_datasets()


@pytest.mark.parametrize("path", sorted(DATASET_CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_dataset_config_instantiates(path):
    name = path.stem
    assert path.read_text().splitlines()[0].startswith(f"# prunecli prune dataset={name}")
    cfg = OmegaConf.load(path)
    assert cfg.name == name
    if name in NEEDS_ROOT | NEEDS_FILES:
        # Hydra wraps errors raised by a _target_ in InstantiationException; the ConfigError is its cause.
        with pytest.raises(InstantiationException) as err:
            instantiate(cfg)
        assert isinstance(err.value.__cause__, ConfigError)
        assert err.value.__cause__.key == ("dataset.train" if name in NEEDS_FILES else "dataset.root")
    else:
        data = instantiate(cfg)
        assert isinstance(data, DataBundle) and data.name == name
        assert len(data.train) > len(data.val) > 0
