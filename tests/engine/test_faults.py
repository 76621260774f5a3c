"""Every checkpoint a run writes is resumable: a run killed right after each of its saves, then resumed with
``trainer.resume=<run dir>`` alone (saved overrides, same run dir), ends bit-identical to an uninterrupted run
(CPU): checkpoints, summary and metrics.jsonl."""

from __future__ import annotations

import json
import math

import pytest

import prunecli.engine.loop as loop

COMMON = ["dataset=digits", "model=mlp", "model.hidden=[16]", "trainer.pretrain_epochs=1", "trainer.batch_size=360",
          "trainer.eval_batch_size=512", "trainer.checkpoint_every=2", "trainer.progress=false", "sparsity=0.5",
          "seed=1"]
BATCHES = math.ceil(1437 / 360)  # digits: 1437 training samples -> 4 batches per epoch, the last one partial

# AGP over 2 epochs cut to 6 steps: step checkpoints at an epoch's last step (4) and at max_steps (6, mid-epoch).
GRADUAL = [*COMMON, "trainer.epochs=2", "trainer.max_steps=6", "schedule.frequency=2"]
# Lottery ticket, 2 rounds, rewinding to the weights after step 3 of pre-training: a checkpoint at each round start.
ROUNDS = [*COMMON, "pruner=lottery_ticket", "rounds.count=2", "rounds.rewind=step:3", "trainer.epochs=1",
          "trainer.max_steps=null"]

# (phase, epoch, batches_done, step, round, name) of each save, in order.
GRADUAL_SAVES = [
    ("pretrain", 0, 2, 2, 0, "last"), ("pretrain", 0, 4, 4, 0, "last"),   # step 4 = the epoch's last step
    ("pretrain", 1, 0, 4, 0, "last"),                                      # end of pre-training
    ("prune", 0, 2, 2, 0, "last"), ("prune", 0, 4, 4, 0, "last"), ("prune", 1, 0, 4, 0, "best"),
    ("prune", 1, 0, 4, 0, "last"), ("prune", 1, 2, 6, 0, "last"),          # step 6 = max_steps, mid-epoch
    ("prune", 2, 0, 6, 0, "best"), ("prune", 2, 0, 6, 0, "last"), ("prune", 2, 0, 6, 0, "last"),  # end of run
]
ROUNDS_SAVES = [
    ("pretrain", 0, 2, 2, 0, "last"), ("pretrain", 0, 4, 4, 0, "last"), ("pretrain", 1, 0, 4, 0, "last"),
    *[point for r in (1, 2) for point in [
        ("prune", 0, 0, 0, r, "last"),                                     # round start (pruned, rewound)
        ("prune", 0, 2, 2, r, "last"), ("prune", 0, 4, 4, r, "last"), ("prune", 1, 0, 4, r, "best"),
        ("prune", 1, 0, 4, r, "last")]],
    ("prune", 1, 0, 4, 2, "last"),
]
RECIPES = {"gradual": (GRADUAL, GRADUAL_SAVES), "rounds": (ROUNDS, ROUNDS_SAVES)}


def _record_saves(monkeypatch, kill_after: int | None = None) -> list[tuple]:
    """Record each save of the loop; with ``kill_after``, raise KeyboardInterrupt right after that save."""
    real, points = loop.save, []

    def save(run, phase, pos, name):
        path = real(run, phase, pos, name)
        points.append((pos.phase, pos.epoch, pos.batches_done, pos.step, pos.round, name))
        if len(points) == kill_after:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(loop, "save", save)
    return points


@pytest.fixture(scope="module")
def uninterrupted(cli, tmp_path_factory):
    """Each recipe run once without a kill: ``{recipe: run dir}``; the saves are as listed above."""
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        for name, (recipe, expected) in RECIPES.items():
            points = _record_saves(mp)
            out[name] = tmp_path_factory.mktemp("faults") / name
            result = cli("prune", *recipe, f"hydra.run.dir={out[name]}")
            assert result.exit_code == 0, (result.stderr, result.exception)
            assert points == expected, name
            mp.undo()
    assert GRADUAL_SAVES[1][2] == BATCHES  # the edge case: every batch of the epoch done
    return out


def _kills():
    return [(name, n) for name, (_, saves) in RECIPES.items() for n in range(1, len(saves) + 1)]


@pytest.mark.parametrize("recipe, kill_after", _kills())
def test_a_run_killed_after_any_save_resumes_to_the_same_result(cli, uninterrupted, tmp_path, monkeypatch,
                                                                recipe, kill_after):
    overrides, saves = RECIPES[recipe]
    killed = tmp_path / "killed"
    _record_saves(monkeypatch, kill_after)
    result = cli("prune", *overrides, f"hydra.run.dir={killed}")
    assert result.exit_code == 130 and "continue with trainer.resume=" in result.stderr, result.stderr
    monkeypatch.undo()

    resumed = cli("prune", f"trainer.resume={killed}")  # nothing else: the killed run's config and run dir
    assert resumed.exit_code == 0, (resumed.stderr, resumed.exception, saves[kill_after - 1])

    full = uninterrupted[recipe]
    for ckpt in ("last", "best"):
        for name in ("model.safetensors", "masks.safetensors"):
            path = f"checkpoint/{ckpt}/{name}"
            assert (full / path).read_bytes() == (killed / path).read_bytes(), path
    a, b = (json.loads((d / "summary.json").read_text()) for d in (full, killed))
    for key in ("dense_accuracy", "dense_loss", "accuracy", "loss", "best_accuracy", "sparsity", "per_layer", "steps"):
        assert a[key] == b[key], key
    assert a["sparsity"] == pytest.approx(0.5, abs=0.02)
    # one metrics.jsonl that reads like one run: the rows after the checkpoint were dropped and written again
    assert (full / "metrics.jsonl").read_text() == (killed / "metrics.jsonl").read_text()



def test_a_budget_objective_resumes_to_the_sparsity_it_solved():
    """The objective solves the final sparsity on the run's weights, but a resume builds its pruner on fresh
    weights before restoring: the solved value travels in the pruner's state."""
    import torch

    from prunecli import build_pruner
    from prunecli.models import build_model

    cfg = {"target": "channel", "criterion": "l1", "allocation": "global", "objective": {"name": "flops", "keep": 0.5},
           "schedule": {"name": "agp", "final_sparsity": 0.5, "start_step": 0, "end_step": 10, "frequency": 2}}
    x = torch.randn(1, 1, 8, 8)
    torch.manual_seed(0)
    trained = build_model("cnn", in_channels=1, num_classes=10, image_size=8)
    with torch.no_grad():
        trained.get_submodule("4").weight.mul_(0.01)   # weights unlike a fresh init: the global ranking moves
    torch.manual_seed(0)
    fresh = build_model("cnn", in_channels=1, num_classes=10, image_size=8)
    solved = build_pruner(trained, cfg, example_inputs=x)
    resumed = build_pruner(fresh, cfg, example_inputs=x)
    assert resumed.schedule.final_sparsity != solved.schedule.final_sparsity   # the case the state must cover
    resumed.load_state_dict(solved.state_dict())
    assert resumed.schedule.final_sparsity == solved.schedule.final_sparsity
