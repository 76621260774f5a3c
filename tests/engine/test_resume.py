"""A killed run resumed with trainer.resume=... ends bit-identical to an uninterrupted run (CPU)."""

from __future__ import annotations

import json

import pytest
import torch

import prunecli.engine.loop as loop

# dense pre-training then AGP pruning; accumulation, checkpoints every 5 optimizer steps, agp updates every 3
RECIPE = [
    "trainer.pretrain_epochs=1", "trainer.epochs=2", "trainer.max_steps=null", "trainer.batch_size=96",
    "trainer.accumulate=2", "trainer.checkpoint_every=5", "trainer.progress=false", "sparsity=0.8",
    "schedule.frequency=3", "seed=3",
]


def _run(cli, out, *extra):
    return cli("prune", *RECIPE, f"hydra.run.dir={out}", *extra)


def _interrupt_at(monkeypatch, call: int):
    """Make the ``call``-th optimizer step raise KeyboardInterrupt, as a Ctrl-C would."""
    real, calls = loop.optimizer_step, {"n": 0}

    def step(run, phase):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        real(run, phase)

    monkeypatch.setattr(loop, "optimizer_step", step)


@pytest.fixture(scope="module")
def uninterrupted(cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "full"
    result = _run(cli, out)
    assert result.exit_code == 0, (result.stderr, result.exception)
    return out


# 8 optimizer steps per epoch (15 batches of 96, 2 per step). Killed at the 7th step: mid pre-training, after
# its step-5 checkpoint; 14th: pruning step 6, after the epoch-end checkpoint of pre-training (masks pruned
# from the first step); 24th: pruning epoch 2 (step 16), after the step-15 checkpoint.
@pytest.mark.parametrize("kill_at", [7, 14, 24])
def test_resumed_run_matches_uninterrupted(cli, uninterrupted, tmp_path, monkeypatch, kill_at):
    _interrupt_at(monkeypatch, kill_at)
    killed = _run(cli, tmp_path / "killed")
    assert killed.exit_code == 130
    assert killed.error_lines[-1].startswith("interrupted: checkpoint/last in ")
    monkeypatch.undo()

    resumed = _run(cli, tmp_path / "resumed", f"trainer.resume={tmp_path / 'killed'}")
    assert resumed.exit_code == 0, (resumed.stderr, resumed.exception)

    full_ckpt, resumed_ckpt = uninterrupted / "checkpoint" / "last", tmp_path / "resumed" / "checkpoint" / "last"
    for name in ("model.safetensors", "masks.safetensors"):
        assert (full_ckpt / name).read_bytes() == (resumed_ckpt / name).read_bytes(), name
    full = json.loads((uninterrupted / "summary.json").read_text())
    again = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    for key in ("dense_accuracy", "accuracy", "loss", "sparsity", "params_nonzero", "per_layer", "steps"):
        assert full[key] == again[key], key
    assert full["sparsity"] == pytest.approx(0.8, abs=0.01)


def test_interrupt_leaves_a_loadable_checkpoint(cli, tmp_path, monkeypatch):
    from prunecli.checkpoint import load_checkpoint

    _interrupt_at(monkeypatch, 15)  # pruning step 7: the step-5 checkpoint of pruning is the last one
    assert _run(cli, tmp_path / "killed").exit_code == 130
    ckpt = load_checkpoint(tmp_path / "killed", with_state=True)
    assert ckpt.state["progress"]["phase"] == "prune" and ckpt.state["progress"]["step"] == 5
    assert not any(p.name.endswith((".tmp", ".old")) for p in (tmp_path / "killed" / "checkpoint").iterdir())
    masks = ckpt.masks
    assert masks and all(m.dtype == torch.bool for m in masks.values())
    assert torch.equal(ckpt.state["pruner"]["masks"][next(iter(masks))], next(iter(masks.values())))


def test_resuming_a_checkpoint_of_another_model_is_one_line(cli, smoke, tmp_path):
    first = cli("prune", *smoke, "model=mlp", f"hydra.run.dir={tmp_path / 'mlp'}")
    assert first.exit_code == 0, first.stderr
    args = [*smoke, f"trainer.resume={tmp_path / 'mlp'}", "model=cnn", f"hydra.run.dir={tmp_path / 'cnn'}"]
    refused = cli("prune", *args)  # the config differs from the checkpoint's: refused before training
    assert refused.exit_code == 2 and "Traceback" not in refused.stderr
    assert refused.error_lines[-1].startswith("error: trainer.resume=")
    assert "model.name ('mlp' -> 'cnn')" in refused.stderr
    result = cli("prune", *args, "trainer.resume_override=true")  # forced: the weights do not fit
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert result.error_lines[-1].startswith("error: trainer.resume=") and "does not fit this run" in result.stderr


def test_resume_config_check_lists_what_changes_the_result_only():
    from pathlib import Path

    from omegaconf import OmegaConf

    from prunecli.engine.state import check_resume_config
    from prunecli.errors import CheckpointError

    saved = {"sparsity": 0.9, "model": {"hidden": [16]},
             "trainer": {"progress": False, "num_workers": 0, "total_steps": 8, "lr_scheduler": {"T_max": 8}}}
    cfg = OmegaConf.create({"sparsity": 0.5, "model": {"hidden": [16, 8]}, "hydra": {"run": {"dir": "x"}},
                            "trainer": {"progress": True, "num_workers": 4, "total_steps": None, "resume": "x",
                                        "lr_scheduler": {"T_max": "${trainer.total_steps}"}}})
    with pytest.raises(CheckpointError, match=r"another config: model\.hidden \(\[16\] -> \[16, 8\]\), "
                                              r"sparsity \(0\.9 -> 0\.5\); "):
        check_resume_config(cfg, saved, Path("x"), override=False)
    check_resume_config(cfg, saved, Path("x"), override=True)
    cfg.sparsity, cfg.model.hidden = 0.9, [16]
    check_resume_config(cfg, saved, Path("x"), override=False)  # T_max resolves as it was saved
