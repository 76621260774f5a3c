"""Dense pre-training starts only after the pruner config is checked (without building a pruner): a typo in a
part fails at once, before any checkpoint; what needs the model fails when the pruning phase builds the pruner."""

from __future__ import annotations

import time


def _one_error_line(result) -> str:
    assert result.exit_code == 2 and result.exception is None, (result.stdout, result.stderr)
    errors = [line for line in result.error_lines if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


def test_a_part_typo_fails_before_pretraining(cli, smoke, tmp_path):
    start = time.perf_counter()
    result = cli("prune", *smoke, "trainer.pretrain_epochs=1", "pruner.criterion=bogus", f"hydra.run.dir={tmp_path}")
    line = _one_error_line(result)
    assert line.startswith("error: pruner.criterion='bogus'") and "magnitude" in line
    assert not (tmp_path / "checkpoint").exists() and not (tmp_path / "metrics.jsonl").exists()
    assert time.perf_counter() - start < 60


def test_what_needs_the_model_fails_after_pretraining(cli, smoke, tmp_path):
    result = cli("prune", *smoke, "trainer.pretrain_epochs=1", "pruner.target=head", f"hydra.run.dir={tmp_path}")
    assert _one_error_line(result).startswith("error: pruner.layers=")
    assert (tmp_path / "checkpoint" / "last").is_dir()  # the dense epoch was trained and saved
