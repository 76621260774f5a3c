"""Iterative pruning (rounds of prune -> rewind -> fine-tune): per-round sparsity, masks that persist, rewind
to init vs random re-initialisation of the same masks, resume inside a round, and bad input."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

import prunecli.engine.loop as loop
from prunecli.engine.rounds import Rounds, round_sparsity
from prunecli.errors import ConfigError
from prunecli.schedules import lottery_ticket_rate

LT = ["pruner=lottery_ticket", "trainer.pretrain_epochs=1", "trainer.max_steps=6", "sparsity=0.8",
      "rounds.count=3"]


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_exp_rounds_prune_the_lottery_ticket_rate_of_the_survivors_each_round(n):
    rate = lottery_ticket_rate(0.9, n)
    for r in range(1, n + 1):
        assert round_sparsity("exp", r, n, 0.0, 0.9) == pytest.approx(1 - (1 - rate) ** r)
    assert round_sparsity("exp", n, n, 0.0, 0.9) == pytest.approx(0.9)
    assert round_sparsity("linear", 1, 4, 0.0, 0.8) == pytest.approx(0.2)
    assert round_sparsity("oneshot", 1, 4, 0.0, 0.8) == pytest.approx(0.8)


@pytest.mark.parametrize("node, key", [({"count": 0}, "rounds.count"), ({"count": "3"}, "rounds.count"),
                                       ({"count": 2, "rewind": "step:x"}, "rounds.rewind"),
                                       ({"count": 2, "rewind": "late"}, "rounds.rewind"),
                                       ({"count": 2, "every": 1}, "rounds.every")])
def test_bad_rounds_nodes_name_their_key(node, key):
    with pytest.raises(ConfigError, match=rf"^{key}="):
        Rounds.from_config(node)
    assert Rounds.from_config({"count": 2, "rewind": "step:7"}) == Rounds(2, "step", 7)


def _masks(out):
    from prunecli.checkpoint import load_checkpoint

    return load_checkpoint(out).masks


def test_lottery_ticket_rounds_keep_masks_and_random_rewind_uses_the_same_masks(prune_run):
    out, summary = prune_run(*LT, name="init")
    assert summary["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert summary["rounds"] == {"count": 3, "rewind": "init"}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    per_round = [(row["round"], row["sparsity"]) for row in rows if row.get("phase") == "prune"]
    expected = [round_sparsity("exp", r, 3, 0.0, 0.8) for r in (1, 2, 3)]
    assert [r for r, _ in per_round] == [1, 2, 3]
    assert [s for _, s in per_round] == pytest.approx(expected, abs=0.01)
    random_out, random_summary = prune_run(*LT, "rounds.rewind=random", name="random")
    init_masks, random_masks = _masks(out), _masks(random_out)
    assert init_masks.keys() == random_masks.keys()
    assert all(bool((init_masks[k] == random_masks[k]).all()) for k in init_masks)   # same ticket
    assert random_summary["accuracy"] != summary["accuracy"]                       # other weights


def test_rounds_resume_inside_a_round_bit_identically(prune_run, cli, monkeypatch, tmp_path):
    full, _ = prune_run(*LT, "rounds.rewind=step:2", name="full")
    real, calls = loop.optimizer_step, {"n": 0}

    def step(run, phase):
        calls["n"] += 1
        if calls["n"] == 6 + 6 + 3:   # pre-training, round 1, then inside round 2
            raise KeyboardInterrupt
        real(run, phase)

    monkeypatch.setattr(loop, "optimizer_step", step)
    out = tmp_path / "killed"
    args = ["prune", "trainer.pretrain_epochs=1", "trainer.epochs=1", "trainer.batch_size=64",
            "trainer.eval_batch_size=512", "trainer.progress=false", *LT, "rounds.rewind=step:2",
            f"hydra.run.dir={out}"]
    assert cli(*args).exit_code == 130
    meta = json.loads((out / "checkpoint" / "last" / "meta.json").read_text())
    assert meta["progress"]["round"] == 2
    monkeypatch.setattr(loop, "optimizer_step", real)
    assert cli(*args, f"trainer.resume={out}").exit_code == 0
    a = load_file(str(full / "checkpoint" / "last" / "model.safetensors"))
    b = load_file(str(out / "checkpoint" / "last" / "model.safetensors"))
    assert all(bool((a[k] == b[k]).all()) for k in a)


@pytest.mark.parametrize("overrides, key", [
    (["rounds.count=0"], "rounds.count=0"),
    (["rounds.rewind=step:99"], "rounds.rewind='step:99'"),
    (["pruner=admm", "pruner.regularizer.sparsity=null"], "pruner.regularizer.sparsity=None"),
])
def test_bad_rounds_and_admm_input_is_one_line(cli, smoke, tmp_path, overrides, key):
    args = [*smoke, *LT, *overrides] if "pruner=admm" not in overrides else [*smoke, *overrides]
    result = cli("prune", *args, f"hydra.run.dir={tmp_path / 'bad'}")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    errors = [line for line in result.error_lines if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {key} is not allowed"), result.stderr


@pytest.mark.parametrize("objective", [{"name": "flops", "keep": 0.5}, {"name": "params"},
                                       {"_target_": "my.Objective"}])
def test_rounds_refuse_an_objective_they_would_ignore(objective):
    with pytest.raises(ConfigError, match=r"^objective='.*' is not allowed: expected objective=sparsity with rounds"):
        Rounds.from_config({"count": 2}, objective)
    assert Rounds.from_config({"count": 2}, {"name": "sparsity"}) == Rounds(2)
    assert Rounds.from_config(None, objective) is None  # without rounds, the pruner honours the objective
