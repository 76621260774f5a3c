"""A ``_target_`` that cannot be built, for every kind of part, is one ``error:`` line naming its key (no Hydra
traceback)."""

from __future__ import annotations

import pytest

MISSING = "{_target_: nope.Missing}"


@pytest.mark.parametrize("overrides, key", [
    ([f"pruner.criterion={MISSING}"], "pruner.criterion"),
    ([f"pruner.target={MISSING}"], "pruner.target"),
    (["pruner=level", f"pruner.allocation={MISSING}"], "pruner.allocation"),  # agp's allocation is a mapping
    ([f"++pruner.regularizer={MISSING}"], "pruner.regularizer"),
    (["+schedule._target_=nope.Missing"], "schedule"),
    (["+objective._target_=nope.Missing"], "objective"),
])
def test_a_missing_target_is_one_line_naming_its_key(cli, smoke, tmp_path, overrides, key):
    result = cli("prune", *smoke, *overrides, f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 2 and result.exception is None, (result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.error_lines if line.startswith("error:")]
    assert len(errors) == 1 and result.error_lines[-1] == errors[0], result.stderr
    assert errors[0].startswith(f"error: {key}._target_='nope.Missing' is not allowed: expected a _target_"), errors
    assert "No module named 'nope'" in errors[0]


def test_a_target_with_a_bad_argument_names_the_argument(cli, smoke, tmp_path):
    result = cli("prune", *smoke, "pruner.criterion={_target_: prunecli.criteria.Random, colour: red}",
                 f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 2 and result.exception is None
    line = result.error_lines[-1]
    assert line.startswith("error: pruner.criterion._target_='prunecli.criteria.Random'") and "colour" in line


@pytest.mark.parametrize("preset, reason", [("admm", "ADMM projects onto pruner.regularizer.sparsity"),
                                            ("lottery_ticket", "each round prunes to the schedule's sparsity")])
def test_presets_that_cannot_honour_an_objective_refuse_it(cli, smoke, tmp_path, preset, reason):
    """Both prune to the raw ``sparsity`` (ADMM's constraint, the rounds' sparsities): an objective is refused,
    not silently ignored."""
    result = cli("prune", *smoke, f"pruner={preset}", "objective=params", "objective.keep=0.5",
                 f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 2 and result.exception is None, (result.stdout, result.stderr, result.exception)
    errors = [line for line in result.error_lines if line.startswith("error:")]
    assert len(errors) == 1 and result.error_lines[-1] == errors[0], result.stderr
    assert errors[0].startswith("error: objective='params' is not allowed: expected objective=sparsity with ")
    assert f"pruner={preset}" in errors[0] and reason in errors[0]
    assert not (tmp_path / "checkpoint").exists()  # refused before any training
