"""The Pruner is what :class:`prunecli.hooks.TrainingHooks` declares, and the protocol names exactly HOOKS."""

from __future__ import annotations

from _models import mlp

from prunecli import build_pruner
from prunecli.hooks import HOOKS, TrainingHooks


def test_the_pruner_satisfies_the_declared_hooks_protocol():
    pruner = build_pruner(mlp(), {"schedule": {"name": "oneshot", "final_sparsity": 0.5}})
    assert isinstance(pruner, TrainingHooks)
    assert not isinstance(object(), TrainingHooks)


def test_the_protocol_and_the_hook_names_agree():
    members = {name for name in vars(TrainingHooks) if name.startswith("on_")}
    assert members == set(HOOKS) and len(HOOKS) == 10
