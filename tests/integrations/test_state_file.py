"""The callbacks' pruner state file: safetensors plus a JSON skeleton, read back exactly, and a corrupt or
missing file refused in one line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunecli import build_pruner
from prunecli.errors import CheckpointError
from prunecli.integrations._common import read_state, write_state

CONFIG = {"target": "4x1", "criterion": "l1", "allocation": "global",
          "schedule": {"name": "agp", "final_sparsity": 0.75, "start_step": 0, "end_step": 4, "frequency": 2}}


def pruner():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    return build_pruner(model, CONFIG, total_steps=10)


def test_a_written_state_reads_back_into_a_fresh_pruner(tmp_path):
    first = pruner()
    first.on_train_begin()
    for step in range(3):
        first.on_step_begin(step)
        first.on_after_optimizer_step()
    write_state(first, tmp_path / "state.safetensors")
    fresh = pruner()
    read_state(fresh, tmp_path / "state.safetensors")
    assert fresh.step == 3 and fresh.target_sparsity == first.target_sparsity > 0
    assert all(torch.equal(fresh.masks[n], m) for n, m in first.masks.items())
    assert all(float(p.detach()[~fresh.masks[n]].abs().sum()) == 0 for n, p in fresh.params.items())


@pytest.mark.parametrize("content", [None, b"not a safetensors file"])
def test_a_missing_or_corrupt_state_is_one_line(tmp_path, content):
    path = tmp_path / "state.safetensors"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        read_state(pruner(), path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
