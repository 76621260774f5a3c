"""A user's weight-only criterion is one method (``WeightCriterion.score``), through the library and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _models import mlp
from _plugins import LastUnitsLeast

from prunecli import build_pruner
from prunecli.checkpoint import load_checkpoint
from prunecli.criteria import Criterion, WeightCriterion


def _keeps_leading_elements(mask: torch.Tensor) -> bool:
    flat = mask.flatten().int()
    return bool((flat[:-1] >= flat[1:]).all())  # every kept element before every pruned one


def test_one_method_makes_a_criterion():
    criterion = LastUnitsLeast()
    assert isinstance(criterion, Criterion) and not criterion.needs_grad and criterion.ready
    assert criterion.state_dict() == {}
    with pytest.raises(TypeError, match="score"):
        WeightCriterion()  # the one method is required


def test_user_criterion_through_build_pruner():
    model = mlp()
    pruner = build_pruner(model, {"criterion": {"_target_": "_plugins.LastUnitsLeast"}, "allocation": "local",
                                  "schedule": {"name": "oneshot", "final_sparsity": 0.5}})
    assert isinstance(pruner.criterion, LastUnitsLeast)
    pruner.on_step_begin()
    for name, mask in pruner.masks.items():
        assert _keeps_leading_elements(mask) and mask.float().mean().item() == pytest.approx(0.5, abs=0.01), name


def test_user_criterion_through_the_cli(prune_run):
    out, summary = prune_run("pruner=level", "sparsity=0.5", "pruner.criterion={_target_: _plugins.LastUnitsLeast}")
    masks = load_checkpoint(Path(out) / "checkpoint" / "last").masks
    assert masks and all(_keeps_leading_elements(m) for m in masks.values())
    assert summary["sparsity"] == pytest.approx(0.5, abs=0.01), json.dumps(summary)


def test_regularizers_use_the_public_norm_weight():
    from prunecli import regularizers
    from prunecli.criteria import norm_weight

    assert regularizers.norm_weight is norm_weight
    assert "criteria._" not in Path(regularizers.__file__).read_text()
