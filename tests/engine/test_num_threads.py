"""``trainer.num_threads``: torch's intra-op threads, set at setup; ``auto`` is one thread for small CPU steps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunecli.engine.settings import TrainerSettings
from prunecli.engine.setup import DEFAULT_THREADS, SMALL_STEP_MACS, forward_macs, set_threads
from prunecli.errors import ConfigError

BASE = {"epochs": 1, "pretrain_epochs": 0, "batch_size": 8, "eval_batch_size": 8, "accumulate": 1, "num_workers": 0}


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("value, expected", [("auto", None), (1, 1), (3, 3)])
def test_values(value, expected):
    assert TrainerSettings.from_config({**BASE, "num_threads": value}).num_threads == expected
    assert TrainerSettings.from_config(BASE).num_threads is None   # absent: auto


@pytest.mark.parametrize("value", [0, -2, True, 1.5, "two"])
def test_bad_values_name_the_key(value):
    with pytest.raises(ConfigError) as err:
        TrainerSettings.from_config({**BASE, "num_threads": value})
    assert err.value.key == "trainer.num_threads" and "an integer >= 1 or auto" in str(err.value)


def test_forward_macs_counts_conv_and_linear_multiply_adds():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    assert forward_macs(model, torch.zeros(1, 1, 8, 8)) == 4 * 9 * 64 + 256 * 10
    assert model.training   # restored after the eval-mode pass


def test_auto_is_one_thread_for_small_cpu_steps_and_torchs_default_otherwise():
    cpu, small, x = torch.device("cpu"), nn.Linear(100, 10), torch.zeros(1, 100)
    assert set_threads(None, small, cpu, x, 32) == 1 and torch.get_num_threads() == 1
    big = nn.Linear(1000, 1000)   # 1M multiply-adds per sample
    steps = SMALL_STEP_MACS // 1_000_000
    assert set_threads(None, big, cpu, torch.zeros(1, 1000), steps - 1) == 1
    assert set_threads(None, big, cpu, torch.zeros(1, 1000), steps) == DEFAULT_THREADS
    assert torch.get_num_threads() == DEFAULT_THREADS
    assert set_threads(None, small, torch.device("cuda"), x, 32) == DEFAULT_THREADS  # not measured off CPU


def test_default_cnn_on_digits_is_small_and_resnet20_on_cifar_is_not():
    from prunecli.models import build_model

    cnn = build_model("cnn", in_channels=1, num_classes=10, image_size=8)
    assert forward_macs(cnn, torch.zeros(1, 1, 8, 8)) * 32 < SMALL_STEP_MACS
    resnet20 = build_model("resnet20", in_channels=3, num_classes=10, image_size=32)
    assert forward_macs(resnet20, torch.zeros(1, 3, 32, 32)) * 32 > SMALL_STEP_MACS


def test_explicit_count_is_applied():
    assert set_threads(2, nn.Linear(100, 10), torch.device("cpu"), torch.zeros(1, 100), 32) == 2
    assert torch.get_num_threads() == 2


def test_cli_applies_it_and_refuses_a_bad_value_in_one_line(cli, smoke, tmp_path):
    result = cli("prune", *smoke, "trainer.num_threads=0", f"hydra.run.dir={tmp_path / 'bad'}")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.error_lines if line.startswith("error:")]
    assert errors == ["error: trainer.num_threads=0 is not allowed: expected an integer >= 1 or auto"]
    torch.set_num_threads(1)
    result = cli("prune", *smoke, "trainer.num_threads=2", "trainer.max_steps=1", f"hydra.run.dir={tmp_path / 'ok'}")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert torch.get_num_threads() == 2 and "device cpu (2 CPU threads)" in result.stderr
