"""The engine's loop: hook order, gradient accumulation, settings, AMP on CUDA."""

from __future__ import annotations

import json

import pytest
import torch

import prunecli.engine.loop as loop
from prunecli.engine.data import EpochSampler
from prunecli.engine.settings import TrainerSettings
from prunecli.errors import ConfigError
from prunecli.hooks import HOOKS


class Recorder:
    """Wraps the real pruner and records the hooks the engine calls on it."""

    def __init__(self, pruner, calls):
        self._pruner, self._calls = pruner, calls

    def __getattr__(self, name):
        attr = getattr(self._pruner, name)
        if name in HOOKS:
            def hook(*args):
                self._calls.append((name, *args))
                return attr(*args)
            return hook
        return attr


@pytest.fixture
def recorded(monkeypatch):
    calls: list[tuple] = []
    real = loop.build_pruner
    monkeypatch.setattr(loop, "build_pruner", lambda *a, **k: Recorder(real(*a, **k), calls))
    return calls


def test_hooks_are_called_in_the_documented_order(cli, smoke, recorded, tmp_path):
    result = cli("prune", *smoke, "trainer.epochs=2", "trainer.max_steps=null", "trainer.batch_size=512",
                 "trainer.accumulate=2", f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 0, (result.stderr, result.exception)
    names = [c[0] for c in recorded]
    # 1437 samples in 3 batches of 512, 2 micro-batches per optimizer step: 2 steps per epoch
    step = ["on_step_begin", "on_before_optimizer_step", "on_after_optimizer_step", "on_step_end"]
    epoch_end = ["on_before_eval", "on_after_eval", "on_epoch_end"]
    expected = ["on_train_begin"]
    for _ in range(2):
        expected += ["on_epoch_begin", *step, *step, *epoch_end]
    assert names == expected + ["on_train_end"]
    assert [c[1] for c in recorded if c[0] == "on_step_begin"] == [0, 1, 2, 3]
    assert [c[1] for c in recorded if c[0] in ("on_epoch_begin", "on_epoch_end")] == [0, 0, 1, 1]
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 4


def test_no_fine_tuning_epochs_still_measures_the_pruned_model(prune_run):
    _, summary = prune_run("trainer.epochs=0", "schedule=oneshot", "sparsity=0.6")
    assert summary["steps"] == 0 and summary["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert 0.0 <= summary["accuracy"] <= 1.0


def test_epoch_sampler_is_a_pure_function_of_seed_and_epoch():
    data = list(range(50))
    a, b = EpochSampler(data, seed=1), EpochSampler(data, seed=1)
    a.set_epoch(3)
    b.set_epoch(3, start=20)
    assert list(a)[20:] == list(b) and sorted(a) == data
    a.set_epoch(4)
    assert list(a) != list(EpochSampler(data, seed=1))


def test_settings_reject_bad_values():
    base = {"epochs": 1, "pretrain_epochs": 0, "max_steps": None, "batch_size": 8, "eval_batch_size": 8,
            "accumulate": 1, "grad_clip": None, "device": "cpu", "precision": "auto", "num_workers": 0,
            "checkpoint_every": None, "resume": None, "progress": "auto"}
    assert TrainerSettings.from_config(base).progress is None
    for key, value in [("epochs", 1.5), ("max_steps", 0), ("accumulate", 0), ("grad_clip", -1.0),
                       ("progress", "sometimes"), ("checkpoint_every", True)]:
        with pytest.raises(ConfigError, match=f"trainer.{key}="):
            TrainerSettings.from_config({**base, key: value})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="AMP runs on CUDA only")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_amp_on_cuda(prune_run, precision):
    _, summary = prune_run(f"trainer.precision={precision}", "trainer.device=cuda")
    assert summary["sparsity"] > 0
