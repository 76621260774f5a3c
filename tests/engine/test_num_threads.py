"""``trainer.num_threads``: torch's intra-op threads, set at setup; ``auto`` is one thread for small CPU models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunecli.engine.settings import TrainerSettings
from prunecli.engine.setup import DEFAULT_THREADS, SMALL_MODEL, set_threads
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


def test_auto_is_one_thread_for_a_small_cpu_model_and_torchs_default_otherwise():
    cpu = torch.device("cpu")
    assert set_threads(None, nn.Linear(100, 10), cpu) == 1 and torch.get_num_threads() == 1
    big = nn.Linear(SMALL_MODEL // 1000 + 1, 1000)
    assert set_threads(None, big, cpu) == DEFAULT_THREADS and torch.get_num_threads() == DEFAULT_THREADS
    assert set_threads(None, nn.Linear(100, 10), torch.device("cuda")) == DEFAULT_THREADS  # no tensors touched


def test_explicit_count_is_applied():
    assert set_threads(2, nn.Linear(100, 10), torch.device("cpu")) == 2 and torch.get_num_threads() == 2


def test_cli_applies_it_and_refuses_a_bad_value_in_one_line(cli, smoke, tmp_path):
    result = cli("prune", *smoke, "trainer.num_threads=0", f"hydra.run.dir={tmp_path / 'bad'}")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.error_lines if line.startswith("error:")]
    assert errors == ["error: trainer.num_threads=0 is not allowed: expected an integer >= 1 or auto"]
    torch.set_num_threads(1)
    result = cli("prune", *smoke, "trainer.num_threads=2", "trainer.max_steps=1", f"hydra.run.dir={tmp_path / 'ok'}")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert torch.get_num_threads() == 2
